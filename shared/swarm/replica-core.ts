import type { StageManifest } from '../model/manifest.js';
import { KvCache, type StageExecutor, type TensorData } from '../model/pipeline.js';
import { STAGE_IO } from '../model/stage-graph.js';
import { type ActivationFrame, encodeFrame, FrameAssembler } from '../protocol/frames.js';
import type { SessionOpen, SessionUpdate, StepDigest, StepFailure, StepInput, StepLogits } from '../protocol/messages.js';
import { fingerprint } from '../vote/fingerprint.js';
import { agreeTensors, Quorum } from '../vote/quorum.js';

/** Where a replica's results go: the data channels and the coordinator. */
export interface ReplicaOutputs {
  frames(to: string, messages: readonly Uint8Array[]): void;
  digest(m: StepDigest): void;
  logits(m: StepLogits): void;
  failed(m: StepFailure): void;
  /** A step was computed (for the page's counters). */
  computed(): void;
  /** A frame was dropped at the boundary, with the reason. */
  rejected(reason: string): void;
}

import type { FaultBehaviour } from './faults.js';

interface SessionState {
  readonly open: SessionOpen;
  /** Neighbours, which change when a replica of the route is replaced. */
  prev: readonly string[];
  next: readonly string[];
  /** Frames from peers the route does not (yet) name, until the next route update. */
  readonly strays: { from: string; frame: ActivationFrame }[];
  /** This replica's outputs so far, kept to bring a replacement downstream up to date. */
  readonly history: Map<number, { dims: readonly number[]; data: Float32Array }>;
  readonly cache: KvCache;
  readonly ready: Map<number, TensorData>;
  readonly votes: Map<number, Quorum<Float32Array>>;
  nextStep: number;
  running: boolean;
}

const MAX_SESSIONS = 16;
/** Outputs kept per session for replays (a session has at most this many steps). */
const MAX_HISTORY_STEPS = 1024;
/** How far ahead of the next step a frame may be (further is dropped, not buffered): a slow replica (WebGPU on SwiftShader) lags many steps behind. */
const MAX_STEPS_AHEAD = 64;
/** Frames kept per session from peers not yet named by the route. */
const MAX_STRAYS = 16;

/**
 * One replica of one stage, free of browser and transport: for each session it
 * computes every step on the input its previous stage's replicas agree on (the
 * first majority), sends its output to the next stage's replicas and a
 * fingerprint to the coordinator. Used by the volunteer page and by tests.
 */
export class ReplicaCore {
  private readonly assemblers = new Map<string, FrameAssembler>();
  private readonly sessions = new Map<number, SessionState>();

  constructor(
    private readonly manifest: StageManifest,
    readonly stage: number,
    private readonly executor: StageExecutor,
    private readonly out: ReplicaOutputs,
    /** Fault injection for tests and demos; null for an honest replica. */
    private readonly fault: FaultBehaviour | null = null,
    private readonly computeMs: () => number = () => 0,
  ) {}

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
    if (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value as number);
    this.sessions.set(m.sessionId, {
      open: m,
      prev: m.prev,
      next: m.next,
      history: new Map(),
      strays: [],
      cache: new KvCache(this.manifest.model, entry.layers),
      ready: new Map(),
      votes: new Map(),
      nextStep: 0,
      running: false,
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
      for (const step of [...s.votes.keys()]) if (step >= m.resetFrom) s.votes.delete(step);
    }
    s.prev = m.prev;
    s.next = m.next;
    // Frames the new route names are counted now; the others stay (bounded) for a later update.
    const waiting = s.strays.splice(0);
    for (const x of waiting) {
      if (s.prev[x.frame.replica] === x.from) this.accept(s, x.from, x.frame);
      else s.strays.push(x);
    }
    for (const to of m.resendTo) {
      if (!s.next.includes(to)) continue;
      for (const [step, out] of [...s.history].sort((a, b) => a[0] - b[0])) {
        this.out.frames(
          to,
          encodeFrame({ sessionId: m.sessionId, step, stage: this.stage, replica: s.open.replica, dims: out.dims, data: out.data }),
        );
      }
    }
  }

  close(sessionId: number): void {
    this.sessions.delete(sessionId);
  }

  /** Token ids from the coordinator (stage 0 only). */
  input(m: StepInput): void {
    const s = this.sessions.get(m.sessionId);
    if (s === undefined || this.stage !== 0 || m.step < s.nextStep) return;
    s.ready.set(m.step, { dtype: 'int64', dims: [1, m.tokens.length], data: BigInt64Array.from(m.tokens, (t) => BigInt(t)) });
    void this.drain(s);
  }

  /** A data-channel message from peer `from`. */
  frame(from: string, bytes: Uint8Array): void {
    let a = this.assemblers.get(from);
    if (a === undefined) {
      a = new FrameAssembler();
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
    if (f.stage !== this.stage - 1 || s.prev[f.replica] !== from) {
      // A replacement's frame can overtake the route update that names it: keep a
      // few frames of the previous stage until the update comes, then look again.
      if (f.stage === this.stage - 1 && f.step >= s.nextStep) {
        s.strays.push({ from, frame: f });
        // The oldest goes when too many wait: a stranger cannot fill the memory.
        if (s.strays.length > MAX_STRAYS) {
          const dropped = s.strays.shift();
          this.out.rejected(`ERR_NOT_LINKED stage ${dropped?.frame.stage} replica ${dropped?.frame.replica}`);
        }
      } else this.out.rejected(`ERR_NOT_LINKED stage ${f.stage} replica ${f.replica}`);
      return;
    }
    this.accept(s, from, f);
  }

  /** A frame from a linked peer of the previous stage: checked, then counted in its step's vote. */
  private accept(s: SessionState, from: string, f: ActivationFrame): void {
    if (f.step < s.nextStep || f.step > Math.max(s.nextStep, s.open.replayTo) + MAX_STEPS_AHEAD) {
      this.out.rejected(`ERR_STALE_STEP ${f.step}`);
      return;
    }
    const hidden = this.manifest.model.hiddenSize;
    if (f.dims.length !== 3 || f.dims[0] !== 1 || f.dims[2] !== hidden) {
      this.out.rejected(`ERR_FRAME_SHAPE [${f.dims.join(', ')}]`);
      return;
    }
    let q = s.votes.get(f.step);
    if (q === undefined) {
      q = new Quorum(s.prev, agreeTensors);
      s.votes.set(f.step, q);
    }
    const before = q.state.kind;
    q.add({ status: 'fulfilled', replica: from, value: f.data });
    const after = q.state;
    if (before !== 'pending') return;
    if (after.kind === 'agreed') {
      const winner = after.value;
      s.ready.set(f.step, { dtype: 'float32', dims: [1, winner.length / hidden, hidden], data: winner });
      void this.drain(s);
    } else if (after.kind === 'no-majority') {
      this.out.failed({
        sessionId: s.open.sessionId,
        step: f.step,
        code: 'ERR_NO_QUORUM',
        message: `stage ${this.stage}: the inputs from stage ${f.stage} do not agree`,
      });
    }
  }

  /** Computes the agreed inputs of a session in step order, one at a time. */
  private async drain(s: SessionState): Promise<void> {
    if (s.running) return;
    s.running = true;
    try {
      for (let input = s.ready.get(s.nextStep); input !== undefined; input = s.ready.get(s.nextStep)) {
        const step = s.nextStep;
        s.ready.delete(step);
        s.votes.delete(step);
        await this.compute(s, step, input);
        s.nextStep = step + 1;
      }
    } catch (e) {
      this.out.failed({ sessionId: s.open.sessionId, step: s.nextStep, code: 'ERR_COMPUTE', message: (e as Error).message });
    } finally {
      s.running = false;
    }
  }

  private async compute(s: SessionState, step: number, input: TensorData): Promise<void> {
    const { sessionId, replica } = s.open;
    const last = this.stage === this.manifest.stages.length - 1;
    const name = this.stage === 0 ? STAGE_IO.inputIds : STAGE_IO.hiddenIn;
    if (this.fault !== null && this.fault.delayMs > 0) await new Promise((r) => setTimeout(r, this.fault?.delayMs));
    const result = await this.executor.run(this.stage, { [name]: input, ...s.cache.feeds() });
    s.cache.update(result);
    const main = result[last ? STAGE_IO.logits : STAGE_IO.hiddenOut];
    if (main === undefined || main.dtype !== 'float32') throw new Error(`stage ${this.stage} returned no output`);
    const data = this.fault === null ? main.data : this.fault.output(step, main.data, last);
    this.out.computed();
    if (data === null) return;
    this.out.digest({ sessionId, step, stage: this.stage, digest: fingerprint(data), computeMs: this.computeMs() });
    if (last) {
      if (step < s.open.replayTo) return; // a replay only rebuilds the cache
      const vocab = this.manifest.model.vocabSize;
      const rows = Math.max(1, Math.floor(data.length / vocab));
      this.out.logits({ sessionId, step, logits: data.slice((rows - 1) * vocab).buffer });
    } else {
      const dims = data.length === main.data.length ? main.dims : [data.length];
      if (s.history.size < MAX_HISTORY_STEPS) s.history.set(step, { dims, data });
      if (step < s.open.replayTo) return; // downstream already has the replayed steps
      const frames = encodeFrame({ sessionId, step, stage: this.stage, replica, dims, data });
      for (const id of s.next) this.out.frames(id, frames);
    }
  }
}
