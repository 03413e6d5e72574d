/**
 * The Socket.IO events between the coordinator and volunteers, typed once and
 * used by both ends (Server<ClientToServerEvents, ServerToClientEvents> and
 * io() as Socket<ServerToClientEvents, ClientToServerEvents>).
 * README.md beside this file is the prose specification.
 */

import type { SamplingParams } from '../model/sampling.js';
import type { WireError, WireErrorCode } from './errors.js';
import type { FaultKind } from './faults.js';

export type Backend = 'wasm' | 'webgpu';
export type Role = 'volunteer' | 'requester';

/** Sent in the handshake's `auth`. */
export interface HandshakeAuth {
  readonly protocol: number;
  readonly role: Role;
}

/** A volunteer introduces itself. */
export interface VolunteerHello {
  readonly backend: Backend;
  /** The GPU adapter's description, or null on WASM. */
  readonly adapter: string | null;
  /** A fault injected on purpose (test and demo servers only), or null. */
  readonly fault: FaultKind | null;
  /** A random key the browser keeps (localStorage): an evicted volunteer's key is refused for a while. */
  readonly clientKey: string | null;
  /** What it can hold (null or absent: unknown, the server assumes the backend's default); its speed is measured, never reported. */
  readonly capacity?: VolunteerCapacity | null;
}

/**
 * What a volunteer says it can hold: facts of its browser, from which the
 * server works out the memory it offers (shared/swarm/capacity.ts). A claim
 * above what it holds only makes it fail to load, and be evicted.
 */
export interface VolunteerCapacity {
  /** navigator.deviceMemory (GiB of RAM, rounded by the browser), or null where the browser does not say. */
  readonly deviceMemoryGiB: number | null;
  /** The WebGPU adapter's maxBufferSize in bytes, or null on WASM. */
  readonly maxBufferBytes: number | null;
  /** The WebGPU adapter's maxStorageBufferBindingSize in bytes, or null on WASM. */
  readonly maxStorageBindingBytes: number | null;
}

/** How the coordinator judges a volunteer: its outputs against the majority of the others'. */
export interface VolunteerScore {
  readonly agreed: number;
  readonly disagreed: number;
  /** (agreed + 1) / (agreed + disagreed + 2) */
  readonly reputation: number;
}

/** One STUN or TURN server for a volunteer's peer connections: RTCIceServer's shape (shared/ has no DOM types), `urls` always a list. */
export interface IceServer {
  /** `stun:`, `stuns:`, `turn:` or `turns:` URLs. */
  readonly urls: readonly string[];
  /** For TURN: a user name and password (with TURN_SECRET, short-lived ones made for this volunteer). */
  readonly username?: string;
  readonly credential?: string;
}

/** Which candidates a peer connection may use: any, or only TURN relays (RTCIceTransportPolicy). */
export const ICE_TRANSPORT_POLICIES = ['all', 'relay'] as const;
export type IceTransportPolicy = (typeof ICE_TRANSPORT_POLICIES)[number];

/**
 * How a volunteer's peer connections find each other: sent after
 * `volunteer:welcome`, and again at half the TURN credentials' lifetime.
 * Each applies to the connections made after it.
 */
export interface IceConfig {
  readonly iceServers: readonly IceServer[];
  readonly iceTransportPolicy: IceTransportPolicy;
}

/**
 * A one-way delay the volunteer puts on everything it sends after this (its
 * Socket.IO messages and its data-channel messages): sent only by a server
 * made with `netDelayMs` (benchmarks and tests of a WAN on one machine),
 * after `volunteer:welcome`; never by a server started from the environment.
 */
export interface NetConditions {
  readonly delayMs: number;
}

/** The largest NetConditions.delayMs: 10 s is beyond any WAN, and bounds what a delay line holds. */
export const MAX_NET_DELAY_MS = 10_000;

/** A volunteer has loaded (and verified) the stage it was assigned. */
export interface StageReady {
  readonly modelId: string;
  readonly stage: number;
  /** Measured time of one decode step of this stage on this volunteer, in ms. */
  readonly stepMs: number;
  /** The partition of the assignment it loaded (StageAssignment.partition): a late ready for an older partition is ignored. */
  readonly partition?: string;
  /**
   * The most sessions it keeps open at once, in 1..MAX_SESSIONS_PER_REPLICA (absent: that many), where it holds
   * fewer (a stage with graph capture: a row of KV cache a session). The coordinator routes it no more.
   */
  readonly sessions?: number;
}

/** WebRTC signalling data (SDP or ICE), relayed unread between linked peers. */
export interface SignalOut {
  readonly to: string;
  readonly data: unknown;
}
export interface SignalIn {
  readonly from: string;
  readonly data: unknown;
}

/**
 * Peer ids of the server's own replicas (the fallback), one per stage:
 * "server:<stage>". Volunteer ids are the server's UUIDs and never start so.
 */
export const SERVER_PEER_PREFIX = 'server:';

export function serverPeerId(stage: number): string {
  return `${SERVER_PEER_PREFIX}${stage}`;
}

/** Whether a route's peer is the server's own replica (frames to it go over the socket, not a data channel). */
export function isServerPeer(id: string): boolean {
  return id.startsWith(SERVER_PEER_PREFIX);
}

/**
 * Data-channel messages for a server replica of the route, over the socket, in
 * order: batched into one binary (each message as a little-endian u32 length
 * and its bytes; see packFrameMessages), so that a replay of a long session is
 * a few events and not one per step, each with one binary attachment.
 */
export interface FrameOut {
  readonly to: string;
  readonly data: ArrayBuffer | Uint8Array;
}
/** Data-channel messages from a server replica of the route, packed the same way. */
export interface FrameIn {
  readonly from: string;
  readonly data: ArrayBuffer | Uint8Array;
}

/** One `frame` event's binary: each message as a little-endian u32 length and its bytes. */
export function packFrameMessages(messages: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(messages.reduce((n, m) => n + 4 + m.byteLength, 0));
  const view = new DataView(out.buffer);
  let at = 0;
  for (const m of messages) {
    view.setUint32(at, m.byteLength, true);
    out.set(m, at + 4);
    at += 4 + m.byteLength;
  }
  return out;
}

/** Messages in one `frame` event at most. */
export const MAX_FRAME_BATCH = 256;
/** Bytes of messages in one `frame` event at most (below the server's 1 MiB Socket.IO message limit). */
export const MAX_FRAME_BATCH_BYTES = 768 * 1024;

export interface StageAssignment {
  readonly modelId: string;
  readonly stage: number;
  /** Where manifest.json and the stage files are served. */
  readonly baseUrl: string;
  /** The partition's key ("r0-3_3-6"): it changes when the coordinator re-partitions the model; echoed in `volunteer:ready`. */
  readonly partition?: string;
}

/** The coordinator opens a generation session on a replica: its place in the route. */
/**
 * A replica joined a session: it has data channels to a majority of each
 * neighbouring stage's replicas (what it needs to take a majority of inputs
 * and to reach a majority of the next stage).
 */
export interface SessionJoined {
  readonly sessionId: number;
  /** Neighbours (of the stages beside it) it could not reach in time and joined without; absent when none. */
  readonly unreached?: readonly string[];
}

export interface SessionOpen {
  readonly sessionId: number;
  readonly stage: number;
  /** This replica's index among its stage's replicas in the route (goes in frame headers). */
  readonly replica: number;
  /** Volunteer ids of the previous stage's replicas, in replica order (empty for stage 0). */
  readonly prev: readonly string[];
  /** Volunteer ids of the next stage's replicas (empty for the last stage). */
  readonly next: readonly string[];
  /**
   * Steps before this one are a replay (a replacement rebuilding its KV cache
   * from the agreed inputs): computed and fingerprinted, not passed on. 0 for a
   * replica that is there from the start.
   */
  readonly replayTo: number;
  /**
   * The most steps the session has (its prompt's and the tokens it may generate; absent from an older server). A
   * server that relays the replica's reports to the session's server (a cluster) takes no more of them free of its
   * socket's budget than that (cluster/remote-sessions.ts).
   */
  readonly steps?: number;
  /** The mesh loop of this session (absent: the coordinator alone feeds stage 0; see MeshLoop). */
  readonly loop?: MeshLoop;
  /** The session's era (see SessionUpdate.era); absent = 0. */
  readonly era?: number;
  /**
   * Optimistic quorum fan-out (shared/swarm/fanout.ts): the replica count of
   * this replica's own stage, where each hop between stages of equal size (≥ 3)
   * sends each receiver copies from only a majority of its senders, by a
   * rotation, and a receiver asks the others for theirs when those do not
   * agree at once. Absent: every sender sends every receiver (all-to-all).
   */
  readonly fanout?: number;
  /**
   * For the last stage of a scored prompt's session: step 0's input has this
   * many positions (≥ 2), and its logits carry a row for each of them (the
   * prompt's positions 1 … scoreRows), not only the last. Absent: one row.
   */
  readonly scoreRows?: number;
  /**
   * For the last stage of a scored prompt's session: every step after step 0
   * carries a row of logits for each position its input feeds (the prompt's
   * tokens go up to maxScoreRows a step, each row the log-probabilities of the
   * token that follows its position). Absent: one row, the step's last position's.
   */
  readonly scoreChunks?: boolean;
  /**
   * For the last stage of a session whose draw reads only the most likely tokens (greedy, or top_k ≤ this, with no
   * logit_bias and no penalties; shared/vote/top-logits.ts): its step:logits carry this many most likely tokens,
   * the largest value left out and the row's log-sum-exp (2 × topLogits + 2 floats), not the whole row. Absent: rows.
   */
  readonly topLogits?: number;
  /**
   * With `topLogits`, for a session whose draw may read any token (a temperature with no top_k; no logit_bias and no
   * penalties): the session's sampling, and the draws before step 0 (step t draws number `draws` + t of the seeded
   * sampler; negative where a scored prompt's steps draw nothing). Each step's top form then carries the replica's
   * own draw and its weights (a drawn form, shared/vote/drawn-forms.ts).
   */
  readonly drawLogits?: { readonly sampling: SamplingParams; readonly draws: number };
  /**
   * For the last stage of a scored prompt's session: the tokens it feeds, the prompt's and the given ones after it,
   * in order. A step whose rows score given tokens (the row at position q scores scoreTokens[q + 1]) sends each row
   * as its scored form (top-logits.ts: the top 32 tokens, rest, log-sum-exp, then the scored token's value), not the
   * row. Absent: whole rows.
   */
  readonly scoreTokens?: readonly number[];
}

/** The most bytes of logits one step:logits carries (rows of a scored step 0), well under Socket.IO's 1 MiB. */
export const SCORE_ROWS_BYTES = 768 * 1024;

/** The most rows of logits one step may carry for a vocabulary of `vocabSize` (at least 1). */
export function maxScoreRows(vocabSize: number): number {
  return Math.max(1, Math.floor(SCORE_ROWS_BYTES / (4 * vocabSize)));
}

/**
 * The mesh loop: each last-stage replica samples its own logits (the session's
 * seeded sampler, step t's draw) and sends the token to stage 0's replicas over
 * the data channels, which take a token for step t + 1 once a majority of the
 * last stage sent the same one. The coordinator still votes every step and
 * feeds stage 0 the verified token; a step computed on another token is rolled back.
 */
export interface MeshLoop {
  /** For the last stage: stage 0's replicas (where its tokens go); for stage 0: the last stage's (whose tokens count), in replica order. */
  readonly peers: readonly string[];
  /** The session's sampling settings (the last stage samples with them). */
  readonly sampling: SamplingParams;
  /** The generation's steps at most (max_tokens): no token is sent for a step beyond them. */
  readonly steps: number;
  /** The sampler's draws taken before this session's step 0 (a request replayed after a re-partition); absent = 0. */
  readonly draws?: number;
}

/** The route of a session changed (a replica was replaced): new neighbours, and to whom to resend past outputs. */
export interface SessionUpdate {
  readonly sessionId: number;
  readonly prev: readonly string[];
  readonly next: readonly string[];
  /** Send every output of this session so far to these (new) next-stage replicas. */
  readonly resendTo: readonly string[];
  /** Forget the votes on inputs from this step on: the previous stage is being recomputed by new replicas. */
  readonly resetFrom?: number;
  /** The mesh loop's peers after a replacement in stage 0 or the last stage (see MeshLoop.peers). */
  readonly loop?: readonly string[];
  /**
   * The session's era after a roll-back of the whole pipeline (the mesh loop):
   * frames are stamped with it, and one of an earlier era (in flight from the
   * undone path) is dropped.
   */
  readonly era?: number;
}

/** Token ids for stage 0: the prompt at step 0, then one sampled token per step. */
export interface StepInput {
  readonly sessionId: number;
  readonly step: number;
  readonly tokens: readonly number[];
}

/** What a replica received from one replica of the previous stage for a step: the fingerprint of that frame. */
export interface ReceivedReport {
  readonly from: string;
  readonly digest: readonly number[];
}

/** A compact fingerprint of a replica's output for one step, for the coordinator's audit. */
export interface StepDigest {
  readonly sessionId: number;
  readonly step: number;
  readonly stage: number;
  /** Values of the output at fixed sampled positions, then its L2 norm. */
  readonly digest: readonly number[];
  /** The fingerprint of the input it computed on (stage 0: of the token ids): binds the output to the input. */
  readonly input: readonly number[];
  /**
   * The fingerprints of the frames it counted from each previous-stage replica
   * (empty for stage 0): a sender whose frames differ from its own report is equivocating.
   */
  readonly received: readonly ReceivedReport[];
  /** How many session updates with `resetFrom` this replica had applied: a report from before a roll-back is stale. */
  readonly resets: number;
  readonly computeMs: number;
}

/**
 * A step whose right answer the coordinator knows (its own reference runner
 * computed it): before a volunteer counts as ready, and now and then after.
 * The input is fresh and random, so an answer cannot be replayed.
 */
export interface StageChallenge {
  readonly challengeId: number;
  readonly stage: number;
  /** Stage 0: token ids. */
  readonly tokens: readonly number[];
  /** Other stages: hidden states [1, positions, hidden] as float32 bytes (empty for stage 0). */
  readonly hidden: ArrayBuffer;
}

/** A volunteer's answer to a challenge: the fingerprint of its stage's output on the challenge input (fresh KV cache). */
export interface ChallengeProof {
  readonly challengeId: number;
  readonly digest: readonly number[];
}

/**
 * The last stage's logits for the last position of a step; for step 0 of a
 * session opened with `scoreRows`, one row for each of its positions, in order;
 * for a session opened with `topLogits`, the row's top form (top-logits.ts).
 */
export interface StepLogits {
  readonly sessionId: number;
  readonly step: number;
  readonly logits: ArrayBuffer;
  /** As StepDigest.resets: logits computed before a roll-back (a speculative step of the mesh loop) are stale. */
  readonly resets?: number;
}

export interface StepFailure {
  readonly sessionId: number;
  readonly step: number;
  readonly code: WireErrorCode;
  readonly message: string;
  /** As StepDigest.resets: a failure of a step computed before a roll-back is of the path undone (absent: 0). */
  readonly resets?: number;
}

/** A requester's generation request over Socket.IO (the chat page). */
export interface GenerateRequest {
  readonly requestId: string;
  /** The API key, where the server asks for one (API_KEYS); null otherwise. */
  readonly apiKey: string | null;
  readonly prompt: string;
  readonly maxTokens: number;
  readonly temperature: number;
  readonly topP: number;
  readonly seed: number;
}

/** How each stage voted on one step. */
export interface StageVote {
  readonly stage: number;
  /** Replicas whose output agreed with the accepted one when the token was accepted. */
  readonly agreed: number;
  /** Replicas whose output had arrived and disagreed (or failed). */
  readonly disagreed: number;
  /** Replicas that had not answered when the token was accepted (late or gone): not a dissent. */
  readonly missing: number;
  /** Replicas of this stage in the route: the configured redundancy r. */
  readonly replicas: number;
  /**
   * Computed by the server's own runner (the fallback: the stage was short of
   * volunteers), not by volunteers; such a stage is not verified by a vote.
   */
  readonly server: boolean;
}

export interface TokenEvent {
  readonly requestId: string;
  readonly index: number;
  readonly token: number;
  /** The text this token adds. */
  readonly text: string;
  readonly votes: readonly StageVote[];
  /**
   * True when every stage's accepted output was agreed by a majority (⌊r/2⌋+1)
   * of the configured redundancy r, with r ≥ 2. With r = 1 nothing is verified.
   */
  readonly verified: boolean;
  /** The configured redundancy r: replicas per stage that vote. */
  readonly redundancy: number;
  /** Volunteer ids per stage that computed this session. */
  readonly route: readonly (readonly string[])[];
  /** Time of this step in the swarm, and the fastest compute time per stage, in ms. */
  readonly stepMs: number;
  readonly computeMs: readonly number[];
}

export interface GenerateDone {
  readonly requestId: string;
  readonly finishReason: 'stop' | 'length';
  readonly tokens: readonly number[];
  readonly text: string;
}

/** The names of every client-to-server event, for checks at runtime (anything else is refused). */
export const CLIENT_EVENTS = [
  'volunteer:hello',
  'volunteer:ready',
  'volunteer:proof',
  'signal',
  'frame',
  'session:joined',
  'step:digest',
  'step:logits',
  'step:failed',
  'chat:generate',
  'dashboard:subscribe',
  'status:subscribe',
] as const satisfies readonly (keyof ClientToServerEvents)[];

/** A session ends on a volunteer. */
export interface SessionClose {
  readonly sessionId: number;
  /**
   * How many steps the session ran: with several servers, the volunteer's own server takes its reports free of its
   * socket's budget only up to these and the mesh loop's lead (before, up to the steps its open said: a session that
   * ended early left every step it never ran owed). Absent from a server of before.
   */
  readonly steps?: number;
}

export interface ClientToServerEvents {
  'volunteer:hello': (m: VolunteerHello) => void;
  'volunteer:ready': (m: StageReady) => void;
  'volunteer:proof': (m: ChallengeProof) => void;
  signal: (m: SignalOut) => void;
  /** A frame's messages for a server replica of the route (the fallback), which has no data channel. */
  frame: (m: FrameOut) => void;
  'session:joined': (m: SessionJoined) => void;
  'step:digest': (m: StepDigest) => void;
  'step:logits': (m: StepLogits) => void;
  'step:failed': (m: StepFailure) => void;
  'chat:generate': (m: GenerateRequest) => void;
  /** Joins the dashboard's feed: a snapshot now, an update every second. */
  'dashboard:subscribe': () => void;
  /** Asks for `swarm:status`: the status now, then at most one a second while volunteers come and go. */
  'status:subscribe': () => void;
}

/** Volunteers online and replicas per stage, for the landing and chat pages. */
export interface SwarmStatus {
  readonly volunteers: number;
  readonly replicasPerStage: readonly number[];
}

export interface ServerToClientEvents {
  'volunteer:welcome': (m: { readonly volunteerId: string }) => void;
  /** The volunteer's ICE servers and transport policy (with fresh TURN credentials before the last ones expire). */
  'volunteer:ice': (m: IceConfig) => void;
  /** The bench's transport delay (NetConditions); absent on a real server. */
  'volunteer:net': (m: NetConditions) => void;
  'volunteer:assign': (m: StageAssignment) => void;
  'volunteer:score': (m: VolunteerScore) => void;
  'volunteer:challenge': (m: StageChallenge) => void;
  signal: (m: SignalIn) => void;
  /** A frame's messages from a server replica of the route. */
  frame: (m: FrameIn) => void;
  'session:open': (m: SessionOpen) => void;
  'session:close': (m: SessionClose) => void;
  'session:update': (m: SessionUpdate) => void;
  'step:input': (m: StepInput) => void;
  'chat:token': (m: TokenEvent) => void;
  'chat:done': (m: GenerateDone) => void;
  'chat:error': (m: WireError & { readonly requestId: string }) => void;
  /** Only to sockets that sent status:subscribe. */
  'swarm:status': (m: SwarmStatus) => void;
  'server:error': (e: WireError) => void;
  'dashboard:snapshot': (m: DashboardSnapshot) => void;
  'dashboard:update': (m: DashboardUpdate) => void;
}

/** One volunteer as the dashboard and /api/swarm show it. */
export interface VolunteerView {
  readonly id: string;
  readonly stage: number;
  readonly backend: Backend;
  readonly adapter: string | null;
  /** loading its stage, ready for a session, or computing one now. */
  readonly state: 'loading' | 'ready' | 'busy';
  readonly ready: boolean;
  readonly agreed: number;
  readonly disagreed: number;
  readonly reputation: number;
  /** Has an established record (passed its challenge, enough agreement): newcomers never outvote it. */
  readonly established: boolean;
}

/** Samples the dashboard keeps and plots: five minutes at one a second. */
export const DASHBOARD_HISTORY = 300;

/** The swarm over one sampling interval. */
export interface DashboardSample {
  /** ms since the epoch at the end of the interval. */
  readonly t: number;
  readonly tokensPerS: number;
  /** Of those, tokens a stage of which the server computed itself (the fallback). */
  readonly serverTokensPerS: number;
  readonly volunteers: number;
  /** Replica outputs when each token was accepted. */
  readonly agreed: number;
  readonly disagreed: number;
  readonly missing: number;
}

/** Volunteers the grid lists per stage; the others are only counted. */
export const DASHBOARD_REPLICAS_SHOWN = 64;

/** One stage's volunteers, counted. */
export interface StageCount {
  readonly volunteers: number;
  /** Of them, loaded and ready (or computing now). */
  readonly ready: number;
}

/** The stages × replicas grid. */
export interface DashboardGrid {
  /** At most DASHBOARD_REPLICAS_SHOWN volunteers of each stage (computing first, then ready, then loading). */
  readonly volunteers: readonly VolunteerView[];
  /** Every stage's counts, the volunteers not listed included. */
  readonly stages: readonly StageCount[];
}

export interface DashboardUpdate {
  readonly sample: DashboardSample;
  /** The grid when it changed since the last one sent (at most every few seconds); null when it did not. */
  readonly grid: DashboardGrid | null;
  readonly sessions: number;
}

export interface DashboardSnapshot extends DashboardUpdate {
  readonly grid: DashboardGrid;
  readonly modelId: string;
  readonly stages: number;
  readonly redundancy: number;
  readonly intervalMs: number;
  /** The samples so far, oldest first (at most the last five minutes). */
  readonly history: readonly DashboardSample[];
}
