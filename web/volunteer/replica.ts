import type { StageManifest } from '../../shared/model/manifest.js';
import { KvCache, type TensorData } from '../../shared/model/pipeline.js';
import { STAGE_IO } from '../../shared/model/stage-graph.js';
import { encodeFrame, FrameAssembler } from '../../shared/protocol/frames.js';
import type { SessionOpen, StageAssignment, StepInput } from '../../shared/protocol/messages.js';
import { fingerprint } from '../../shared/vote/fingerprint.js';
import { agreeTensors, Quorum } from '../../shared/vote/quorum.js';
import { ComputeClient } from '../compute/compute-client.js';
import type { Backend } from '../compute/messages.js';
import { fetchManifest, fetchVerified, type Progress } from '../compute/stage-loader.js';
import { PeerMesh } from '../net/peers.js';
import type { SwarmSocket } from '../net/socket.js';

export type ReplicaState = 'connecting' | 'waiting' | 'downloading' | 'loading' | 'ready' | 'error';

export interface ReplicaStatus {
  readonly state: ReplicaState;
  readonly volunteerId: string | null;
  readonly backend: Backend;
  readonly adapter: string | null;
  readonly modelId: string | null;
  readonly stage: number | null;
  readonly progress: Progress | null;
  readonly stepsComputed: number;
  readonly framesRejected: number;
  readonly lastError: string | null;
}

interface SessionState {
  readonly open: SessionOpen;
  readonly cache: KvCache;
  /** Agreed inputs waiting for their turn, by step. */
  readonly ready: Map<number, TensorData>;
  readonly votes: Map<number, Quorum<Float32Array>>;
  nextStep: number;
  running: boolean;
}

const MAX_SESSIONS = 16;

/**
 * A volunteer's replica of one stage: loads the stage it is assigned, and for
 * each session computes every step on the input its previous stage's replicas
 * agree on (the first majority), then sends its output to every replica of the
 * next stage and a fingerprint to the coordinator.
 */
export class VolunteerReplica {
  private status: ReplicaStatus;
  private compute: ComputeClient | null = null;
  private manifest: StageManifest | null = null;
  private mesh: PeerMesh | null = null;
  private readonly assemblers = new Map<string, FrameAssembler>();
  private readonly sessions = new Map<number, SessionState>();
  private loading: Promise<void> = Promise.resolve();

  constructor(
    private readonly socket: SwarmSocket,
    backend: Backend,
    adapter: string | null,
    private readonly onStatus: (s: ReplicaStatus) => void,
  ) {
    this.status = {
      state: 'connecting',
      volunteerId: null,
      backend,
      adapter,
      modelId: null,
      stage: null,
      progress: null,
      stepsComputed: 0,
      framesRejected: 0,
      lastError: null,
    };
    socket.on('connect', () => socket.emit('volunteer:hello', { backend, adapter }));
    socket.on('volunteer:welcome', ({ volunteerId }) => {
      this.mesh?.close();
      this.mesh = new PeerMesh(
        volunteerId,
        (to, data) => socket.emit('signal', { to, data }),
        (from, bytes) => this.onFrame(from, bytes),
      );
      this.sessions.clear();
      this.update({ volunteerId, state: 'waiting' });
    });
    socket.on('volunteer:assign', (a) => {
      this.loading = this.loading.then(() => this.load(a));
    });
    socket.on('signal', ({ from, data }) => this.mesh?.signal(from, data));
    socket.on('session:open', (m) => void this.openSession(m));
    socket.on('session:close', ({ sessionId }) => this.sessions.delete(sessionId));
    socket.on('step:input', (m) => this.onInput(m));
    socket.on('server:error', (e) => this.update({ lastError: `${e.code}: ${e.message}` }));
    socket.on('disconnect', () => this.update({ state: 'connecting' }));
  }

  private update(patch: Partial<ReplicaStatus>): void {
    this.status = { ...this.status, ...patch };
    this.onStatus(this.status);
  }

  private async load(a: StageAssignment): Promise<void> {
    try {
      this.update({ state: 'downloading', modelId: a.modelId, stage: a.stage, progress: null });
      const manifest = await fetchManifest(a.baseUrl);
      const entry = manifest.stages[a.stage];
      if (entry === undefined) throw new Error(`the manifest has no stage ${a.stage}`);
      const bytes = await fetchVerified(a.baseUrl, entry, (progress) => this.update({ progress }));
      this.update({ state: 'loading' });
      this.compute?.terminate();
      const compute = new ComputeClient();
      await compute.load(this.status.backend, [{ index: a.stage, bytes }]);
      this.compute = compute;
      this.manifest = manifest;
      const stepMs = await this.measure(manifest, a.stage);
      this.update({ state: 'ready' });
      this.socket.emit('volunteer:ready', { modelId: a.modelId, stage: a.stage, stepMs });
    } catch (e) {
      this.update({ state: 'error', lastError: (e as Error).message });
    }
  }

  /** Time of one decode step of this stage (after one warm-up run). */
  private async measure(manifest: StageManifest, stage: number): Promise<number> {
    const entry = manifest.stages[stage];
    if (entry === undefined || this.compute === null) return 0;
    const cache = new KvCache(manifest.model, entry.layers);
    const input: TensorData =
      stage === 0
        ? { dtype: 'int64', dims: [1, 1], data: new BigInt64Array(1) }
        : { dtype: 'float32', dims: [1, 1, manifest.model.hiddenSize], data: new Float32Array(manifest.model.hiddenSize) };
    const name = stage === 0 ? STAGE_IO.inputIds : STAGE_IO.hiddenIn;
    await this.compute.run(stage, { [name]: input, ...cache.feeds() });
    const t0 = performance.now();
    await this.compute.run(stage, { [name]: input, ...cache.feeds() });
    return performance.now() - t0;
  }

  private async openSession(m: SessionOpen): Promise<void> {
    const manifest = this.manifest;
    const entry = manifest?.stages[m.stage];
    if (manifest === null || entry === undefined || m.stage !== this.status.stage) {
      this.socket.emit('step:failed', {
        sessionId: m.sessionId,
        step: 0,
        code: 'ERR_NOT_ASSIGNED',
        message: `stage ${m.stage} is not loaded here`,
      });
      return;
    }
    if (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value as number);
    this.sessions.set(m.sessionId, {
      open: m,
      cache: new KvCache(manifest.model, entry.layers),
      ready: new Map(),
      votes: new Map(),
      nextStep: 0,
      running: false,
    });
    try {
      await Promise.all([...m.prev, ...m.next].map((id) => this.mesh?.connect(id)));
      this.socket.emit('session:joined', { sessionId: m.sessionId });
    } catch (e) {
      this.socket.emit('step:failed', { sessionId: m.sessionId, step: 0, code: 'ERR_NOT_LINKED', message: (e as Error).message });
    }
  }

  private onInput(m: StepInput): void {
    const s = this.sessions.get(m.sessionId);
    if (s === undefined || s.open.stage !== 0) return;
    s.ready.set(m.step, { dtype: 'int64', dims: [1, m.tokens.length], data: BigInt64Array.from(m.tokens, (t) => BigInt(t)) });
    void this.drain(s);
  }

  private onFrame(from: string, bytes: Uint8Array): void {
    let a = this.assemblers.get(from);
    if (a === undefined) {
      a = new FrameAssembler();
      this.assemblers.set(from, a);
    }
    const r = a.push(bytes);
    if (r.kind === 'partial') return;
    if (r.kind === 'rejected') {
      this.update({ framesRejected: this.status.framesRejected + 1 });
      return;
    }
    const f = r.frame;
    const s = this.sessions.get(f.sessionId);
    // Only frames from the previous stage's replica that the route names, for a step still to come.
    if (s === undefined || f.stage !== s.open.stage - 1 || s.open.prev[f.replica] !== from || f.step < s.nextStep) {
      this.update({ framesRejected: this.status.framesRejected + 1 });
      return;
    }
    let q = s.votes.get(f.step);
    if (q === undefined) {
      q = new Quorum(s.open.prev, agreeTensors);
      s.votes.set(f.step, q);
    }
    const before = q.state.kind;
    q.add({ status: 'fulfilled', replica: from, value: f.data });
    const after = q.state;
    if (before === 'pending' && after.kind === 'agreed') {
      s.ready.set(f.step, { dtype: 'float32', dims: f.dims, data: after.value });
      void this.drain(s);
    } else if (before === 'pending' && after.kind === 'no-majority') {
      this.socket.emit('step:failed', {
        sessionId: f.sessionId,
        step: f.step,
        code: 'ERR_NO_QUORUM',
        message: `stage ${s.open.stage}: the inputs from stage ${f.stage} do not agree`,
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
        await this.computeStep(s, step, input);
        s.nextStep = step + 1;
      }
    } catch (e) {
      this.socket.emit('step:failed', {
        sessionId: s.open.sessionId,
        step: s.nextStep,
        code: 'ERR_COMPUTE',
        message: (e as Error).message,
      });
      this.update({ lastError: (e as Error).message });
    } finally {
      s.running = false;
    }
  }

  private async computeStep(s: SessionState, step: number, input: TensorData): Promise<void> {
    const manifest = this.manifest;
    const compute = this.compute;
    if (manifest === null || compute === null) throw new Error('no stage loaded');
    const { stage, sessionId, replica } = s.open;
    const last = stage === manifest.stages.length - 1;
    const name = stage === 0 ? STAGE_IO.inputIds : STAGE_IO.hiddenIn;
    const out = await compute.run(stage, { [name]: input, ...s.cache.feeds() });
    s.cache.update(out);
    const main = out[last ? STAGE_IO.logits : STAGE_IO.hiddenOut];
    if (main === undefined || main.dtype !== 'float32') throw new Error(`stage ${stage} returned no output`);
    this.socket.emit('step:digest', { sessionId, step, stage, digest: fingerprint(main.data), computeMs: compute.lastComputeMs });
    if (last) {
      const vocab = manifest.model.vocabSize;
      const rows = main.data.length / vocab;
      this.socket.emit('step:logits', { sessionId, step, logits: main.data.slice((rows - 1) * vocab).buffer });
    } else {
      const frames = encodeFrame({ sessionId, step, stage, replica, dims: main.dims, data: main.data });
      for (const id of s.open.next) this.mesh?.send(id, frames);
    }
    this.update({ stepsComputed: this.status.stepsComputed + 1 });
  }

  leave(): void {
    this.mesh?.close();
    this.compute?.terminate();
    this.socket.disconnect();
  }
}
