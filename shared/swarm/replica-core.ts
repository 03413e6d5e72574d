import type { StageManifest } from '../model/manifest.js';
import type { SessionExecutor, TensorData } from '../model/pipeline.js';
import type { Draw } from '../model/sampling.js';
import { LOGITS_FROM_ALL } from '../model/stage-graph.js';
import { isSessionLimit, MAX_SESSIONS_PER_REPLICA } from '../protocol/capacity.js';
import { type ActivationFrame, encodeFrame, FrameAssembler } from '../protocol/frames.js';
import type {
  MeshLoop,
  ReceivedReport,
  SessionOpen,
  SessionUpdate,
  StepDigest,
  StepFailure,
  StepInput,
  StepLogits,
} from '../protocol/messages.js';
import type { ParsedChallenge } from '../protocol/validate.js';
import { fingerprint } from '../vote/fingerprint.js';
import { drawOf, logitsAsSent, sameDraw } from '../vote/logits-as-sent.js';
import { agreeTensors, medianOf, Quorum } from '../vote/quorum.js';

/** Where a replica's results go: the data channels and the coordinator. */
export interface ReplicaOutputs {
  frames(to: string, messages: readonly Uint8Array[]): void;
  digest(m: StepDigest): void;
  logits(m: StepLogits): void;
  failed(m: StepFailure): void;
  /** A step was computed (for the page's counters). */
  computed(): void;
  /** A frame was dropped at the boundary, with the reason (its code first); `count` like it at once (default 1). */
  rejected(reason: string, count?: number): void;
  /** Stage 0 began a step on the last stage's token, before the coordinator's (the mesh loop; for counters). */
  meshStep?(sessionId: number, step: number): void;
}

import { countsOn, decodeWant, encodeWant, FanoutState, isWant, sendsTo, type Want, type WantKind } from './fanout.js';
import type { FaultBehaviour } from './faults.js';
import { MESH_AHEAD, sampleAt, TokenVotes, tokenFrame, tokenOf } from './mesh-loop.js';

interface SessionState {
  readonly open: SessionOpen;
  /** Neighbours, which change when a replica of the route is replaced. */
  prev: readonly string[];
  next: readonly string[];
  /** Frames from peers the route does not (yet) name, until the next route update. */
  readonly strays: { from: string; frame: ActivationFrame }[];
  /** This replica's outputs so far, kept to bring a replacement downstream up to date. */
  readonly history: Map<number, { dims: readonly number[]; data: Float32Array }>;
  /** Positions in this session's KV cache (which the executor keeps). */
  positions: number;
  /** Positions of the step being computed now (0 when none): in no vote any more, and not yet in `positions`. */
  computing: number;
  readonly ready: Map<number, TensorData>;
  readonly votes: Map<number, Quorum<Float32Array>>;
  /** Per step, the fingerprint of each counted frame by sender: reported with the digest. */
  readonly received: Map<number, ReceivedReport[]>;
  /** Per step, a timer that takes an agreed but unsettled input after SETTLE_MS. */
  readonly settling: Map<number, ReturnType<typeof setTimeout>>;
  nextStep: number;
  /**
   * The last step whose input was taken (in this epoch): a frame for it or an
   * earlier step is a late copy, the minority's at r ≥ 3 once a majority was
   * taken. Kept (a roll-back without a new era may need it) but not counted as
   * refused: r replicas each sending late ones would be r² refusals a step.
   */
  taken: number;
  running: boolean;
  /** Closed by the coordinator: the cache is released once the steps being computed are done. */
  closed: boolean;
  /** The KV cache's length before each step, to roll back to. */
  readonly lengths: Map<number, number>;
  /** Bumped by a roll-back: a compute that began before it is discarded. */
  epoch: number;
  /** Updates with resetFrom applied, reported with each digest. */
  resets: number;
  /** The mesh loop (null: off): for the last stage where its tokens go, for stage 0 whose tokens count. */
  loop: MeshLoop | null;
  /** Stage 0: the last stage's tokens per step. */
  readonly tokens: TokenVotes;
  /** Stage 0: tokens a majority of the last stage sent, per step, until computed (or beyond MESH_AHEAD: until the coordinator catches up). */
  readonly meshReady: Map<number, number>;
  /** Stage 0: the highest step whose tokens came from the coordinator (verified), -1 before any. */
  verified: number;
  /** Stage 0: the coordinator's token ids of every step so far, restored by a roll-back (its input can overtake the update). */
  readonly given: Map<number, readonly number[]>;
  /** The session's era (mod 256): frames are stamped with it; one of an earlier era is from an undone path. */
  era: number;
  /** Stage 0: mesh tokens up to this step are ignored (after a roll-back, the ones in flight are from the undone path). */
  meshFloor: number;
  /** Optimistic quorum fan-out: who is sent what unasked, who asked, what this replica asked for (shared/swarm/fanout.ts). */
  readonly fan: FanoutState;
}

/** A frame's era against the session's: the same, a later one (this replica is behind) or an earlier one (stale). */
function eraOf(s: { era: number }, f: ActivationFrame): 'same' | 'newer' | 'older' {
  const d = ((f.era ?? 0) - s.era) & 0xff;
  return d === 0 ? 'same' : d < 128 ? 'newer' : 'older';
}

/**
 * Strays of a route's sender kept out of reach of others' floods: its first this many of each newer era (a sender
 * recomputes at most the MESH_AHEAD window after a roll-back before the update that rolls this replica back comes).
 */
export const SENDER_STRAYS_KEPT = MESH_AHEAD + 1;

/** Whether era `b` comes after era `a` (mod 256, as eraOf). */
function eraAfter(a: number, b: number): boolean {
  const d = (b - a) & 0xff;
  return d > 0 && d < 128;
}

/**
 * The stray to drop when more than strayLimit wait, or when they carry more than strayPositionLimit positions. First
 * one its own sender undid: a frame of a step at or after one the same peer sent in a later era (a sender's frames of
 * an era begin at its roll-back, so a later era's step k undoes its earlier era's steps from k on; another peer's
 * frames undo nothing). Then each sender the route names keeps its first SENDER_STRAYS_KEPT strays of each newer era
 * (its recomputed steps, which it sends once; two roll-backs whose updates both come late are two such windows): no
 * number of other peers can push them out. Of the rest, the peer with the most waiting goes first (frames, or
 * positions when `by` is 'positions': one large frame weighs more than a replacement's few small ones; on a tie, one
 * the route does not name as a sender, the last to start waiting): its oldest of this replica's era (a replacement's
 * replay, most of it steps already taken), else its newest (a newer era's steps: the lowest are needed first); by
 * positions, of its largest frames.
 */
function strayToDrop(
  s: { era: number; prev: readonly string[] },
  strays: readonly { from: string; frame: ActivationFrame }[],
  by: 'frames' | 'positions' = 'frames',
): number {
  const undone = strays.findIndex(({ from, frame }) =>
    strays.some((y) => y.from === from && y.frame.step <= frame.step && eraAfter(frame.era ?? 0, y.frame.era ?? 0)),
  );
  if (undone >= 0) return undone;
  const kept = new Map<string, number>();
  const all = strays.map((x, i) => ({ x, i }));
  const open = all.filter(({ x }) => {
    if (s.prev[x.frame.replica] !== x.from || eraOf(s, x.frame) !== 'newer') return true;
    const key = `${x.from}\u0000${x.frame.era ?? 0}`;
    const n = kept.get(key) ?? 0;
    kept.set(key, n + 1);
    return n >= SENDER_STRAYS_KEPT;
  });
  // Only when the route's senders alone keep more than strayLimit (three or more roll-backs pending) may theirs go.
  const among = open.length > 0 ? open : all;
  const count = new Map<string, number>();
  for (const { x } of among) count.set(x.from, (count.get(x.from) ?? 0) + (by === 'frames' ? 1 : positionsOf(x.frame)));
  let busiest = '';
  let most = 0;
  // Map order is the order peers started waiting: a later one wins a tie, and an unnamed one wins over a named one.
  const rank = (from: string, n: number) => n * 2 + (s.prev.includes(from) ? 0 : 1);
  for (const [from, n] of count) if (rank(from, n) >= rank(busiest, most) || busiest === '') [busiest, most] = [from, n];
  let mine = among.filter(({ x }) => x.from === busiest);
  if (by === 'positions') {
    // Its largest: a small frame would free almost nothing, and a sender's recomputed steps after its prompt would go
    // one by one while every sender's copy of the prompt stayed (a red-team pass: steps with one copy left, no majority).
    const largest = Math.max(...mine.map(({ x }) => positionsOf(x.frame)));
    mine = mine.filter(({ x }) => positionsOf(x.frame) === largest);
  }
  const same = mine.find(({ x }) => eraOf(s, x.frame) === 'same');
  return (same ?? mine.at(-1))?.i ?? 0;
}

/** Stage 0's input of token ids. */
function tokenInput(tokens: readonly number[]): TensorData {
  return { dtype: 'int64', dims: [1, tokens.length], data: BigInt64Array.from(tokens, (t) => BigInt(t)) };
}

export { isSessionLimit, MAX_SESSIONS_PER_REPLICA } from '../protocol/capacity.js';

/**
 * How long a replica waits, after a majority of its inputs agree without a
 * majority of identical values, for the remaining replicas before it takes the
 * median of what came: waiting lets a liar's nudge be outvoted, not averaged in.
 */
export const SETTLE_MS = 250;
/** Outputs kept per session for replays (a session has at most this many steps). */
const MAX_HISTORY_STEPS = 1024;
/** How far ahead of the next step a frame may be (further is dropped, not buffered): a slow replica (WebGPU on SwiftShader) lags many steps behind. */
export const MAX_STEPS_AHEAD = 64;
/** Frames kept per session that cannot be placed yet (strays), whatever the route: see strayLimit. */
const MAX_STRAYS = 16;

/**
 * Strays a session keeps, for a route of `senders` previous-stage replicas: 16, or room for every sender's kept strays
 * of two roll-backs whose updates both come late (2 × SENDER_STRAYS_KEPT each) where r is larger (r ≥ 3: with r = 4,
 * two such roll-backs leave 20 strays that are all needed; with r = 6 the senders' kept strays of one were 18). The
 * coordinator sets r, not a peer: no client moves this bound.
 */
export function strayLimit(senders: number): number {
  return Math.max(MAX_STRAYS, senders * 2 * SENDER_STRAYS_KEPT);
}

/**
 * Positions a session's strays may carry together, for a route of `senders` previous-stage replicas: the model's
 * `maxPositions` for each of a majority of them (at least two), and one for each stray the count allows. One sender's
 * frames of one era are steps of one path, so they carry at most the model's positions: this leaves room for a
 * majority's recomputed steps after a roll-back to the first step of a session as long as the model allows, its
 * prompt's copies from the others dropped first (strayToDrop). Counting frames alone let 16–30 strays of the largest
 * frame wait in each session (18 MiB each at SmolLM's hidden 576 and 8 192 positions: 340 MiB a session at r = 3,
 * 5.4 GB over a replica's 16 sessions); now about twice the largest frame a session at r ≤ 3.
 */
export function strayPositionLimit(senders: number, maxPositions: number): number {
  return Math.max(2, Math.floor(senders / 2) + 1) * maxPositions + strayLimit(senders);
}

/** Why a previous stage's frame is not hidden states of this model ([1, positions, hidden]), or null. */
function frameShapeError(f: ActivationFrame, hidden: number): string | null {
  return f.dims.length !== 3 || f.dims[0] !== 1 || f.dims[2] !== hidden ? `ERR_FRAME_SHAPE [${f.dims.join(', ')}]` : null;
}

/** Positions an activation frame carries ([1, positions, hidden]). */
function positionsOf(f: ActivationFrame): number {
  return f.dims[1] ?? 0;
}

/**
 * One replica of one stage, free of browser and transport: for each session it
 * computes every step on the input its previous stage's replicas agree on (the
 * first majority), sends its output to the next stage's replicas and a
 * fingerprint to the coordinator. Used by the volunteer page and by tests.
 */
export class ReplicaCore {
  private readonly assemblers = new Map<string, FrameAssembler>();
  private challenges = 0;
  /** Challenges run one at a time: a captured stage keeps one row of KV cache for them (captured-stages.ts). */
  private challengeQueue: Promise<unknown> = Promise.resolve();
  private readonly sessions = new Map<number, SessionState>();

  constructor(
    private readonly manifest: StageManifest,
    readonly stage: number,
    private readonly executor: SessionExecutor,
    private readonly out: ReplicaOutputs,
    /** Fault injection for tests and demos; null for an honest replica. */
    private readonly fault: FaultBehaviour | null = null,
    private readonly computeMs: () => number = () => 0,
    /** How far ahead of the next step a frame may be (the server's own replicas keep less). */
    private readonly maxStepsAhead = MAX_STEPS_AHEAD,
    /** Sessions it keeps open at once (its ready says so: a stage with graph capture holds fewer). */
    readonly maxSessions = MAX_SESSIONS_PER_REPLICA,
  ) {
    if (!isSessionLimit(maxSessions))
      throw new RangeError(`maxSessions must be an integer in 1..${MAX_SESSIONS_PER_REPLICA}, not ${maxSessions}`);
  }

  /** Starts a session; false when it is for another stage. */
  open(m: SessionOpen): boolean {
    const entry = this.manifest.stages[m.stage];
    if (entry === undefined || m.stage !== this.stage) {
      this.out.failed({
        sessionId: m.sessionId,
        step: 0,
        code: 'ERR_NOT_ASSIGNED',
        message: `stage ${m.stage} is not loaded here (stage ${this.stage} is)`,
      });
      return false;
    }
    if (this.sessions.size >= this.maxSessions && !this.sessions.has(m.sessionId)) {
      this.out.failed({
        sessionId: m.sessionId,
        step: 0,
        code: 'ERR_REPLICA_FULL',
        message: `this replica keeps ${this.maxSessions} sessions open already`,
      });
      return false;
    }
    this.sessions.set(m.sessionId, {
      open: m,
      prev: m.prev,
      next: m.next,
      history: new Map(),
      strays: [],
      positions: 0,
      computing: 0,
      ready: new Map(),
      votes: new Map(),
      received: new Map(),
      settling: new Map(),
      nextStep: 0,
      taken: -1,
      running: false,
      closed: false,
      lengths: new Map(),
      epoch: 0,
      resets: 0,
      loop: m.loop ?? null,
      tokens: new TokenVotes(m.loop?.peers ?? []),
      meshReady: new Map(),
      verified: -1,
      given: new Map(),
      era: (m.era ?? 0) & 0xff,
      meshFloor: -1,
      fan: new FanoutState(m.fanout ?? 0),
    });
    return true;
  }

  /** New neighbours after a replacement; resends this session's outputs to the new next-stage replicas. */
  update(m: SessionUpdate): void {
    const s = this.sessions.get(m.sessionId);
    if (s === undefined) return;
    const gone = s.prev.filter((id) => !m.prev.includes(id));
    const added = m.prev.filter((id) => !s.prev.includes(id));
    // A newcomer answers in the place of the replica it replaces, in votes still open.
    for (const [i, old] of gone.entries()) {
      const neu = added[i];
      if (neu !== undefined) for (const q of s.votes.values()) q.substitute(old, neu);
    }
    if (m.resetFrom !== undefined) {
      for (const step of [...s.votes.keys()]) if (step >= m.resetFrom) this.forgetVote(s, step);
      this.rollBack(s, m.resetFrom);
      s.resets += 1;
      // Mesh tokens for these steps, held or in flight, came from the path being undone.
      s.tokens.forget(m.resetFrom, 'from');
      for (const k of [...s.meshReady.keys()]) if (k >= m.resetFrom) s.meshReady.delete(k);
      s.meshFloor = Math.max(s.meshFloor, m.resetFrom + MESH_AHEAD + 1);
      s.fan.clearTimers(m.resetFrom);
      for (const k of [...s.fan.sentTokens.keys()]) if (k >= m.resetFrom) s.fan.sentTokens.delete(k);
    }
    if (m.era !== undefined) s.era = m.era & 0xff;
    s.prev = m.prev;
    s.next = m.next;
    if (m.loop !== undefined && s.loop !== null) {
      s.loop = { ...s.loop, peers: m.loop };
      s.tokens.setSenders(m.loop);
    }
    // Frames the new route names are counted now; the others stay (bounded) for a later update.
    const waiting = s.strays.splice(0);
    for (const x of waiting) {
      const era = eraOf(s, x.frame);
      if (era === 'older') continue; // from a path since undone
      if (era === 'same' && s.prev[x.frame.replica] === x.from && x.frame.step > s.taken) this.accept(s, x.from, x.frame);
      else if (era === 'newer' || x.frame.step >= s.nextStep || s.prev[x.frame.replica] !== x.from) s.strays.push(x);
    }
    this.trimStrays(s);
    for (const to of m.resendTo) {
      if (!s.next.includes(to)) continue;
      for (const [step, out] of [...s.history].sort((a, b) => a[0] - b[0])) {
        this.out.frames(
          to,
          encodeFrame({
            sessionId: m.sessionId,
            step,
            stage: this.stage,
            replica: s.open.replica,
            dims: out.dims,
            data: out.data,
            era: s.era,
          }),
        );
      }
    }
  }

  close(sessionId: number): void {
    const s = this.sessions.get(sessionId);
    if (s === undefined) return;
    for (const t of s.settling.values()) clearTimeout(t);
    s.fan.clearTimers();
    this.sessions.delete(sessionId);
    // A slow replica still computes the inputs it had taken (its late reports still count in the
    // audit): its cache goes when that is done, not under it.
    s.closed = true;
    if (!s.running) this.executor.release(sessionId);
    // Partial frames of the session go, and so do the assemblers of peers no session names any more.
    const named = new Set([...this.sessions.values()].flatMap((x) => [...x.prev]));
    for (const [peer, a] of this.assemblers) {
      a.forgetSession(sessionId);
      if (!named.has(peer) && a.pendingFrames === 0) this.assemblers.delete(peer);
    }
  }

  /**
   * What inbound frames hold in memory now, all sessions and peers together:
   * bytes of partial frames being reassembled, frames kept aside for a route
   * update (strays), and steps with a vote open. Each is bounded (see the
   * constants above and FrameLimits); the hostile-bytes spec reads it.
   */
  held(): { readonly assemblingBytes: number; readonly strayBytes: number; readonly openVotes: number } {
    let assemblingBytes = 0;
    for (const a of this.assemblers.values()) assemblingBytes += a.pendingBytes;
    let strayBytes = 0;
    let openVotes = 0;
    for (const s of this.sessions.values()) {
      for (const x of s.strays) strayBytes += x.frame.data.byteLength;
      openVotes += s.votes.size;
    }
    return { assemblingBytes, strayBytes, openVotes };
  }

  /** Sessions open now (the volunteer keeps data channels only to their peers). */
  get openSessions(): readonly SessionOpen[] {
    return [...this.sessions.values()].map((s) => ({ ...s.open, prev: s.prev, next: s.next }));
  }

  /**
   * Undoes the steps from `step` on (an earlier stage's output for them was
   * found wrong after this replica computed on it): the KV cache goes back to
   * its length before that step, and the step is computed again on the new
   * agreed input.
   */
  private rollBack(s: SessionState, step: number): void {
    // A step being computed now (running, at nextStep) is undone too: its result is discarded when it comes.
    if (step > s.nextStep || (step === s.nextStep && !s.running)) return;
    const length = s.lengths.get(step);
    if (length === undefined) return;
    s.epoch += 1;
    s.positions = length;
    void this.executor.truncate(s.open.sessionId, length);
    for (const k of [...s.history.keys()]) if (k >= step) s.history.delete(k);
    for (const k of [...s.ready.keys()]) if (k >= step) s.ready.delete(k);
    for (const k of [...s.lengths.keys()]) if (k > step) s.lengths.delete(k);
    s.nextStep = step;
    s.taken = step - 1;
    // Stage 0 computes the undone steps again on the coordinator's tokens, where it has them already.
    for (const [k, tokens] of s.given) if (k >= step) s.ready.set(k, tokenInput(tokens));
    if (this.stage === 0) void this.drain(s);
  }

  private forgetVote(s: SessionState, step: number): void {
    s.votes.delete(step);
    s.received.delete(step);
    const t = s.settling.get(step);
    if (t !== undefined) clearTimeout(t);
    s.settling.delete(step);
    const o = s.fan.overdue.frames.get(step);
    if (o !== undefined) clearTimeout(o);
    s.fan.overdue.frames.delete(step);
  }

  /**
   * A challenge: this stage on a fresh KV cache over the given input; returns
   * the fingerprint of its output. Faults are not injected here: a liar that
   * answers challenges honestly is what the votes are for.
   */
  challenge(m: ParsedChallenge): Promise<number[]> {
    const run = this.challengeQueue.then(() => this.challengeNow(m));
    this.challengeQueue = run.catch(() => undefined);
    return run;
  }

  private async challengeNow(m: ParsedChallenge): Promise<number[]> {
    if (m.stage !== this.stage) throw new Error(`stage ${m.stage} is not loaded here (stage ${this.stage} is)`);
    const entry = this.manifest.stages[this.stage];
    if (entry === undefined) throw new Error(`the manifest has no stage ${this.stage}`);
    const hidden = this.manifest.model.hiddenSize;
    let input: TensorData;
    if (this.stage === 0) {
      if (m.tokens.length === 0) throw new Error('a stage-0 challenge needs tokens');
      input = { dtype: 'int64', dims: [1, m.tokens.length], data: BigInt64Array.from(m.tokens, (t) => BigInt(t)) };
    } else {
      const data = m.hidden;
      if (data.length === 0 || data.length % hidden !== 0)
        throw new Error(`a challenge's hidden states hold ${data.length} values, not a multiple of ${hidden}`);
      input = { dtype: 'float32', dims: [1, data.length / hidden, hidden], data };
    }
    // A session of its own, with an empty cache, forgotten at once.
    const session = -++this.challenges;
    try {
      return fingerprint((await this.executor.step(session, this.stage, input)).data);
    } finally {
      this.executor.release(session);
    }
  }

  /**
   * Neighbours this replica joined a session without (no data channel: web/net/neighbour-links.ts):
   * where one is a sender the rotation has it count on, it asks the others at once, not after a deadline.
   */
  unreached(sessionId: number, peers: readonly string[]): void {
    const s = this.sessions.get(sessionId);
    if (s === undefined) return;
    for (const kind of ['frames', 'tokens'] as const) if (this.assigned(s, kind)?.some((id) => peers.includes(id))) this.ask(s, kind);
  }

  /** Token ids from the coordinator (stage 0 only). */
  input(m: StepInput): void {
    const s = this.sessions.get(m.sessionId);
    if (s === undefined || this.stage !== 0) return;
    // Verified up to here: mesh tokens may run MESH_AHEAD steps further.
    s.verified = Math.max(s.verified, m.step);
    // Kept for the session (a token a step, at most the model's positions): a roll-back whose update comes late (a
    // browser links to new neighbours first) finds the tokens of its step however far the coordinator went on.
    s.given.set(m.step, [...m.tokens]);
    if (m.step >= s.nextStep) s.ready.set(m.step, tokenInput(m.tokens));
    void this.drain(s);
  }

  /** A data-channel message from peer `from`: a frame's chunk, or a want (fan-out). */
  frame(from: string, bytes: Uint8Array): void {
    if (isWant(bytes)) {
      this.want(from, bytes);
      return;
    }
    let a = this.assemblers.get(from);
    if (a === undefined) {
      // Per peer: a few frames of at most the largest this model can send, only for a live session of the previous stage.
      const m = this.manifest.model;
      const maxFrameBytes = m.hiddenSize * m.maxPositions * 4;
      a = new FrameAssembler({
        maxPendingFrames: 4,
        maxFrameBytes,
        maxPendingBytes: 2 * maxFrameBytes,
        accept: (sessionId, _step, stage) => {
          const s = this.sessions.get(sessionId);
          return s !== undefined && (stage === this.stage - 1 || (this.loopsHere(s) && stage === this.manifest.stages.length - 1));
        },
        onDrop: (f, reason) => this.out.rejected(`${reason} session ${f.sessionId} step ${f.step}`),
      });
      this.assemblers.set(from, a);
    }
    const r = a.push(bytes);
    if (r.kind === 'partial') return;
    if (r.kind === 'rejected') {
      this.out.rejected(r.reason);
      return;
    }
    const f = r.frame;
    const s = this.sessions.get(f.sessionId);
    // Only frames from the previous stage's replica the route names, for a step still to come.
    if (s === undefined) {
      this.out.rejected(`ERR_UNKNOWN_SESSION ${f.sessionId}`);
      return;
    }
    const era = eraOf(s, f);
    if (era === 'older') {
      this.out.rejected(`ERR_STALE_STEP era ${f.era ?? 0} step ${f.step}: from a path since rolled back`);
      return;
    }
    if (this.loopsHere(s) && f.stage === this.manifest.stages.length - 1) {
      // A token of a later era: this replica has not yet rolled back; the coordinator's token will do.
      if (era === 'same') this.meshToken(s, from, f);
      else this.out.rejected(`ERR_STALE_STEP era ${f.era ?? 0} token for step ${f.step}`);
      return;
    }
    if (era === 'newer' || f.stage !== this.stage - 1 || s.prev[f.replica] !== from || f.step <= s.taken) {
      // A replacement's frame can overtake the route update that names it, and a
      // recomputed step's frame the update that rolls this replica back: keep a
      // few frames of the previous stage until the update comes, then look again.
      if (f.stage === this.stage - 1) {
        // Its shape now, not when an update places it.
        const shape = frameShapeError(f, this.manifest.model.hiddenSize);
        if (shape !== null) {
          this.out.rejected(shape);
          return;
        }
        s.strays.push({ from, frame: f });
        this.trimStrays(s);
      } else this.out.rejected(`ERR_NOT_LINKED stage ${f.stage} replica ${f.replica}`);
      return;
    }
    this.accept(s, from, f);
  }

  /**
   * When too many strays wait, or they carry too many positions, one goes (strayToDrop) until they fit: a stranger
   * cannot fill the memory, nor any number of flooders push out the route's senders' recomputed steps (sent once,
   * never again). Also after an update, whose route may have fewer senders.
   */
  private trimStrays(s: SessionState): void {
    const limit = strayPositionLimit(s.prev.length, this.manifest.model.maxPositions);
    for (;;) {
      const frames = s.strays.length > strayLimit(s.prev.length);
      if (!frames && s.strays.reduce((n, x) => n + positionsOf(x.frame), 0) <= limit) return;
      const [dropped] = s.strays.splice(strayToDrop(s, s.strays, frames ? 'frames' : 'positions'), 1);
      if (dropped !== undefined && !this.late(s, dropped.from, dropped.frame))
        this.out.rejected(`ERR_NOT_LINKED stage ${dropped.frame.stage} replica ${dropped.frame.replica}`);
    }
  }

  /** A late copy (see SessionState.taken): from the route's sender it claims to be, in this era, of a step already taken. */
  private late(s: SessionState, from: string, f: ActivationFrame): boolean {
    return eraOf(s, f) === 'same' && f.stage === this.stage - 1 && s.prev[f.replica] === from && f.step <= s.taken;
  }

  /** Stage 0 of a session with the mesh loop: last-stage replicas' token frames are its to count. */
  private loopsHere(s: SessionState): boolean {
    return this.stage === 0 && s.loop !== null;
  }

  /**
   * A last-stage replica's token for a step (the mesh loop): counted only from
   * the route's replica it claims to be, for a step to come within reach; a
   * majority's token is computed on once the step is at most MESH_AHEAD beyond
   * the last one the coordinator verified. Anything else is dropped and the
   * step waits for the coordinator's token.
   */
  private meshToken(s: SessionState, from: string, f: ActivationFrame): void {
    if (!s.tokens.named(from, f.replica)) {
      this.out.rejected(`ERR_NOT_LINKED token from ${from} as last-stage replica ${f.replica}`);
      return;
    }
    const token = tokenOf(f, this.manifest.model.vocabSize);
    if (typeof token === 'string') {
      this.out.rejected(token);
      return;
    }
    // The minority's token of a step already taken (r ≥ 3): late, not refused (step 0, the prompt's, never has one).
    if (f.step > 0 && f.step <= s.taken && f.step > s.meshFloor) return;
    if (f.step === 0 || f.step < s.nextStep || f.step <= s.meshFloor || f.step > s.verified + MESH_AHEAD + 1) {
      this.out.rejected(`ERR_STALE_STEP token for step ${f.step}`);
      return;
    }
    // The generation has no such step (max_tokens): a liar's token there would only waste every stage's work.
    const steps = s.loop?.steps ?? Number.POSITIVE_INFINITY;
    if (f.step >= steps) {
      this.out.rejected(`ERR_STALE_STEP token for step ${f.step}: past the generation's ${steps} steps`);
      return;
    }
    const agreed = s.tokens.add(f.step, from, token);
    if (s.ready.has(f.step) || s.meshReady.has(f.step)) return;
    if (agreed === null) {
      this.copiesShort(s, 'tokens', f.step, s.tokens.heard(f.step), false);
      return;
    }
    s.meshReady.set(f.step, agreed);
    void this.drain(s);
  }

  /** The senders of a hop into this replica: the previous stage's replicas, or (mesh loop) the last stage's. */
  private sendersOf(s: SessionState, kind: WantKind): readonly string[] {
    return kind === 'frames' ? s.prev : (s.loop?.peers ?? []);
  }

  /** The senders this replica counts on over a hop (the rotation), or null where it is all-to-all. */
  private assigned(s: SessionState, kind: WantKind): string[] | null {
    // A one-stage model's replicas count their own tokens: that hop stays all-to-all.
    if (s.fan.size === 0 || (kind === 'tokens' && this.manifest.stages.length === 1)) return null;
    const senders = this.sendersOf(s, kind);
    return countsOn(s.open.replica, senders.length, s.fan.size)?.map((i) => senders[i] as string) ?? null;
  }

  /** Whether this replica sends receiver number `receiver` (`to`) of a hop its copy unasked: the rotation, or it asked. */
  private sends(s: SessionState, kind: WantKind, receiver: number, to: string): boolean {
    if (s.fan.size === 0 || s.fan.subscribers[kind].has(to) || (kind === 'tokens' && this.manifest.stages.length === 1)) return true;
    const receivers = kind === 'frames' ? s.next.length : (s.loop?.peers.length ?? 0);
    return sendsTo(s.open.replica, receiver, s.fan.size, receivers);
  }

  /**
   * A step's copies came and give no majority yet (`heard`: their senders):
   * where the copies this replica counts on all came (they disagree), or
   * agree only within tolerance (`unsettled`), it asks the other senders at
   * once; where some came and others not, it asks once the deadline passes.
   */
  private copiesShort(s: SessionState, kind: WantKind, step: number, heard: readonly string[], unsettled: boolean): void {
    const assigned = this.assigned(s, kind);
    if (assigned === null) return;
    const unasked = this.sendersOf(s, kind).filter((id) => !assigned.includes(id) && !s.fan.asked[kind].has(id));
    if (unasked.length === 0) return;
    if (unsettled || assigned.every((id) => heard.includes(id))) {
      this.ask(s, kind);
      return;
    }
    const timers = s.fan.overdue[kind];
    if (timers.has(step)) return;
    timers.set(
      step,
      setTimeout(() => {
        timers.delete(step);
        // Taken meanwhile (every copy it counts on came): nothing to ask.
        if (this.sessions.get(s.open.sessionId) === s && step > s.taken && !s.ready.has(step) && !s.meshReady.has(step)) this.ask(s, kind);
      }, s.fan.deadline.ms),
    );
  }

  /** Asks every sender of a hop not asked yet for its copies from the first step not taken on, and every later step. */
  private ask(s: SessionState, kind: WantKind): void {
    const assigned = this.assigned(s, kind) ?? [];
    for (const id of this.sendersOf(s, kind)) {
      if (assigned.includes(id) || s.fan.asked[kind].has(id)) continue;
      s.fan.asked[kind].add(id);
      const want: Want = {
        kind,
        sessionId: s.open.sessionId,
        fromStep: s.taken + 1,
        stage: this.stage,
        replica: s.open.replica,
        era: s.era,
      };
      this.out.frames(id, [encodeWant(want)]);
    }
  }

  /**
   * A want from `from`: honoured only from the replica the route names in the
   * hop's next stage (or, for tokens, in stage 0) at the index it gives. It
   * then gets every later step; the first want of a session also brings its
   * kept copies from `fromStep` on (within MAX_STEPS_AHEAD of the newest), a
   * later one only subscribes again (and is counted): a peer cannot make a
   * sender resend its history over and over.
   */
  private want(from: string, bytes: Uint8Array): void {
    const w = decodeWant(bytes);
    if (typeof w === 'string') {
      this.out.rejected(w);
      return;
    }
    const s = this.sessions.get(w.sessionId);
    if (s === undefined) {
      this.out.rejected(`ERR_UNKNOWN_SESSION want for session ${w.sessionId}`);
      return;
    }
    const frames = w.kind === 'frames';
    const route = frames ? s.next : this.stage === this.manifest.stages.length - 1 && s.loop !== null ? s.loop.peers : [];
    if (route[w.replica] !== from || w.stage !== (frames ? this.stage + 1 : 0)) {
      this.out.rejected(`ERR_NOT_LINKED want from ${from} as stage ${w.stage} replica ${w.replica}`);
      return;
    }
    s.fan.subscribers[w.kind].add(from);
    if (s.fan.honoured[w.kind].has(from)) {
      this.out.rejected(`ERR_WANT_REPEATED ${w.kind} of session ${w.sessionId}: subscribed again, nothing resent`);
      return;
    }
    s.fan.honoured[w.kind].add(from);
    // A want of an earlier era is of a path since undone: its steps are recomputed and sent anyway.
    if (((w.era - s.era) & 0xff) !== 0) return;
    const kept = frames ? [...s.history.keys()] : [...s.fan.sentTokens.keys()];
    const newest = Math.max(-1, ...kept);
    if (w.fromStep + MAX_STEPS_AHEAD < newest) {
      this.out.rejected(`ERR_STALE_STEP want from step ${w.fromStep}, ${newest - w.fromStep} steps behind: subscribed, nothing resent`);
      return;
    }
    for (const step of kept.filter((k) => k >= w.fromStep).sort((a, b) => a - b)) {
      const base = { sessionId: w.sessionId, step, stage: this.stage, replica: s.open.replica, era: s.era };
      const out = s.history.get(step);
      const token = s.fan.sentTokens.get(step);
      // An equivocating fault resends what it sends, not what it reported.
      const sent = out === undefined ? undefined : (this.fault?.frames?.(step, out.data) ?? out.data);
      if (frames && out !== undefined && sent !== undefined)
        this.out.frames(from, encodeFrame({ ...base, dims: sent.length === out.data.length ? out.dims : [sent.length], data: sent }));
      else if (!frames && token !== undefined)
        this.out.frames(from, encodeFrame({ ...tokenFrame(w.sessionId, step, this.stage, s.open.replica, token), era: s.era }));
    }
  }

  /** The input of the next step: the coordinator's tokens, else (stage 0) a mesh token within MESH_AHEAD of them. */
  private nextInput(s: SessionState): TensorData | undefined {
    const ready = s.ready.get(s.nextStep);
    if (ready !== undefined || this.stage !== 0 || s.nextStep > s.verified + MESH_AHEAD) return ready;
    const token = s.meshReady.get(s.nextStep);
    return token === undefined ? undefined : { dtype: 'int64', dims: [1, 1], data: BigInt64Array.of(BigInt(token)) };
  }

  /** The last stage's side of the mesh loop: step + 1's token, sampled from this replica's own logits, to stage 0's replicas. */
  private sendToken(s: SessionState, step: number, row: Float32Array, draw: Draw | null): void {
    const loop = s.loop;
    if (loop === null) return;
    if (step + 1 >= loop.steps) return; // the generation ends with this step
    const sampled =
      draw !== null && sameDraw(loop, s.open.drawLogits) ? draw.token : sampleAt(row, loop.sampling, (loop.draws ?? 0) + step);
    // The coordinator ends the generation on end-of-sequence: nothing to compute after it.
    if (sampled === this.manifest.model.eosTokenId) return;
    const token = this.fault?.token?.(step + 1, sampled) ?? sampled;
    const frame = { ...tokenFrame(s.open.sessionId, step + 1, this.stage, s.open.replica, token), era: s.era };
    s.fan.sentTokens.set(step + 1, token);
    for (const k of s.fan.sentTokens.keys()) if (k <= step - MESH_AHEAD - 2) s.fan.sentTokens.delete(k);
    loop.peers.forEach((to, i) => {
      // A one-stage model: this replica is one of stage 0's, and counts its own token without a channel.
      if (this.stage === 0 && i === s.open.replica) this.meshToken(s, to, frame);
      else if (this.sends(s, 'tokens', i, to)) this.out.frames(to, encodeFrame(frame));
    });
  }

  /** A frame from a linked peer of the previous stage: checked, then counted in its step's vote. */
  private accept(s: SessionState, from: string, f: ActivationFrame): void {
    if (f.step < s.nextStep || f.step > Math.max(s.nextStep, s.open.replayTo) + this.maxStepsAhead) {
      this.out.rejected(`ERR_STALE_STEP ${f.step}`);
      return;
    }
    const hidden = this.manifest.model.hiddenSize;
    const shape = frameShapeError(f, hidden);
    if (shape !== null) {
      this.out.rejected(shape);
      return;
    }
    // What the session has left: no sender's frames for the steps to come may carry more positions than the model
    // has after those computed and the one computing. Without it one sender held up to 64 steps ahead of model-sized
    // frames in every session (tens of MiB a session), and a replica computed past the model's positions (up to
    // twice them with a full frame sent while the step before computed, before that step was counted).
    const left = this.manifest.model.maxPositions - s.positions - s.computing;
    let held = 0;
    for (const [k, v] of s.votes) {
      const o = k >= s.nextStep ? v.outcome(from) : undefined;
      if (o?.status === 'fulfilled') held += o.value.length / hidden;
    }
    if (held + (f.dims[1] as number) > left) {
      this.out.rejected(
        `ERR_FRAME_SHAPE [${f.dims.join(', ')}]: ${held} positions held and this frame's past the ${left} the session has left`,
      );
      return;
    }
    let q = s.votes.get(f.step);
    if (q === undefined) {
      q = new Quorum(s.prev, agreeTensors, { combine: medianOf });
      s.votes.set(f.step, q);
    }
    if (s.ready.has(f.step)) return; // already taken (a late frame): nothing more to decide
    const before = q.state.kind;
    if (!q.add({ status: 'fulfilled', replica: from, value: f.data })) return;
    let got = s.received.get(f.step);
    if (got === undefined) {
      got = [];
      s.received.set(f.step, got);
    }
    got.push({ from, digest: fingerprint(f.data) });
    const after = q.state;
    if (after.kind === 'agreed') {
      if (after.settled) this.take(s, f.step);
      else if (!s.settling.has(f.step)) {
        s.settling.set(
          f.step,
          setTimeout(() => this.take(s, f.step), SETTLE_MS),
        );
        // Agreed only within tolerance: the copies not sent unasked are asked for, to settle it within SETTLE_MS.
        this.copiesShort(s, 'frames', f.step, [], true);
      }
    } else if (after.kind === 'pending')
      this.copiesShort(
        s,
        'frames',
        f.step,
        got.map((x) => x.from),
        false,
      );
    else if (before === 'pending' && after.kind === 'no-majority') {
      this.out.failed({
        sessionId: s.open.sessionId,
        step: f.step,
        code: 'ERR_NO_QUORUM',
        message: `stage ${this.stage}: the inputs from stage ${f.stage} do not agree`,
        resets: s.resets,
      });
    }
  }

  /** Takes a step's agreed input (once): the value its majority settled on, or the median of what came. */
  private take(s: SessionState, step: number): void {
    const q = s.votes.get(step);
    if (q === undefined || q.state.kind !== 'agreed' || s.ready.has(step) || step < s.nextStep || this.sessions.get(s.open.sessionId) !== s)
      return;
    const t = s.settling.get(step);
    if (t !== undefined) clearTimeout(t);
    s.settling.delete(step);
    const winner = q.state.value;
    const hidden = this.manifest.model.hiddenSize;
    s.ready.set(step, { dtype: 'float32', dims: [1, winner.length / hidden, hidden], data: winner });
    void this.drain(s);
  }

  /** Computes the agreed inputs of a session in step order, one at a time. */
  private async drain(s: SessionState): Promise<void> {
    if (s.running) return;
    s.running = true;
    try {
      for (let input = this.nextInput(s); input !== undefined; input = this.nextInput(s)) {
        const step = s.nextStep;
        const epoch = s.epoch;
        if (!s.ready.delete(step) && s.meshReady.has(step)) this.out.meshStep?.(s.open.sessionId, step);
        s.meshReady.delete(step);
        // Stage 0 reports what each last-stage replica sent it for this step: a liar's token is seen.
        const received = this.stage === 0 ? s.tokens.reports(step) : (s.received.get(step) ?? []);
        s.tokens.forget(step + 1, 'before');
        for (const [k, t] of [...s.fan.overdue.tokens])
          if (k <= step) {
            clearTimeout(t);
            s.fan.overdue.tokens.delete(k);
          }
        this.forgetVote(s, step);
        s.lengths.set(step, s.positions);
        s.taken = step;
        s.fan.deadline.taken(performance.now());
        s.computing = input.dims[1] as number;
        try {
          await this.compute(s, step, input, received, epoch);
        } finally {
          s.computing = 0;
        }
        // Rolled back meanwhile: nextStep was set by the roll-back.
        if (epoch === s.epoch) s.nextStep = step + 1;
        // The coordinator's tokens for a step computed meanwhile on a mesh token: not needed any more.
        for (const k of s.ready.keys()) if (k < s.nextStep) s.ready.delete(k);
      }
    } catch (e) {
      this.out.failed({
        sessionId: s.open.sessionId,
        step: s.nextStep,
        code: 'ERR_COMPUTE',
        message: (e as Error).message,
        resets: s.resets,
      });
    } finally {
      s.running = false;
      if (s.closed) this.executor.release(s.open.sessionId);
    }
  }

  private async compute(
    s: SessionState,
    step: number,
    input: TensorData,
    received: readonly ReceivedReport[],
    epoch: number,
  ): Promise<void> {
    const { sessionId, replica } = s.open;
    const last = this.stage === this.manifest.stages.length - 1;
    if (this.fault !== null && this.fault.delayMs > 0) await new Promise((r) => setTimeout(r, this.fault?.delayMs));
    // Taken before the step: the executor may take the input's buffer (a transfer to the worker).
    const inputPrint = input.dtype === 'int64' ? fingerprint(Array.from(input.data, Number)) : fingerprint(input.data);
    const positions = input.dims[1] as number;
    // A scored prompt's steps at the last stage: a row of logits for each of their positions (SessionOpen.scoreRows
    // at step 0, scoreChunks after it), from one call with the head on every position.
    const rows = last && (step === 0 ? s.open.scoreRows === positions : s.open.scoreChunks === true) ? positions : 1;
    const main = await this.executor.step(sessionId, this.stage, input, rows > 1 ? LOGITS_FROM_ALL : undefined);
    if (epoch !== s.epoch) {
      // Rolled back while it computed: its result is moot, and the cache goes back again past it.
      await this.executor.truncate(sessionId, s.positions);
      return;
    }
    // The position of the step's first row (a scored step's rows score the tokens after theirs).
    const firstRow = s.positions + positions - rows;
    s.positions += positions;
    const data = this.fault === null ? main.data : this.fault.output(step, main.data, last);
    this.out.computed();
    if (data === null) return;
    // The next stage's input (or, with the mesh loop, stage 0's token) leaves first: it is the critical path. The
    // digest is needed only once the last stage's logits are in, so its fingerprint is taken after (bench/hop-floor.ts).
    const digest = () =>
      this.out.digest({
        sessionId,
        step,
        stage: this.stage,
        digest: fingerprint(data),
        input: inputPrint,
        received,
        resets: s.resets,
        computeMs: this.computeMs(),
      });
    if (last) {
      if (step < s.open.replayTo) {
        digest();
        return; // a replay only rebuilds the cache
      }
      const vocab = this.manifest.model.vocabSize;
      const row = data.slice((Math.max(1, Math.floor(data.length / vocab)) - 1) * vocab);
      // One draw serves the mesh loop's token and the drawn form (drawn-forms.ts), where the session asks for both.
      const draw = rows === 1 ? drawOf(s.open, row, step) : null;
      this.sendToken(s, step, row, draw);
      digest();
      // Its rows, or their forms where the session asked for them (top-logits.ts, drawn-forms.ts).
      const sent = logitsAsSent(s.open, data, rows, firstRow, vocab, step, draw);
      this.out.logits({ sessionId, step, logits: sent.buffer, resets: s.resets });
    } else {
      const dims = data.length === main.data.length ? main.dims : [data.length];
      if (s.history.size < MAX_HISTORY_STEPS) s.history.set(step, { dims, data });
      if (step < s.open.replayTo) {
        digest();
        return; // downstream already has the replayed steps
      }
      // An equivocating fault sends the next stage something else than it reported.
      const sent = this.fault?.frames?.(step, data) ?? data;
      const frames = encodeFrame({
        sessionId,
        step,
        stage: this.stage,
        replica,
        dims: sent.length === data.length ? dims : [sent.length],
        data: sent,
        era: s.era,
      });
      s.next.forEach((id, i) => {
        if (this.sends(s, 'frames', i, id)) this.out.frames(id, frames);
      });
      digest();
    }
  }
}
