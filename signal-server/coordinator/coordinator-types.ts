import type { StageManifest } from '../../shared/model/manifest.js';
import type { SamplingParams } from '../../shared/model/sampling.js';
import type { LayerRange } from '../../shared/model/stage-graph.js';
import type { Tokenizer } from '../../shared/model/tokenizer.js';
import type {
  Backend,
  ServerToClientEvents,
  SessionJoined,
  StageVote,
  StepDigest,
  StepFailure,
  TokenEvent,
} from '../../shared/protocol/messages.js';
import type { KeyedBucketsOptions } from '../keyed-buckets.js';
import type { AuditCounts } from './audit.js';
import type { ChallengeOracle } from './challenge.js';
import type { FallbackOptions } from './fallback.js';
import type { SessionTimeouts } from './generation.js';
import type { Links } from './links.js';
import type { SessionShown } from './no-show-window.js';
import type { ModelSizes } from './partition-planner.js';
import type { PartitionBuilder } from './repartition.js';
import type { ReportKind } from './report-allowance.js';
import type { BanList } from './reputation.js';
import type { NoShow } from './session-types.js';

/** How the coordinator reaches one volunteer: the Socket.IO binding, or an in-process link in tests. */
export interface VolunteerLink {
  send<E extends keyof ServerToClientEvents>(event: E, ...args: Parameters<ServerToClientEvents[E]>): void;
  /** Ends the connection (after an eviction); the transport then calls `left`. */
  disconnect(): void;
}

export interface ServedModelInfo {
  readonly modelId: string;
  readonly numStages: number;
  readonly baseUrl: string;
  readonly manifest: StageManifest;
  /** Null where only token ids are sent (the in-process test swarm). */
  readonly tokenizer: Tokenizer | null;
  /** The partition's key (sent with every assignment; a re-partition changes it); absent: the model id alone. */
  readonly partition?: string;
}

export interface CompletionRequest {
  readonly prompt: string;
  /** The prompt as token ids (a completion's `prompt` of ids): run as they are, `prompt` being their text. */
  readonly promptIds?: readonly number[];
  /**
   * How many of `promptIds`' last ids hold the first bytes of a character the prompt leaves unfinished (0 or absent:
   * it ends on a whole one): the completion's text begins with that character, finished or not, and `prompt` ends
   * before it.
   */
  readonly unfinishedIds?: number;
  readonly maxTokens: number;
  /**
   * max_tokens was not given (a chat): as many tokens as the model's context leaves after the prompt, at most
   * `maxTokens`; a prompt that fills the context asks for one, and is refused as too long.
   */
  readonly fitToContext?: boolean;
  readonly sampling: SamplingParams;
  /** Stop sequences: the text ends before the first one (at most 4, as OpenAI allows). */
  readonly stop?: readonly string[];
  /** Aborting ends the generation with ERR_CANCELLED (the client went away). */
  readonly signal?: AbortSignal;
  /** Who asks (an API key or an address): one client holds at most half the fallback's sessions. */
  readonly client?: string;
  /**
   * Scores the prompt first: its tokens go through the swarm up to maxScoreRows a step, each step's agreed
   * logits (a row per position, the distribution of the token after it) voted on as a sampled token's are, before
   * any token is sampled.
   */
  readonly scorePrompt?: boolean;
}

/**
 * One token of a scored prompt, in order from position 0: the agreed logits it had at its position (those of
 * the step that fed the token before it), with that step's votes; position 0 has none.
 */
export interface ScoredToken {
  readonly position: number;
  readonly token: number;
  readonly logits: Float32Array | null;
  /** Where the logits came from a form (the tokens left out at −Infinity): the whole row's log-sum-exp. */
  readonly logSumExp?: number;
  readonly votes: readonly StageVote[];
  /** Every stage agreed by a majority of the configured redundancy r (r ≥ 2); true for position 0, which nothing computed. */
  readonly verified: boolean;
  readonly stepMs: number;
}

/** One accepted token as the coordinator streams it: the chat event without its request id, plus the agreed logits it was sampled from. */
export type TokenUpdate = Omit<TokenEvent, 'requestId'> & {
  /** The agreed logits of the last position (for log-probabilities); never sent to the chat page. */
  readonly logits: Float32Array;
  /** Where the logits came from a top form (the tokens left out at −Infinity): the whole row's log-sum-exp. */
  readonly logSumExp?: number;
};

export interface Completion {
  readonly promptTokens: number[];
  readonly tokens: number[];
  readonly text: string;
  readonly finishReason: 'stop' | 'length';
  readonly route: readonly (readonly string[])[];
  /** The configured redundancy r, and whether every token (and the end-of-text draw that ended it) was verified by a majority of it. */
  readonly redundancy: number;
  readonly verified: boolean;
  /** The end-of-text token that ended it, where one did, and the agreed logits it was drawn from (no token of the completion). */
  readonly end?: { readonly token: number; readonly logits: Float32Array; readonly logSumExp?: number };
}

export interface CoordinatorOptions {
  readonly redundancy: number;
  /** Test and demo servers accept volunteers that inject faults; production refuses them. */
  readonly allowFaults: boolean;
  /** How long a request waits for every stage to have r ready replicas with room. */
  readonly routeWaitMs: number;
  readonly timeouts: SessionTimeouts;
  /** Computes the challenge steps a volunteer must answer before it counts as ready. */
  readonly oracle: ChallengeOracle;
  /** Fraction of a replica's sessions after which it is spot-checked with a new challenge (0..1). */
  readonly spotCheckRate?: number;
  /** How long a volunteer has to answer a challenge. */
  readonly challengeTimeoutMs?: number;
  /** Challenges a client may ask for at once and a minute (DEFAULT_CHALLENGE_BUDGET). */
  readonly challengeBudget?: KeyedBucketsOptions;
  /** Hellos an address (not this machine's) may say at once and a minute (DEFAULT_HELLO_BUDGET). */
  readonly helloBudget?: KeyedBucketsOptions;
  /** Requests that may wait for a route at once; more are refused at once with ERR_BUSY. */
  readonly maxQueued?: number;
  /** Addresses whose volunteers are told apart by client key alone (this machine's local swarm). */
  readonly localAddresses?: readonly string[];
  /** Random source for routes and spot checks (seeded in tests). */
  readonly random?: () => number;
  /** Hears that volunteers or their states changed (the landing page's status). */
  readonly statusChanged?: () => void;
  /** Makes volunteer ids (default: random UUIDs); the in-process test swarm names them itself. */
  readonly newId?: () => string;
  /** The server computes stages short of volunteers itself (FALLBACK); absent = never. */
  readonly fallback?: FallbackOptions;
  /** Makes session ids (default 1, 2, 3…); a cluster of servers makes them unique among its servers. */
  readonly newSessionId?: () => number;
  /** The bans (default: this process's own); a cluster shares them among its servers. */
  readonly bans?: BanList;
  /** Who may signal whom (default: this process's own); a cluster tells the servers of linked volunteers. */
  readonly links?: Links;
  /** Re-partitions the model live when departures leave a stage short (REPARTITION); absent = never. */
  readonly repartition?: PartitionBuilder;
  /** What each part of the model weighs and its largest buffer (the tensor index): joiners go to a stage they can hold. */
  readonly sizes?: ModelSizes;
  /** How long a partition serves before a switch back to the configured one (default REPARTITION_HOLD_MS). */
  readonly repartitionHoldMs?: number;
  /** How long no volunteer proves a stage before joins may shrink a partition with a stage short (default FILL_QUIET_MS). */
  readonly repartitionFillQuietMs?: number;
  /** How long a volunteer given a stage has to load it and be ready before it holds no seat (default LOAD_DEADLINE_MS). */
  readonly loadDeadlineMs?: number;
  /** How long a client that left or missed a load deadline is not counted for a switch back (default SWITCH_BACK_DISTRUST_MS). */
  readonly switchBackDistrustMs?: number;
  /**
   * The mesh loop (MESH_LOOP, default on): the last stage's replicas send each
   * sampled token straight to stage 0's, and the coordinator verifies every step
   * off the critical path; false: the coordinator alone feeds stage 0. A
   * scored prompt's tokens go to stage 0 up to MESH_AHEAD steps ahead where it
   * is on, each after the step before is decided where it is off.
   */
  readonly meshLoop?: boolean;
  /**
   * The most of a scored prompt's positions one step runs (step 0's first
   * positions, and each chunk after), the last stage sending a row of logits
   * for each (default and at most maxScoreRows of the vocabulary); 1: a
   * position a step (benchmarks and tests compare).
   */
  readonly scoreRows?: number;
  /**
   * How replicas send their frames (FANOUT): `majority` (default), each
   * receiver gets copies from a majority of its senders by a rotation and asks
   * the others when those do not agree at once (shared/swarm/fanout.ts);
   * `all`, every sender sends every receiver.
   */
  readonly fanout?: Fanout;
}

/** FANOUT's values. */
export const FANOUT_MODES = ['all', 'majority'] as const;
export type Fanout = (typeof FANOUT_MODES)[number];

/** A volunteer's report about a session, as a cluster forwards it to the server that coordinates the session. */
export type SessionReport =
  | { readonly event: 'session:joined'; readonly m: SessionJoined }
  | { readonly event: 'step:digest'; readonly m: StepDigest }
  | {
      readonly event: 'step:logits';
      readonly m: { readonly sessionId: number; readonly step: number; readonly logits: Float32Array; readonly resets?: number };
    }
  | { readonly event: 'step:failed'; readonly m: StepFailure };

/**
 * What a cluster of servers (../cluster/) adds to a coordinator: volunteers of
 * other servers are mirrored here as members whose records those servers keep.
 */
export interface ClusterSeam {
  /** A report of a volunteer of this server about a session another server coordinates: true once sent there. */
  forward(volunteer: string, report: SessionReport): boolean;
  /**
   * A volunteer of this server's data-channel messages for a server replica:
   * those of sessions another server coordinates are sent to that server's
   * replica; the rest (this server's) are returned.
   */
  forwardFrames(from: string, to: string, messages: readonly Uint8Array[]): Uint8Array[];
  /** Is this report (before it is parsed) one the volunteer owes a session another server coordinates? Then it is free. */
  owesReport(volunteer: string, kind: ReportKind, sessionId: number, step: number): boolean;
  /** Our session `sessionId` began deciding `step`: its members' servers hear it now and then (RemoteSessions.progressed). */
  stepBegan(sessionId: number, step: number, members: Iterable<string>): void;
  /** Is this `session:joined` one the volunteer owes a session another server opened on it (once)? Then it is free. */
  owesJoin(volunteer: string, sessionId: number): boolean;
  /**
   * A vote here classified a volunteer of another server: its server keeps its connection's counts and judges them,
   * told after this one counted the classification into its client's record in Redis (`recorded`), so that a verdict
   * lost on the way (Redis's pub/sub, a connection down) still counts there; `sum`: that record after it (null: not
   * counted, Redis failed), which its server raises its counts to.
   */
  audited(volunteer: string, agreed: boolean, sum: AuditCounts | null): void;
  /**
   * A volunteer of this server was classified (by a vote here or elsewhere), or one that left (here, or of another
   * server), after it went: one more into its client's record in Redis, which every server reads when a connection of
   * the client says hello. Resolves to the record's counts after it (all the client's connections on every server,
   * and those that left), or null where none is kept (no client key, Redis failed).
   */
  recorded(keys: readonly string[], agreed: boolean): Promise<AuditCounts | null>;
  /** Is this server's volunteer in a session of another server, open or closed lately (judged there after it left)? */
  servesElsewhere(volunteer: string): boolean;
  /**
   * A volunteer of this server left: the sessions it missed and joined (its own, oldest first, each with when it was
   * recorded), kept under its client key for its next connection on any server.
   */
  keepNoShows(keys: readonly string[], sessions: readonly SessionShown[]): void;
  /** A session of another server open on this server's volunteer that it has neither joined nor refused, if any. */
  awaitedElsewhere(volunteer: string): number | undefined;
  /** This server moved its volunteer to another stage: it drops its sessions, other servers' too (none waits for it). */
  moved(volunteer: string): void;
  /** A volunteer of another server is due a spot check: its server challenges it. */
  challenge(volunteer: string): void;
  /** A volunteer of another server did not show up in a session of this one: its server keeps its strikes and evicts it. */
  noShow(volunteer: string, sessionId: number, why: NoShow): void;
  /** Can a session of this server reach the volunteer now (another server's, not while Redis is away)? Else not routed. */
  reachable(volunteer: string): boolean;
  /** Sessions a volunteer is in on all the servers, as far as is known, given the `here` of this one (infinite: it is going). */
  sessionsOf(volunteer: string, here: number): number;
  /** Does this server plan the cluster's re-partitions (the lowest-numbered live process)? */
  leads(): boolean;
  /** The leader's plan (LiveRepartition): published to the other servers, which serve it too; this one already does. */
  publishPlan(ranges: readonly LayerRange[], stageOf: ReadonlyMap<string, number>): void;
  /** This server serves another partition from now: the others' volunteers are mirrored again against it. */
  partitionChanged(): void;
}

/** A volunteer of another server, as that server publishes it. */
export interface MirroredVolunteer {
  readonly id: string;
  readonly keys: readonly string[];
  readonly backend: Backend;
  readonly adapter: string | null;
  readonly stage: number;
  readonly ready: boolean;
  readonly stepMs: number | null;
  readonly proven: boolean;
  readonly joinedAt: number;
  readonly counts: AuditCounts;
  /** The most sessions it keeps open at once, where its ready said fewer than MAX_SESSIONS_PER_REPLICA (Volunteer.sessionLimit). */
  readonly sessionLimit?: number;
  /**
   * What it offers to hold (Volunteer.memoryBytes, Volunteer.bufferLimitBytes; absent: unknown). Every server plans the
   * cluster's moves and carries out its own: a server that took another's volunteer for able to hold any stage planned
   * moves the others did not, and a stage short of r stayed short (a red-team find).
   */
  readonly memoryBytes?: number;
  readonly bufferLimitBytes?: number | null;
  /** Not ready past its load deadline (Volunteer.stale): it holds no seat on any process. */
  readonly stale?: boolean;
  /** Passed a challenge on its server once (Member.vouched): the re-partition planner counts it. Absent: `proven`. */
  readonly vouched?: boolean;
  /** Its server serves another partition than this one (Volunteer.elsewhere): mirrored, but not ready here. */
  readonly elsewhere?: boolean;
}
