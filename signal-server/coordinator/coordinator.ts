import { randomUUID } from 'node:crypto';
import type { StageManifest } from '../../shared/model/manifest.js';
import type { SamplingParams } from '../../shared/model/sampling.js';
import type { LayerRange } from '../../shared/model/stage-graph.js';
import type { ChatMessage, Tokenizer } from '../../shared/model/tokenizer.js';
import { bufferLimitBytes, offeredBytes } from '../../shared/protocol/capacity.js';
import type { WireErrorCode } from '../../shared/protocol/errors.js';
import {
  type Backend,
  type ChallengeProof,
  isServerPeer,
  packFrameMessages,
  type ServerToClientEvents,
  type StageAssignment,
  type StageReady,
  type StepDigest,
  type StepFailure,
  serverPeerId,
  type TokenEvent,
  type VolunteerHello,
  type VolunteerView,
} from '../../shared/protocol/messages.js';
import { MAX_SESSIONS_PER_REPLICA } from '../../shared/swarm/replica-core.js';
import { agreeFingerprints } from '../../shared/vote/fingerprint.js';
import { majority } from '../../shared/vote/quorum.js';
import { Audit, type AuditCounts } from './audit.js';
import { ChallengeMoot, type ChallengeOracle } from './challenge.js';
import { type FallbackOptions, ServerReplicas } from './fallback.js';
import { GenerationError, GenerationSession, type SessionTimeouts, type StepRecord, wireErrorOf } from './generation.js';
import { DEFAULT_LOCAL_ADDRESSES, identityKeys } from './identity.js';
import { Links } from './links.js';
import type { SwarmObserver } from './observer.js';
import { type ModelSizes, type PlannedVolunteer, planPartition } from './partition-planner.js';
import { cannotHold, stagesOf } from './placement.js';
import { Registry } from './registry.js';
import {
  MAX_REPLAYS,
  type PartitionBuilder,
  plannedVolunteers,
  REPARTITION_HOLD_MS,
  ReplayOnNewPartition,
  rangesOf,
  type ServedPartition,
  sameRanges,
} from './repartition.js';
import { BanList, reputation, shouldEvict } from './reputation.js';
import { type Candidate, chooseReplicas, chooseRoute } from './route.js';
import type { Move } from './scheduler.js';
import { ServiceStats, type ServiceStatus } from './service-stats.js';
import { TextStream } from './text-stream.js';

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
  readonly maxTokens: number;
  readonly sampling: SamplingParams;
  /** Stop sequences: the text ends before the first one (at most 4, as OpenAI allows). */
  readonly stop?: readonly string[];
  /** Aborting ends the generation with ERR_CANCELLED (the client went away). */
  readonly signal?: AbortSignal;
}

/** One accepted token as the coordinator streams it: the chat event without its request id, plus the agreed logits it was sampled from. */
export type TokenUpdate = Omit<TokenEvent, 'requestId'> & {
  /** The agreed logits of the last position (for log-probabilities); never sent to the chat page. */
  readonly logits: Float32Array;
};

export interface Completion {
  readonly promptTokens: number[];
  readonly tokens: number[];
  readonly text: string;
  readonly finishReason: 'stop' | 'length';
  readonly route: readonly (readonly string[])[];
  /** The configured redundancy r, and whether every token was verified by a majority of it. */
  readonly redundancy: number;
  readonly verified: boolean;
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
  /**
   * The mesh loop (MESH_LOOP, default on): the last stage's replicas send each
   * sampled token straight to stage 0's, and the coordinator verifies every step
   * off the critical path; false: the coordinator alone feeds stage 0.
   */
  readonly meshLoop?: boolean;
}

/** A volunteer's report about a session, as a cluster forwards it to the server that coordinates the session. */
export type SessionReport =
  | { readonly event: 'session:joined'; readonly m: { readonly sessionId: number } }
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
  /** A vote here classified a volunteer of another server: its server keeps its record and judges it. */
  audited(volunteer: string, agreed: boolean): void;
  /** A volunteer of this server was classified (by a vote here or elsewhere): its record, for when it comes back. */
  recorded(volunteer: string, counts: AuditCounts): void;
  /** A volunteer of another server is due a spot check: its server challenges it. */
  challenge(volunteer: string): void;
  /** Sessions a volunteer is in on all the servers, as far as is known, given the `here` of this one (infinite: it is going). */
  sessionsOf(volunteer: string, here: number): number;
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
}

/** Agreements (with reputation ≥ ESTABLISHED_REPUTATION) after which a volunteer counts as established. */
export const ESTABLISHED_AFTER = 10;
export const ESTABLISHED_REPUTATION = 0.8;
/** Volunteers connected at once from one address (one IPv6 /64), other than this machine's. */
export const MAX_VOLUNTEERS_PER_ADDRESS = 16;
/** Sessions not joined (or refused) before a volunteer is evicted. */
export const MAX_NO_SHOWS = 3;
export const DEFAULT_CHALLENGE_TIMEOUT_MS = 60_000;
export const DEFAULT_SPOT_CHECK_RATE = 0.1;
export const DEFAULT_MAX_QUEUED = 64;
/** How long a replayed request waits for the new partition to serve (its volunteers load and prove their stages). */
export const REPLAY_ROUTE_WAIT_MS = 60_000;
/** Failures of a session that a re-partition under way (or done meanwhile) makes good by a replay. */
const REPLAYED_FAILURES: ReadonlySet<WireErrorCode> = new Set<WireErrorCode>(['ERR_NO_QUORUM', 'ERR_STEP_TIMEOUT', 'ERR_NO_ROUTE']);
/** How long after a proof the coordinator looks whether the configured partition serves again. */
const PROOF_RECHECK_MS = 1_000;
/** How often a waiting request looks for a route again. */
const ROUTE_POLL_MS = 50;

interface Member {
  readonly id: string;
  readonly link: VolunteerLink;
  readonly keys: readonly string[];
  readonly fault: string | null;
  /** A volunteer of another server of the cluster, mirrored here (its server challenges and judges it). */
  readonly remote: boolean;
  /** Passed a challenge since its stage was assigned. */
  proven: boolean;
  /**
   * Passed a challenge on this server once (a move or a re-partition does not take that back): only such
   * volunteers count as a stage's replicas when re-partitioning, never one whose hello is all it sent.
   */
  vouched: boolean;
  challenge: {
    readonly id: number;
    readonly expected: number[];
    readonly sentAt: number;
    readonly timer: ReturnType<typeof setTimeout> | null;
  } | null;
  noShows: number;
}

/**
 * The coordinator, apart from any transport: volunteer registration and stage
 * assignment, earned readiness (challenges), route choice, sessions with
 * fail-over, reputation and eviction, admission control. The Socket.IO binding
 * (../socket-handlers.ts) parses each event and calls the method of the same name.
 */
export class Coordinator {
  readonly registry: Registry;
  readonly links: Links;
  readonly audit = new Audit((id, counts, agreed) => this.judge(id, counts, agreed));
  /** Set by a cluster of servers (../cluster/); null for a server alone. */
  cluster: ClusterSeam | null = null;
  private readonly bans: BanList;
  private readonly members = new Map<string, Member>();
  private readonly sessions = new Map<number, GenerationSession>();
  /** Each live session's way of linking two peers (it unlinks them when it ends). */
  private readonly sessionLinks = new Map<number, (a: string, b: string) => void>();
  /** Recently finished sessions: late reports from stragglers for them are expected, not errors. */
  private readonly finished = new Map<number, GenerationSession>();
  private nextSessionId = 1;
  private nextChallengeId = 1;
  private queued = 0;
  private closing = false;
  private readonly observers: SwarmObserver[] = [];
  private readonly stats = new ServiceStats();
  private readonly random: () => number;
  private readonly localAddresses: readonly string[];
  /** The server's own replicas, where the operator allows the fallback (of the partition served now). */
  private fallback: ServerReplicas | null;
  /** Computes challenges for the partition served now. */
  private oracle: ChallengeOracle;
  /** Bumped by every re-partition: challenges made for an older partition are dropped. */
  private epoch = 0;
  /** A re-partition is being built (its stage files): no second one starts meanwhile. */
  private repartitioning = false;
  /** When the partition last changed (performance.now()): a switch back waits for the hold after it. */
  private switchedAt = Number.NEGATIVE_INFINITY;
  /** Looks again later: once the hold is over (nothing else may happen meanwhile to ask), or after proofs. */
  private recheckTimer: ReturnType<typeof setTimeout> | null = null;
  /** The partition the operator configured: a re-partition returns to it once it serves again. */
  private readonly operatorRanges: readonly LayerRange[];
  /** Re-partitions carried out, and requests replayed on a new partition, since the start. */
  repartitions = 0;
  replays = 0;
  /** Steps rolled back because stage 0 computed on a mesh token the coordinator did not verify, over finished sessions. */
  meshRollBacks = 0;
  /** Partitions planned (each costs up to seconds for a large swarm, on the event loop). */
  plans = 0;

  constructor(
    private model: ServedModelInfo,
    private readonly options: CoordinatorOptions,
    private readonly log: (line: string) => void,
  ) {
    this.registry = new Registry(model.modelId, model.numStages, options.redundancy);
    this.random = options.random ?? Math.random;
    this.localAddresses = options.localAddresses ?? DEFAULT_LOCAL_ADDRESSES;
    // Their messages come in as a volunteer's would, a turn later (never inside the call that caused them).
    this.oracle = options.oracle;
    this.operatorRanges = rangesOf(model.manifest);
    this.registry.setFits(stagesOf(options.sizes ?? options.repartition?.sizes, this.operatorRanges));
    this.fallback = options.fallback === undefined ? null : this.serverReplicas(model.manifest, options.fallback);
    this.links = options.links ?? new Links();
    this.bans = options.bans ?? new BanList();
  }

  /** The server's replicas of a partition's stages, their messages delivered as a volunteer's would be. */
  private serverReplicas(manifest: StageManifest, options: FallbackOptions): ServerReplicas {
    // Their messages come in as a volunteer's would, a turn later (never inside the call that caused them).
    const later = (f: () => void) => setImmediate(f);
    return new ServerReplicas(manifest, options, {
      frame: (from, to, messages) => later(() => this.deliverFrame(from, to, messages)),
      joined: (from, sessionId) => later(() => this.joined(from, sessionId)),
      digest: (from, m) => later(() => this.digest(from, m)),
      logits: (from, m) => later(() => this.logits(from, m.sessionId, m.step, new Float32Array(m.logits), m.resets ?? 0)),
      failed: (from, m) => later(() => this.failed(from, m)),
      // Late or early honest frames are no news; what a stranger or a broken peer sends is.
      rejected: (from, reason) => {
        if (!/^ERR_(NOT_LINKED|STALE_STEP) /.test(reason)) this.log(`${from}: ERR_BAD_FRAME ${reason}`);
      },
    });
  }

  /** An assignment to a stage of the partition served now. */
  private assignment(stage: number): StageAssignment {
    const { modelId, baseUrl, partition } = this.model;
    return { modelId, stage, baseUrl, ...(partition === undefined ? {} : { partition }) };
  }

  get vocabSize(): number {
    return this.model.manifest.model.vocabSize;
  }

  private refuse(id: string, code: WireErrorCode, message: string): void {
    this.log(`${id}: ${code} ${message}`);
    this.members.get(id)?.link.send('server:error', { code, message });
  }

  /** A volunteer says hello: registered under an id of the server's, assigned a stage; or refused (faults, bans). */
  hello(link: VolunteerLink, address: string, m: VolunteerHello): string | null {
    const refuse = (code: WireErrorCode, message: string) => {
      this.log(`refused volunteer from ${address}: ${code} ${message}`);
      link.send('server:error', { code, message });
      link.disconnect();
      return null;
    };
    if (m.fault !== null && !this.options.allowFaults)
      return refuse('ERR_FAULTS_REFUSED', `this server does not accept injected faults (${m.fault})`);
    const keys = identityKeys(m.clientKey, address, this.localAddresses);
    if (keys.some((k) => this.bans.banned(k)))
      return refuse('ERR_BANNED', 'this volunteer (its client key or address) was evicted for misbehaving; try again later');
    // One address (not this machine's) holds a bounded number of volunteers: a flood of sockets registers no further.
    const addressKey = keys.find((k) => k.startsWith('addr:'));
    if (addressKey !== undefined) {
      let same = 0;
      for (const other of this.members.values()) if (other.keys.includes(addressKey)) same += 1;
      if (same >= MAX_VOLUNTEERS_PER_ADDRESS)
        return refuse(
          'ERR_RATE_LIMITED',
          `${same} volunteers are connected from this address already (at most ${MAX_VOLUNTEERS_PER_ADDRESS})`,
        );
    }
    // The id is the server's, never the client's: nobody can claim another volunteer's id.
    const id = this.options.newId?.() ?? randomUUID();
    if (this.members.has(id)) return refuse('ERR_BAD_HANDSHAKE', 'that volunteer id is taken');
    this.members.set(id, { id, link, keys, fault: m.fault, remote: false, proven: false, vouched: false, challenge: null, noShows: 0 });
    const held = { bufferLimitBytes: bufferLimitBytes(m.backend, m.capacity), keys };
    const stage = this.registry.join(id, m.backend, m.adapter, Date.now(), offeredBytes(m.backend, m.capacity), held);
    if (stage === null) {
      this.members.delete(id);
      return refuse('ERR_CAPACITY', cannotHold(offeredBytes(m.backend, m.capacity), held.bufferLimitBytes, this.registry));
    }
    link.send('volunteer:welcome', { volunteerId: id });
    link.send('volunteer:assign', this.assignment(stage));
    // No planning here: the planner counts proven volunteers only, and a hello proves nothing (its proof asks).
    this.log(
      `volunteer ${id} (${m.backend}${m.fault === null ? '' : `, fault ${m.fault}`}, from ${address}) joined: stage ${stage}; replicas per stage ${this.registry.replicasPerStage().join('/')}`,
    );
    this.options.statusChanged?.();
    return id;
  }

  /**
   * A volunteer says it loaded its stage. Its word is not enough: it is sent a
   * challenge step and counts as ready once its answer matches the reference.
   */
  ready(id: string, m: StageReady): void {
    const v = this.registry.get(id);
    const member = this.members.get(id);
    if (v === undefined || member === undefined) return;
    // A late ready for the partition before a re-partition: the volunteer is loading the new one.
    if (m.partition !== undefined && this.model.partition !== undefined && m.partition !== this.model.partition) {
      this.log(`volunteer ${id}: a ready for partition ${m.partition}, not ${this.model.partition}: ignored`);
      return;
    }
    if (m.modelId !== this.model.modelId || v.stage !== m.stage) {
      this.refuse(id, 'ERR_NOT_ASSIGNED', `ready: ${m.modelId} stage ${m.stage} is not the stage assigned`);
      return;
    }
    if (v.ready || member.challenge !== null) return;
    void this.sendChallenge(member, m.stage);
  }

  private async sendChallenge(member: Member, stage: number): Promise<void> {
    const oracle = this.oracle;
    const epoch = this.epoch;
    if (member.challenge !== null) return;
    const challengeId = this.nextChallengeId++;
    // Claimed at once, so that a second `ready` does not start another.
    member.challenge = { id: challengeId, expected: [], sentAt: Number.POSITIVE_INFINITY, timer: null };
    let made: Awaited<ReturnType<ChallengeOracle['make']>>;
    try {
      // Asked again when its turn comes: nothing is computed for a volunteer that left (a flood of hello-ready-leave).
      made = await oracle.make(
        stage,
        () => this.members.get(member.id) === member && this.registry.get(member.id)?.stage === stage && this.epoch === epoch,
      );
    } catch (e) {
      member.challenge = null;
      if (!(e instanceof ChallengeMoot)) this.log(`challenge for stage ${stage} could not be made: ${(e as Error).message}`);
      return;
    }
    // Made for another partition (a re-partition came meanwhile), the challenge is no test of this one.
    if (this.members.get(member.id) !== member || this.registry.get(member.id)?.stage !== stage || this.epoch !== epoch) {
      member.challenge = null;
      return;
    }
    const timeoutMs = this.options.challengeTimeoutMs ?? DEFAULT_CHALLENGE_TIMEOUT_MS;
    const timer = setTimeout(() => {
      if (member.challenge?.id !== challengeId) return;
      member.challenge = null;
      this.expel(member.id, 'ERR_CHALLENGE_FAILED', `no answer to a challenge step within ${timeoutMs} ms`, false);
    }, timeoutMs);
    member.challenge = { id: challengeId, expected: made.expected, sentAt: performance.now(), timer };
    const hidden = made.hidden.buffer.slice(made.hidden.byteOffset, made.hidden.byteOffset + made.hidden.byteLength) as ArrayBuffer;
    member.link.send('volunteer:challenge', { challengeId, stage, tokens: made.tokens, hidden });
  }

  /** A volunteer's answer to its challenge: right, and it is ready (or stays so); wrong, and it is evicted. */
  proof(id: string, m: ChallengeProof): void {
    const member = this.members.get(id);
    const v = this.registry.get(id);
    const c = member?.challenge;
    if (member === undefined || v === undefined || c === null || c === undefined || c.id !== m.challengeId || c.timer === null) {
      this.refuse(id, 'ERR_BAD_MESSAGE', `proof: challenge ${m.challengeId} is not open for you`);
      return;
    }
    clearTimeout(c.timer);
    member.challenge = null;
    if (!agreeFingerprints([...m.digest], c.expected)) {
      this.expel(id, 'ERR_CHALLENGE_FAILED', `its answer to a challenge step of stage ${v.stage} is wrong`, true);
      return;
    }
    member.proven = true;
    member.vouched = true;
    if (!v.ready) {
      // Its time per step as measured here, never as it says.
      this.registry.markReady(id, v.stage, performance.now() - c.sentAt);
      this.log(`volunteer ${id} passed its challenge for stage ${v.stage}: ready`);
      // Only a proven volunteer counts towards going back to the configured partition: now it may
      // (proofs come in bursts, each volunteer's after a switch: they are looked at together).
      this.recheckLater(PROOF_RECHECK_MS);
      this.options.statusChanged?.();
    }
  }

  /** May `from` send signalling to `to`? Only between peers linked by a session. */
  relay(from: string, to: string, data: unknown): boolean {
    const target = this.members.get(to);
    if (target === undefined || !this.links.linked(from, to)) return false;
    target.link.send('signal', { from, data });
    return true;
  }

  /**
   * One data-channel message from volunteer `from` for the server replica `to`
   * (the fallback has no data channel): only between peers a live session links.
   */
  frame(from: string, to: string, messages: readonly Uint8Array[]): boolean {
    if (this.fallback === null || !isServerPeer(to) || !this.links.linked(from, to)) {
      this.refuse(from, 'ERR_NOT_LINKED', `frame: ${to} is not a server replica of any session of yours`);
      return false;
    }
    for (const m of messages) this.fallback.frame(from, to, m);
    return true;
  }

  /** A server replica's messages for `to`: another server replica's, or a volunteer's over its socket. */
  private deliverFrame(from: string, to: string, messages: readonly Uint8Array[]): void {
    if (!this.links.linked(from, to)) return;
    if (isServerPeer(to)) for (const m of messages) this.fallback?.frame(from, to, m);
    else this.members.get(to)?.link.send('frame', { from, data: packFrameMessages(messages) });
  }

  /** How to reach a route's member: a volunteer's link, or the server replica's. */
  private linkOf(id: string): VolunteerLink | undefined {
    return isServerPeer(id) ? this.fallback?.link(id) : this.members.get(id)?.link;
  }

  /** The session a message names, if the sender is one of its replicas; otherwise the sender is told. */
  private member(volunteer: string, sessionId: number): GenerationSession | undefined {
    const s = this.sessions.get(sessionId) ?? this.finished.get(sessionId);
    if (s === undefined || s.stageOf(volunteer) === undefined) {
      this.refuse(volunteer, 'ERR_UNKNOWN_SESSION', `session ${sessionId} is not one of yours`);
      return undefined;
    }
    return s;
  }

  /** Another server coordinates the session: the cluster sends the report there. */
  private forwarded(id: string, report: SessionReport): boolean {
    const sid = report.m.sessionId;
    return !this.sessions.has(sid) && !this.finished.has(sid) && this.cluster?.forward(id, report) === true;
  }

  joined(id: string, sessionId: number): void {
    if (this.forwarded(id, { event: 'session:joined', m: { sessionId } })) return;
    this.member(id, sessionId)?.onJoined(id);
  }

  digest(id: string, m: StepDigest): void {
    if (this.forwarded(id, { event: 'step:digest', m })) return;
    const session = this.member(id, m.sessionId);
    if (session === undefined) return;
    if (session.stageOf(id) !== m.stage) {
      this.refuse(id, 'ERR_NOT_ASSIGNED', `step:digest: stage ${m.stage} is not yours`);
      return;
    }
    session.onDigest(id, m.step, [...m.digest], m.computeMs, [...m.input], m.received, m.resets);
  }

  logits(id: string, sessionId: number, step: number, logits: Float32Array, resets = 0): void {
    if (this.forwarded(id, { event: 'step:logits', m: { sessionId, step, logits, resets } })) return;
    this.member(id, sessionId)?.onLogits(id, step, logits, resets);
  }

  failed(id: string, m: StepFailure): void {
    if (this.forwarded(id, { event: 'step:failed', m })) return;
    this.log(`volunteer ${id} failed step ${m.step} of session ${m.sessionId}: ${m.code} ${m.message}`);
    this.member(id, m.sessionId)?.onFailure(id, m.step, m.code, m.message);
  }

  /** A volunteer's connection ended: its sessions fail over, its record goes, the stages re-balance. */
  left(id: string): void {
    const member = this.members.get(id);
    if (member === undefined) return;
    if (member.challenge?.timer != null) clearTimeout(member.challenge.timer);
    this.members.delete(id);
    this.links.drop(id);
    for (const s of this.sessions.values()) this.failOver(s, id);
    // Its record goes with it: a volunteer that comes back is a newcomer (or refused, if banned); in a cluster
    // its record stays in Redis under its client key (../cluster/), and follows it to any server.
    this.audit.forget(id);
    const moves = this.registry.leave(id);
    this.move(moves);
    this.log(`volunteer ${id} left; replicas per stage ${this.registry.replicasPerStage().join('/')}`);
    // One that never proved a stage changed nothing the planner counts (unless its going moved others).
    if (member.vouched || moves.length > 0) this.considerRepartition(true);
    this.options.statusChanged?.();
  }

  /**
   * After a departure that re-balancing could not make good (a stage short of
   * r volunteers): the planner's choice, by memory and measured speed. Within
   * the current partition volunteers move; otherwise the new partition's stage
   * files are built and the swarm switches to it (switchPartition).
   */
  private considerRepartition(departure: boolean): void {
    const builder = this.options.repartition;
    const r = this.options.redundancy;
    if (builder === undefined || this.closing || this.repartitioning) return;
    const current = rangesOf(this.model.manifest);
    if (!sameRanges(current, this.operatorRanges)) {
      // Re-partitioned before: back to the operator's partition as soon as it serves again (volunteers came back).
      // Ready volunteers alone count: a hello costs nothing, and a stranger that never loads would otherwise
      // switch the swarm to a partition where its stage lacks r ready replicas (and re-challenge everyone).
      // Not before the hold is over, and no plan (seconds for a large swarm) while too few clients are ready.
      const wait = this.switchedAt + (this.options.repartitionHoldMs ?? REPARTITION_HOLD_MS) - performance.now();
      const readyClients = new Set(this.plannerView(true).map((v) => v.client)).size;
      if (wait > 0) this.recheckLater(wait);
      else if (readyClients >= this.operatorRanges.length * r) {
        const back = this.plan(builder, this.operatorRanges, true);
        if (back.ok && back.kept) {
          this.buildAndSwitch(builder, back.ranges, 'volunteers joined: back to the configured partition', true);
          return;
        }
      }
    }
    // Joins never shrink the partition: while a swarm fills up, its stages are short by nature.
    if (!departure) return;
    // Short: fewer than r distinct clients on a stage (sockets of one client never make two replicas of a route).
    const clients = Array.from({ length: this.model.numStages }, () => new Set<string>());
    for (const v of this.plannerView()) clients[v.stage]?.add(v.client);
    if (clients.every((c) => c.size >= r)) return;
    const plan = this.plan(builder, rangesOf(this.model.manifest));
    if (!plan.ok) {
      this.log(`re-partition: a stage is short of ${r} volunteers, and no partition serves: ${plan.reason}`);
      return;
    }
    if (plan.kept) {
      this.move(this.registry.assign(this.model.numStages, plan.stageOf, false));
      return;
    }
    this.buildAndSwitch(builder, plan.ranges, `stages short (${this.registry.replicasPerStage().join('/')})`);
  }

  /** Considers a re-partition (a switch back) after `ms`, once for everything that asks meanwhile. */
  private recheckLater(ms: number): void {
    this.recheckTimer ??= setTimeout(() => {
      this.recheckTimer = null;
      this.considerRepartition(false);
    }, ms);
  }

  /** Builds the stage files of `ranges`, then switches to them if they still serve the volunteers there are then. */
  private buildAndSwitch(builder: PartitionBuilder, ranges: readonly LayerRange[], why: string, readyOnly = false): void {
    this.repartitioning = true;
    const key = ranges.map((x) => `${x.start}-${x.end}`).join(',');
    this.log(`re-partition: ${why}; building layers ${key}`);
    builder
      .build(ranges)
      .then((p) => {
        this.repartitioning = false;
        if (this.closing) return;
        // Volunteers may have come and gone while the files were built: placed as they are now.
        const again = this.plan(builder, rangesOf(p.manifest), readyOnly);
        if (again.ok && again.kept) this.switchPartition(p, again.stageOf);
        else this.considerRepartition(true);
      })
      .catch((e: unknown) => {
        this.repartitioning = false;
        this.log(`re-partition to layers ${key} failed: ${(e as Error).message}`);
      });
  }

  /**
   * This server's volunteers as the planner sees them: those that passed a challenge here once (moved ones
   * still loading count; a stranger that never proved a stage would hold a seat it does not fill), or with
   * `readyOnly` those ready now.
   */
  private plannerView(readyOnly = false): PlannedVolunteer[] {
    const local = this.registry.all().filter((v) => v.remote !== true && (readyOnly ? v.ready : this.members.get(v.id)?.vouched === true));
    return plannedVolunteers(local, rangesOf(this.model.manifest), (id) => this.members.get(id)?.keys ?? [], offeredBytes('wasm', null));
  }

  private plan(builder: PartitionBuilder, current: readonly LayerRange[], readyOnly = false) {
    const volunteers = this.plannerView(readyOnly);
    this.plans += 1;
    return planPartition({ sizes: builder.sizes, volunteers, redundancy: this.options.redundancy, current });
  }

  /**
   * Serves a new partition from now: new sessions route on it, sessions in
   * flight are replayed on it (runIds), every volunteer is assigned its stage
   * of it and must pass a challenge on that stage before it counts as ready.
   */
  private switchPartition(p: ServedPartition, stageOf: ReadonlyMap<string, number>): void {
    const from =
      this.model.partition ??
      rangesOf(this.model.manifest)
        .map((x) => `${x.start}-${x.end}`)
        .join(',');
    this.model = { ...this.model, numStages: p.manifest.stages.length, baseUrl: p.baseUrl, manifest: p.manifest, partition: p.key };
    this.oracle = p.oracle;
    this.options.repartition?.switched?.(p);
    this.epoch += 1;
    this.repartitions += 1;
    this.switchedAt = performance.now();
    const fallback = this.options.fallback;
    // The old partition's replicas hand over: their runner is released once the sessions they admitted end.
    if (fallback !== undefined)
      this.fallback = this.serverReplicas(p.manifest, { ...fallback, executor: p.executor }).succeeding(this.fallback);
    for (const member of this.members.values()) {
      if (member.remote) continue;
      if (member.challenge?.timer != null) clearTimeout(member.challenge.timer);
      member.challenge = null;
      member.proven = false;
    }
    const replay = new ReplayOnNewPartition(p.key);
    for (const s of this.sessions.values()) s.abort(replay);
    this.registry.setFits(stagesOf(this.options.sizes ?? this.options.repartition?.sizes, rangesOf(p.manifest)));
    const moves = this.registry.assign(p.manifest.stages.length, stageOf, true);
    for (const move of moves) this.members.get(move.volunteer)?.link.send('volunteer:assign', this.assignment(move.to));
    this.log(
      `re-partitioned ${this.model.modelId} from ${from} to ${p.key}: replicas per stage ${this.registry.replicasPerStage().join('/')}`,
    );
    this.options.statusChanged?.();
  }

  private move(moves: readonly Move[]): void {
    for (const move of moves) {
      const moved = this.members.get(move.volunteer);
      if (moved !== undefined) {
        moved.proven = false;
        moved.link.send('volunteer:assign', this.assignment(move.to));
      }
      // It drops its old stage, and with it its sessions there: they fail over now, not after a step timeout.
      for (const s of this.sessions.values()) this.failOver(s, move.volunteer);
      this.log(`volunteer ${move.volunteer} moved from stage ${move.from} to ${move.to}`);
    }
  }

  /** Evicts a volunteer: tells it why, bans its keys when `ban`, and ends its connection. */
  private expel(id: string, code: WireErrorCode, reason: string, ban: boolean): void {
    const member = this.members.get(id);
    if (member === undefined) return;
    if (ban) for (const k of member.keys) this.bans.ban(k);
    this.log(`volunteer ${id} evicted (${code}): ${reason}`);
    this.refuse(id, code === 'ERR_CHALLENGE_FAILED' || code === 'ERR_EQUIVOCATION' ? code : 'ERR_EVICTED', `evicted: ${reason}`);
    // The transport's disconnect handler calls left(): sessions fail over, stages re-balance.
    queueMicrotask(() => member.link.disconnect());
  }

  /** Tells a volunteer its score; evicts (and bans its keys) after repeated disagreement. */
  private judge(id: string, counts: AuditCounts, agreed: boolean): void {
    const member = this.members.get(id);
    if (member === undefined) return;
    if (member.remote) {
      this.cluster?.audited(id, agreed);
      return;
    }
    this.cluster?.recorded(id, counts);
    member.link.send('volunteer:score', { ...counts, reputation: reputation(counts) });
    if (shouldEvict(counts))
      this.expel(id, 'ERR_EVICTED', `${counts.disagreed} outputs that disagreed with the majority, ${counts.agreed} that agreed`, true);
  }

  /** Has an established record: proven, and enough agreement (the server's own replicas always). Newcomers never outvote it. */
  established(id: string): boolean {
    if (isServerPeer(id)) return true;
    const c = this.audit.get(id);
    return this.members.get(id)?.proven === true && c.agreed >= ESTABLISHED_AFTER && reputation(c) >= ESTABLISHED_REPUTATION;
  }

  /** Sessions each volunteer is in now (in a cluster, on every server: a replica holds MAX_SESSIONS_PER_REPLICA). */
  private load(): Map<string, number> {
    const n = this.sessionsHere();
    const cluster = this.cluster;
    if (cluster === null) return n;
    for (const v of this.registry.all()) {
      const all = cluster.sessionsOf(v.id, n.get(v.id) ?? 0);
      if (all > 0) n.set(v.id, all);
    }
    return n;
  }

  /** Sessions each volunteer is in on this server now (a cluster publishes its own volunteers'). */
  sessionsHere(): Map<string, number> {
    const n = new Map<string, number>();
    for (const s of this.sessions.values()) for (const id of s.route.flat()) n.set(id, (n.get(id) ?? 0) + 1);
    return n;
  }

  /** Ready replicas of a stage with room for another session, as route candidates. */
  private candidates(stage: number, exclude: ReadonlySet<string> = new Set(), load = this.load()): Candidate[] {
    return this.registry
      .readyReplicas(stage)
      .filter((v) => !exclude.has(v.id) && (load.get(v.id) ?? 0) < MAX_SESSIONS_PER_REPLICA)
      .map((v) => this.candidate(v.id));
  }

  private candidate(id: string): Candidate {
    const member = this.members.get(id);
    return {
      id,
      keys: member?.keys ?? [],
      established: this.established(id),
      weight: reputation(this.audit.get(id)) / (1 + (member?.noShows ?? 0)),
    };
  }

  /** Spares for a stage of a running session, chosen by the route rules next to the replicas that stay. */
  private spares(stage: number, exclude: ReadonlySet<string>, alongside: readonly string[]): string[] {
    const beside = alongside.map((id) => this.candidate(id));
    return chooseReplicas(this.candidates(stage, exclude), this.options.redundancy, this.random, beside).map((c) => c.id);
  }

  /**
   * A replica of a running session left: a ready volunteer of the same stage
   * that is not in the route takes its place (rebuilding its KV cache from the
   * agreed inputs); with none, the step goes on with the replicas that remain.
   */
  private failOver(session: GenerationSession, left: string): void {
    const stage = session.stageOf(left);
    if (stage === undefined) return;
    // Replicas that left before (the session went on without them) do not count as staying.
    const staying = (session.route[stage] ?? []).filter((id) => id !== left && (this.members.has(id) || isServerPeer(id)));
    const spare = this.spares(stage, session.notCandidates(), staying)[0];
    if (spare === undefined) {
      // Too few left for a majority: the server computes the stage, where the operator allows it.
      if (staying.length < majority(this.options.redundancy) && session.serve(stage, `replica ${left} left and no spare is ready`)) return;
      session.onLeft(left);
      this.log(`session ${session.sessionId}: replica ${left} of stage ${stage} left; no spare, going on with ${staying.length} replicas`);
      return;
    }
    const link = this.sessionLinks.get(session.sessionId);
    if (link !== undefined) this.linkNeighbours(session, stage, spare, link, this.options.meshLoop ?? true);
    session.replace(left, spare);
    this.log(`session ${session.sessionId}: replica ${left} of stage ${stage} left; ${spare} takes its place`);
  }

  /** The server replica of `stage` for a session, where the fallback is allowed and has room for it; null otherwise. */
  private serverReplica(sessionId: number, stage: number): string | null {
    if (this.fallback === null || !this.fallback.admit(sessionId)) return null;
    return serverPeerId(stage);
  }

  /**
   * With the fallback: a route where the stages short of r ready volunteers
   * (from distinct clients, busy or not) are the server's (FALLBACK=stage), or
   * every stage is (FALLBACK=whole). Null when no stage is short, or another
   * stage's volunteers are busy (the request waits); ERR_BUSY when the
   * fallback has no room for another session.
   */
  private fallbackRoute(sessionId: number, load: Map<string, number>): string[][] | null {
    const fallback = this.fallback;
    if (fallback === null) return null;
    const r = this.options.redundancy;
    const stages = Array.from({ length: this.model.numStages }, (_, s) => s);
    const short = stages.filter((s) => chooseReplicas(this.candidates(s, new Set(), new Map()), r, this.random).length < r);
    if (short.length === 0) return null;
    const route: string[][] = [];
    for (const s of stages) {
      if (fallback.mode === 'whole' || short.includes(s)) route.push([serverPeerId(s)]);
      else {
        const chosen = chooseReplicas(this.candidates(s, new Set(), load), r, this.random);
        if (chosen.length < r) return null;
        route.push(chosen.map((c) => c.id));
      }
    }
    if (!fallback.admit(sessionId))
      throw new GenerationError(
        'ERR_BUSY',
        `stage ${short[0]} of ${this.model.modelId} is short of volunteers and the server's fallback computes ${fallback.busy} sessions already (at most ${fallback.options.maxSessions}); try again shortly`,
      );
    return route;
  }

  /**
   * r ready replicas per stage with room for another session, chosen by the
   * route rules, or the server's replicas for stages short of volunteers (the
   * fallback); waits up to routeWaitMs. Beyond maxQueued waiting requests,
   * refuses at once (ERR_BUSY).
   */
  private async pickRoute(sessionId: number, signal: AbortSignal | undefined, waitMs: number): Promise<string[][]> {
    const r = this.options.redundancy;
    if (this.queued >= (this.options.maxQueued ?? DEFAULT_MAX_QUEUED))
      throw new GenerationError('ERR_BUSY', `${this.queued} requests are waiting for the swarm already; try again shortly`);
    this.queued += 1;
    try {
      const deadline = Date.now() + waitMs;
      for (;;) {
        if (signal?.aborted === true) throw new GenerationError('ERR_CANCELLED', 'the request was cancelled by its client');
        if (this.closing) throw new GenerationError('ERR_SHUTTING_DOWN', 'the server is shutting down');
        const load = this.load();
        const choice = chooseRoute(
          Array.from({ length: this.model.numStages }, (_, s) => this.candidates(s, new Set(), load)),
          r,
          this.random,
        );
        if (choice.ok) return choice.route;
        const served = this.fallbackRoute(sessionId, load);
        if (served !== null) return served;
        if (Date.now() >= deadline) {
          const ready = this.registry.readyReplicas(choice.stage).length;
          // Would the stage field r distinct clients if nobody were busy? Then it is full, not short.
          const unloaded = chooseReplicas(this.candidates(choice.stage, new Set(), new Map()), r, this.random).length;
          throw new GenerationError(
            unloaded >= r ? 'ERR_BUSY' : 'ERR_NO_ROUTE',
            unloaded >= r
              ? `stage ${choice.stage} of ${this.model.modelId}: its ${ready} ready replicas are busy with other sessions; waited ${waitMs} ms`
              : `stage ${choice.stage} of ${this.model.modelId}: ${unloaded} of ${r} replicas ready (from distinct clients; ${ready} ready, ${this.registry.replicasPerStage()[choice.stage]} assigned); waited ${waitMs} ms`,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, ROUTE_POLL_MS));
      }
    } finally {
      this.queued -= 1;
    }
  }

  /** Fails the generations in flight with a clear error and refuses new ones: the server is going away. */
  shutdown(): void {
    this.closing = true;
    const e = new GenerationError('ERR_SHUTTING_DOWN', 'the server is shutting down; send the request again once it is back');
    for (const s of this.sessions.values()) s.abort(e);
    for (const m of this.members.values()) if (m.challenge?.timer != null) clearTimeout(m.challenge.timer);
    if (this.recheckTimer !== null) clearTimeout(this.recheckTimer);
  }

  /** Adds an observer of tokens and generations (metrics, the dashboard). */
  observe(o: SwarmObserver): void {
    this.observers.push(o);
  }

  /** Generations the server computes stages of now (the fallback). */
  get fallbackSessions(): number {
    return this.fallback?.busy ?? 0;
  }

  /** Generations running now. */
  get activeSessions(): number {
    return this.sessions.size;
  }

  /** Requests waiting for a route now. */
  get waitingRequests(): number {
    return this.queued;
  }

  /** The prompt for a chat, by the model's chat template. */
  chatPrompt(messages: readonly ChatMessage[]): string {
    return this.tokenizer().chatPrompt(messages);
  }

  /** Generates through the swarm; `onToken` receives each accepted token, with its votes, as it comes. */
  async complete(req: CompletionRequest, onToken?: (u: TokenUpdate) => void): Promise<Completion> {
    const t0 = performance.now();
    let ttftMs: number | null = null;
    const msPerToken: number[] = [];
    let tokens = 0;
    let verifiedTokens = 0;
    let serverTokens = 0;
    const seen = (u: TokenUpdate) => {
      if (ttftMs === null) ttftMs = performance.now() - t0;
      else msPerToken.push(u.stepMs);
      tokens += 1;
      if (u.verified) verifiedTokens += 1;
      if (u.votes.some((v) => v.server)) serverTokens += 1;
      onToken?.(u);
    };
    try {
      const c = await this.generate(req, seen);
      for (const o of this.observers) o.onGeneration?.('ok');
      this.stats.record({ ok: true, ttftMs, msPerToken, tokens, verifiedTokens, serverTokens });
      return c;
    } catch (e) {
      const code = wireErrorOf(e).code;
      for (const o of this.observers) o.onGeneration?.(code);
      // The client's own doing (a bad request, a cancel) is no failure of the service.
      if (code !== 'ERR_BAD_REQUEST' && code !== 'ERR_CANCELLED')
        this.stats.record({ ok: false, ttftMs, msPerToken, tokens, verifiedTokens, serverTokens });
      throw e;
    }
  }

  /** What the service achieved over the last 5 minutes and hour, and the volunteers ready per stage now: for /api/status. */
  serviceStatus(): ServiceStatus {
    const ready = new Array<number>(this.model.numStages).fill(0);
    for (const v of this.registry.all()) if (v.ready) ready[v.stage] = (ready[v.stage] ?? 0) + 1;
    return {
      modelId: this.model.modelId,
      redundancy: this.options.redundancy,
      volunteers: this.registry.size,
      readyPerStage: ready,
      fallback: {
        mode: this.fallback?.mode ?? 'off',
        maxSessions: this.fallback?.options.maxSessions ?? 0,
        sessions: this.fallbackSessions,
      },
      windows: this.stats.windows(),
    };
  }

  private async generate(req: CompletionRequest, onToken?: (u: TokenUpdate) => void): Promise<Completion> {
    if (this.closing) throw new GenerationError('ERR_SHUTTING_DOWN', 'the server is shutting down');
    const tokenizer = this.tokenizer();
    const r = this.options.redundancy;
    const promptTokens = tokenizer.encode(req.prompt);
    const stream = new TextStream((ids) => tokenizer.decode(ids), req.stop ?? []);
    const sofar: number[] = [];
    let verified = true;
    const { result, route } = await this.runIds(promptTokens, req.maxTokens, req.sampling, req.signal, (token, rec, session) => {
      sofar.push(token);
      const piece = stream.push(sofar);
      const ok = r >= 2 && rec.votes.every((v) => !v.server && v.agreed >= majority(r));
      verified &&= ok;
      onToken?.({
        index: sofar.length - 1,
        token,
        text: piece,
        votes: rec.votes,
        verified: ok,
        redundancy: r,
        logits: rec.logits,
        route: session.route.map((ids) => [...ids]),
        stepMs: rec.ms,
        computeMs: rec.computeMs,
      });
      return stream.stopped;
    });
    stream.finish(result.tokens);
    return {
      promptTokens,
      tokens: result.tokens,
      text: stream.text,
      finishReason: result.finishReason,
      route,
      redundancy: r,
      verified: verified && r >= 2,
    };
  }

  /**
   * Runs token ids through a route of the swarm, with every rule of a request
   * (admission, route choice, fail-over, eviction): the in-process test swarm
   * and the benchmarks call it without a tokenizer. `onStep` returns true to
   * stop after that token.
   */
  async runIds(
    promptTokens: readonly number[],
    maxTokens: number,
    sampling: SamplingParams,
    signal: AbortSignal | undefined,
    onStep: (token: number, record: StepRecord, session: GenerationSession) => boolean | undefined,
  ): Promise<{ result: { tokens: number[]; finishReason: 'stop' | 'length' }; route: string[][]; session: GenerationSession }> {
    const done: number[] = [];
    for (let replays = 0; ; replays++) {
      const epoch = this.epoch;
      try {
        const out = await this.runSession(
          [...promptTokens, ...done],
          maxTokens - done.length,
          sampling,
          signal,
          done.length,
          replays > 0,
          (token, rec, session) => {
            done.push(token);
            return onStep(token, rec, session);
          },
        );
        return { ...out, result: { tokens: [...done], finishReason: out.result.finishReason } };
      } catch (e) {
        // Re-partitioned under it, or failed by the departure that re-partitions the model: the same request
        // again on the new partition, its tokens so far prefilled.
        const replay =
          e instanceof ReplayOnNewPartition ||
          (e instanceof GenerationError && REPLAYED_FAILURES.has(e.code) && (this.repartitioning || this.epoch !== epoch));
        if (!replay || replays >= MAX_REPLAYS || signal?.aborted === true || this.closing) throw e;
        this.replays += 1;
        this.log(
          `replaying a request after ${done.length} tokens (${(e as Error).message}) on the new partition (replay ${replays + 1} of at most ${MAX_REPLAYS})`,
        );
      }
    }
  }

  /** One session of a request: `sampledBefore` tokens of it came from sessions before (replays). */
  private async runSession(
    promptTokens: readonly number[],
    maxTokens: number,
    sampling: SamplingParams,
    signal: AbortSignal | undefined,
    sampledBefore: number,
    replay: boolean,
    onStep: (token: number, record: StepRecord, session: GenerationSession) => boolean | undefined,
  ): Promise<{ result: { tokens: number[]; finishReason: 'stop' | 'length' }; route: string[][]; session: GenerationSession }> {
    if (this.closing) throw new GenerationError('ERR_SHUTTING_DOWN', 'the server is shutting down');
    const { manifest } = this.model;
    const r = this.options.redundancy;
    if (promptTokens.length === 0) throw new GenerationError('ERR_BAD_REQUEST', 'the prompt has no tokens');
    if (promptTokens.length + maxTokens > manifest.model.maxPositions) {
      throw new GenerationError(
        'ERR_BAD_REQUEST',
        `prompt (${promptTokens.length} tokens) + max_tokens (${maxTokens}) exceeds the model's ${manifest.model.maxPositions} positions`,
      );
    }
    const sessionId = this.options.newSessionId?.() ?? this.nextSessionId++;
    let route: string[][];
    try {
      // A replay waits for the new partition's volunteers to load and prove their stages.
      route = await this.pickRoute(
        sessionId,
        signal,
        replay ? Math.max(this.options.routeWaitMs, REPLAY_ROUTE_WAIT_MS) : this.options.routeWaitMs,
      );
    } catch (e) {
      this.fallback?.release(sessionId);
      throw e;
    }
    // Signalling is relayed between these pairs while the session lives, and no longer.
    const linked: [string, string][] = [];
    const link = (a: string, b: string) => {
      this.links.link(a, b);
      linked.push([a, b]);
    };
    this.sessionLinks.set(sessionId, link);
    for (let s = 0; s + 1 < route.length; s++) for (const a of route[s] as string[]) for (const b of route[s + 1] as string[]) link(a, b);
    const meshLoop = this.options.meshLoop ?? true;
    // The mesh loop: the last stage's replicas reach stage 0's (a one-stage model's replicas reach each other).
    if (meshLoop) for (const a of route[route.length - 1] ?? []) for (const b of route[0] ?? []) if (a !== b) link(a, b);
    const send = (v: string) => this.linkOf(v);
    const session = new GenerationSession(
      sessionId,
      route,
      manifest,
      {
        open: (v, m) => send(v)?.send('session:open', m),
        update: (v, m) => send(v)?.send('session:update', m),
        input: (v, m) => send(v)?.send('step:input', m),
        close: (v, id) => send(v)?.send('session:close', { sessionId: id }),
      },
      this.options.timeouts,
      this.audit,
      {
        spares: (stage, exclude, alongside) => this.spares(stage, exclude, alongside),
        link: (stage, id) => this.linkNeighbours(session, stage, id, link, meshLoop),
        log: (line) => this.log(line),
        noShow: (id) => this.noShow(id, sessionId),
        evict: (id, code, reason) => this.expel(id, code, reason, true),
        serve: (stage) => this.serverReplica(sessionId, stage),
      },
      { redundancy: r, established: (id) => this.established(id), trusted: isServerPeer },
      undefined,
      meshLoop,
    );
    this.sessions.set(sessionId, session);
    const cancel = () => session.abort(new GenerationError('ERR_CANCELLED', 'the request was cancelled by its client'));
    if (signal?.aborted === true) cancel();
    signal?.addEventListener('abort', cancel, { once: true });
    try {
      const result = await session.run(
        promptTokens,
        maxTokens,
        sampling,
        (token, rec) => {
          const stop = onStep(token, rec, session);
          for (const o of this.observers) o.onToken?.(rec.ms, rec.votes);
          return stop;
        },
        sampledBefore,
      );
      this.log(`session ${sessionId}: ${result.tokens.length} tokens, ${result.finishReason}`);
      return { result, route: session.route.map((ids) => [...ids]), session };
    } finally {
      signal?.removeEventListener('abort', cancel);
      this.sessions.delete(sessionId);
      this.sessionLinks.delete(sessionId);
      this.fallback?.release(sessionId);
      for (const [a, b] of linked) this.links.unlink(a, b);
      this.meshRollBacks += session.meshRollBacks;
      this.finished.set(sessionId, session);
      if (this.finished.size > 64) this.finished.delete(this.finished.keys().next().value as number);
      this.spotCheck(session.route.flat());
    }
  }

  private tokenizer(): Tokenizer {
    const t = this.model.tokenizer;
    if (t === null) throw new GenerationError('ERR_BAD_REQUEST', 'this coordinator has no tokenizer: send token ids');
    return t;
  }

  /** Links a replica joining `stage` of a session to its neighbours: the stages beside it, and the other end of the mesh loop. */
  private linkNeighbours(
    session: GenerationSession,
    stage: number,
    id: string,
    link: (a: string, b: string) => void,
    meshLoop: boolean,
  ): void {
    const route = session.route;
    const last = route.length - 1;
    for (const p of route[stage - 1] ?? []) link(p, id);
    for (const n of route[stage + 1] ?? []) link(id, n);
    if (!meshLoop) return;
    if (stage === last) for (const f of route[0] ?? []) if (f !== id) link(id, f);
    if (stage === 0 && last > 0) for (const l of route[last] ?? []) if (l !== id) link(l, id);
  }

  /** A replica did not join a session: a strike; MAX_NO_SHOWS strikes evict it. */
  private noShow(id: string, sessionId: number): void {
    const member = this.members.get(id);
    if (member === undefined) return;
    member.noShows += 1;
    this.log(`volunteer ${id} did not join session ${sessionId} (${member.noShows} of ${MAX_NO_SHOWS} no-shows)`);
    if (member.noShows >= MAX_NO_SHOWS) this.expel(id, 'ERR_EVICTED', `${member.noShows} sessions assigned and not joined`, true);
  }

  /** After a session, each of its replicas is challenged again with probability spotCheckRate. */
  private spotCheck(ids: readonly string[]): void {
    const rate = this.options.spotCheckRate ?? DEFAULT_SPOT_CHECK_RATE;
    if (this.closing || rate <= 0) return;
    for (const id of new Set(ids)) {
      const member = this.members.get(id);
      const v = this.registry.get(id);
      if (member === undefined || v === undefined || !v.ready || member.challenge !== null) continue;
      if (this.random() >= rate) continue;
      if (member.remote) this.cluster?.challenge(id);
      else void this.sendChallenge(member, v.stage);
    }
  }

  /** Volunteers online, replicas per stage and the redundancy r, for the landing page. */
  status(): { volunteers: number; replicasPerStage: number[]; redundancy: number } {
    return { volunteers: this.registry.size, replicasPerStage: this.registry.replicasPerStage(), redundancy: this.options.redundancy };
  }

  /** Every volunteer with its stage, backend, state and audit counts. */
  volunteers(): VolunteerView[] {
    const busy = new Set<string>();
    for (const s of this.sessions.values()) for (const id of s.route.flat()) busy.add(id);
    return this.registry.all().map((v) => {
      const counts = this.audit.get(v.id);
      const state = !v.ready ? 'loading' : busy.has(v.id) ? 'busy' : 'ready';
      return {
        id: v.id,
        stage: v.stage,
        backend: v.backend as Backend,
        adapter: v.adapter,
        state,
        ready: v.ready,
        ...counts,
        reputation: reputation(counts),
        established: this.established(v.id),
      };
    });
  }

  get modelInfo(): { modelId: string; stages: number; redundancy: number } {
    return { modelId: this.model.modelId, stages: this.model.numStages, redundancy: this.options.redundancy };
  }

  // The seams of a cluster of servers (../cluster/): volunteers of other servers mirrored here.

  /** Adds or updates a volunteer of another server: a route candidate here, reached through `link`. */
  mirror(link: VolunteerLink, v: MirroredVolunteer): void {
    const member = this.members.get(v.id);
    if (member !== undefined && !member.remote) return;
    if (member === undefined) {
      this.members.set(v.id, {
        id: v.id,
        link,
        keys: v.keys,
        fault: null,
        remote: true,
        proven: v.proven,
        vouched: v.proven,
        challenge: null,
        noShows: 0,
      });
    } else member.proven = v.proven;
    this.registry.mirror({ ...v, remote: true });
    this.audit.set(v.id, v.counts);
    this.options.statusChanged?.();
  }

  /** A volunteer of this server: its identity keys and whether it passed a challenge for its stage; undefined for others. */
  localMember(id: string): { readonly keys: readonly string[]; readonly proven: boolean } | undefined {
    const m = this.members.get(id);
    return m === undefined || m.remote ? undefined : { keys: m.keys, proven: m.proven };
  }

  /** How this server reaches one of its own volunteers; undefined for volunteers of other servers. */
  localLink(id: string): VolunteerLink | undefined {
    const m = this.members.get(id);
    return m === undefined || m.remote ? undefined : m.link;
  }

  /** Is this volunteer one of another server's, mirrored here? */
  isRemote(id: string): boolean {
    return this.members.get(id)?.remote === true;
  }

  /**
   * Moves volunteers of this server to stages short of replicas, counting those of the
   * others: volunteers that joined several servers at once may have picked the same stage.
   */
  rebalance(): void {
    const moves = this.registry.rebalanceNow();
    this.move(moves);
    if (moves.length > 0) this.options.statusChanged?.();
  }

  /** Another server asks for a spot check of a volunteer of this server. */
  challengeAgain(id: string): void {
    const member = this.members.get(id);
    const v = this.registry.get(id);
    if (member === undefined || member.remote || v === undefined || !v.ready || member.challenge !== null || this.closing) return;
    void this.sendChallenge(member, v.stage);
  }
}
