import type { StageManifest } from '../../shared/model/manifest.js';
import { freshFeeds, type TensorData } from '../../shared/model/pipeline.js';
import { bufferLimitBytes } from '../../shared/protocol/capacity.js';
import { rejectionCode } from '../../shared/protocol/frames.js';
import {
  type ClientToServerEvents,
  type IceConfig,
  isServerPeer,
  packFrameMessages,
  type SessionOpen,
  type StageAssignment,
  type StageChallenge,
  type VolunteerCapacity,
  type VolunteerScore,
} from '../../shared/protocol/messages.js';
import { parseChallenge, parseFrameMessage, parseIceConfig, parseNetConditions } from '../../shared/protocol/validate.js';
import { DelayLine } from '../../shared/swarm/delay-line.js';
import { DutyCycle } from '../../shared/swarm/duty-cycle.js';
import { FAULT_AFTER_STEPS, type FaultKind, faultBehaviour } from '../../shared/swarm/faults.js';
import { FrameBatcher } from '../../shared/swarm/frame-batcher.js';
import { MAX_SESSIONS_PER_REPLICA, MAX_STEPS_AHEAD, ReplicaCore, type ReplicaOutputs } from '../../shared/swarm/replica-core.js';
import { type CapturePlan, planCapture } from '../compute/capture-plan.js';
import { ComputeClient, deviceLostText, WorkerError } from '../compute/compute-client.js';
import type { Backend, DeviceLoss } from '../compute/messages.js';
import type { OrtBuild } from '../compute/ort-build.js';
import { fetchManifest, type Progress } from '../compute/stage-loader.js';
import { openStage, type StageSource } from '../compute/stage-open.js';
import { webgpuAdapter } from '../compute/webgpu.js';
import { linkNeighbours, type NeighbourLinks } from '../net/neighbour-links.js';
import { LOCAL_ICE_CONFIG, PeerMesh, type SelectedPair } from '../net/peers.js';
import { connectRefusal, type SwarmSocket } from '../net/socket.js';
import { browserCapacity } from './capacity.js';
import { DeviceLossPolicy, type Recovery } from './device-loss.js';
import type { StepTrace } from './step-trace.js';
import { type DataPath, type ReplicaLike, WorkerDataPath } from './worker-path.js';

/** The route's peers this tab opens data channels to: the server's own replicas (the fallback) are reached over the socket. */
function volunteerPeers(ids: readonly string[]): string[] {
  return ids.filter((id) => !isServerPeer(id));
}

export type ReplicaState =
  | 'connecting'
  | 'waiting'
  | 'downloading'
  | 'loading'
  | 'ready'
  | 'paused'
  | 'left'
  | 'error'
  | 'evicted'
  /** Refused with ERR_CAPACITY: no stage of the swarm's model fits what this device offers; it asks again now and then. */
  | 'unfit'
  /** Its GPU device was lost: it left the swarm and is starting its stage again (see ReplicaStatus.deviceLoss). */
  | 'recovering';

export interface ReplicaStatus {
  readonly state: ReplicaState;
  readonly volunteerId: string | null;
  readonly backend: Backend;
  readonly adapter: string | null;
  readonly modelId: string | null;
  readonly stage: number | null;
  readonly progress: Progress | null;
  readonly stepsComputed: number;
  /** Sessions (generations) this tab is part of now: 0 while it waits for work. */
  readonly openSessions: number;
  readonly framesRejected: number;
  /** The same by reason code (ERR_FRAME_MAGIC, ERR_STALE_STEP, …): what the page refused, for tests and diagnostics. */
  readonly framesRejectedBy: Readonly<Record<string, number>>;
  readonly score: VolunteerScore | null;
  readonly lastError: string | null;
  /** The most of wall time this tab computes (1 = all it can). */
  readonly share: number;
  /** Where the loaded stage came from: the stage cache, or built from its tensors (and why a cached copy was refused); null before. */
  readonly stageSource: StageSource | null;
  /** Where a step's data path runs: this thread, or the compute worker (?datapath=). */
  readonly dataPath: DataPath;
  /** Worker path: data channels handed to the worker, and ones the browser would not transfer (their frames are relayed). */
  readonly channelsMoved: number;
  readonly channelsKept: number;
  /** The last loss of this tab's GPU device, and what the tab came back on; null while none was lost. */
  readonly deviceLoss: DeviceLossNote | null;
  /** Graph capture (?capture=): the sessions its loaded stage holds with it, or why it runs without; null when not asked or before a stage. */
  readonly capture: CaptureState | null;
  /** The onnxruntime-web build its loaded stage runs on (on WebGPU: JSPI where the browser has it, else asyncify); null before a stage. */
  readonly ortBuild: OrtBuild | null;
}

/** What came of asking for graph capture for the loaded stage. */
export type CaptureState = { readonly on: true; readonly sessions: number } | { readonly on: false; readonly why: string };

/** A lost GPU device as the page tells it. */
export interface DeviceLossNote extends Recovery {
  readonly loss: DeviceLoss;
  /** When it was lost (Date.now()). */
  readonly at: number;
}

export interface ReplicaOptions {
  /** A fault to inject (test and demo servers only), or null. */
  readonly fault?: FaultKind | null;
  /** Keep compute to this share of wall time (DutyCycle); default 1. */
  readonly share?: number;
  /** Stamps of each step's path, for the bench (?trace=1); none by default. */
  readonly trace?: StepTrace | null;
  /** False: each session's step is its own runtime call (batching across sessions off, for comparisons); default true. */
  readonly batching?: boolean;
  /** Where a step's data path runs (see worker-path.ts); default main. */
  readonly dataPath?: DataPath;
  /**
   * Graph capture on WebGPU (web/compute/captured-stages.ts; ?capture=on or ?capture=N): the most sessions to hold
   * (null: as many as fit, capture-plan.ts); undefined: no capture. Ignored, and said in the status, where the tab
   * computes on WASM or the model's form is not fused.
   */
  readonly captureSessions?: number | null | undefined;
}

const CLIENT_KEY = 'webswarm-client-key';
/** The session of the step timed before ready, where the stage runs with graph capture. */
const FIRST_STEP_SESSION = Number.MIN_SAFE_INTEGER;
/** Tries at loading a stage before the volunteer shows an error, and the wait after the first (doubling). */
const LOAD_ATTEMPTS = 3;
const LOAD_RETRY_MS = 2_000;
/** How long a tab whose GPU device was lost waits for its steps' failures to go out before it leaves the swarm. */
const LEAVE_AFTER_LOSS_MS = 50;
/** How long a tab that no stage fits (ERR_CAPACITY) waits before it asks the swarm again. */
export const UNFIT_RETRY_MS = 60_000;

/** A compute worker started ahead of its stage, and why its start failed, once it has. */
interface PreparedCompute {
  readonly compute: ComputeClient;
  failure: string | null;
}

/** An error as the page shows it: the worker's errors carry their code apart from the message (ERR_STAGE_MISMATCH, …). */
function errorText(e: unknown): string {
  return e instanceof WorkerError ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e);
}

/** A random key kept in this browser, so that the coordinator can refuse a volunteer it evicted. */
function clientKey(): string | null {
  try {
    let key = localStorage.getItem(CLIENT_KEY);
    if (key === null) {
      key = crypto.randomUUID();
      localStorage.setItem(CLIENT_KEY, key);
    }
    return key;
  } catch {
    return null; // storage denied
  }
}

/**
 * A volunteer's replica of one stage: loads the stage it is assigned, and for
 * each session computes every step on the input its previous stage's replicas
 * agree on (the first majority), then sends its output to every replica of the
 * next stage and a fingerprint to the coordinator.
 */
export class VolunteerReplica {
  private status: ReplicaStatus;
  private compute: ComputeClient | null = null;
  /** A compute worker whose runtime starts before a stage is assigned (see prepareCompute). */
  private prepared: PreparedCompute | null = null;
  private core: ReplicaLike | null = null;
  /** The data path in the compute worker, when this page runs it there. */
  private path: WorkerDataPath | null = null;
  private manifest: StageManifest | null = null;
  private mesh: PeerMesh | null = null;
  /** The ICE servers and policy the server handed out (volunteer:ice), for the peer connections made after. */
  private ice: IceConfig = LOCAL_ICE_CONFIG;
  private loading: Promise<void> = Promise.resolve();
  /** The latest stage assignment: a load for an older one gives up. */
  private assignment: StageAssignment | null = null;
  private readonly fault: FaultKind | null;
  private readonly duty: DutyCycle;
  /** The bench's one-way delay (volunteer:net) on everything this tab sends, socket and data channels alike; 0 = none. */
  private readonly net = new DelayLine();
  private readonly trace: StepTrace | null;
  private readonly batching: boolean;
  private readonly captureSessions: number | null | undefined;
  /** What the hello says this tab can hold, for the backend it computes on now (a lost GPU may move it to WASM). */
  private capacity: Promise<VolunteerCapacity | null>;
  /** This tab's GPU device losses: whether it comes back on WebGPU or WASM (device-loss.ts). */
  private readonly losses = new DeviceLossPolicy();

  constructor(
    private readonly socket: SwarmSocket,
    backend: Backend,
    adapter: string | null,
    private readonly onStatus: (s: ReplicaStatus) => void,
    options: ReplicaOptions = {},
  ) {
    this.fault = options.fault ?? null;
    this.duty = new DutyCycle(options.share ?? 1);
    this.trace = options.trace ?? null;
    this.batching = options.batching ?? true;
    this.captureSessions = options.captureSessions;
    this.status = {
      state: 'connecting',
      volunteerId: null,
      backend,
      adapter,
      modelId: null,
      stage: null,
      progress: null,
      stepsComputed: 0,
      openSessions: 0,
      framesRejected: 0,
      framesRejectedBy: {},
      score: null,
      lastError: null,
      share: this.duty.share,
      stageSource: null,
      dataPath: options.dataPath ?? 'main',
      channelsMoved: 0,
      channelsKept: 0,
      deviceLoss: null,
      capture: null,
      ortBuild: null,
    };
    this.prepared = this.prepareCompute();
    // What it can hold goes with its hello: the planner sizes stages to it (shared/protocol/capacity.ts).
    this.capacity = browserCapacity(backend).catch(() => null);
    // The backend as it is now: after a lost GPU device the tab says hello again, maybe on WASM.
    socket.on('connect', () => {
      const { backend: b, adapter: a } = this.status;
      void this.capacity.then((c) =>
        socket.emit('volunteer:hello', { backend: b, adapter: a, fault: this.fault, clientKey: clientKey(), capacity: c }),
      );
    });
    socket.on('volunteer:score', (score) => this.update({ score }));
    socket.on('volunteer:welcome', ({ volunteerId }) => {
      // Welcomed: the back-off starts again. Not at connect, as before: a hello the server refuses (a fault on a
      // production server, too many hellos from this address) comes after the connect, and the tab asked again
      // about three times a second for ever.
      this.retries = 0;
      this.mesh?.close();
      this.mesh = new PeerMesh(
        volunteerId,
        (to, data) => this.emit('signal', { to, data }),
        (from, bytes) => {
          this.trace?.markFrame(bytes, 'recv');
          this.core?.frame(from, bytes);
        },
        {
          ice: this.ice,
          delay: this.net,
          ...(this.status.dataPath === 'worker' ? { handoff: this.handoff } : {}),
          rejected: (_from, reason) => this.refused(reason),
        },
      );
      this.update({ volunteerId, state: 'waiting' });
    });
    socket.on('volunteer:ice', (raw) => {
      const m = parseIceConfig(raw);
      if (!m.ok) return this.update({ lastError: `the ICE configuration from the server was refused: ${m.reason}` });
      this.ice = m.value;
      this.mesh?.setIce(m.value);
    });
    socket.on('volunteer:net', (raw) => {
      const m = parseNetConditions(raw);
      if (!m.ok) return this.update({ lastError: `the network conditions from the server were refused: ${m.reason}` });
      this.net.setDelay(m.value.delayMs);
      this.path?.setNetDelay(m.value.delayMs);
    });
    socket.on('volunteer:assign', (a) => {
      this.assignment = a;
      this.loading = this.loading.then(() => this.load(a));
    });
    socket.on('signal', ({ from, data }) => this.mesh?.signal(from, data));
    // Frames from the server's own replica of a neighbouring stage (the fallback): over the socket, not a data channel.
    socket.on('frame', (raw) => {
      const m = parseFrameMessage(raw, 'from');
      if (!m.ok) {
        this.refused(`ERR_BAD_MESSAGE ${m.reason}`);
        this.update({ lastError: `a frame from the server was refused: ${m.reason}` });
      } else for (const d of m.value.data) this.core?.frame(m.value.peer, d);
    });
    socket.on('session:open', (m) => void this.openSession(m));
    socket.on('session:close', ({ sessionId }) => {
      this.core?.close(sessionId);
      this.setSessions((s) => s.delete(sessionId));
      this.mesh?.endSession(sessionId); // channels no live session needs close a little later
    });
    socket.on('session:update', (m) => {
      const loop = m.loop ?? this.core?.openSessions.find((x) => x.sessionId === m.sessionId)?.loop?.peers ?? [];
      this.linkSession(m.sessionId, [...m.prev, ...m.next], loop);
      // Connect to the new neighbours first (a majority of each stage, as to join): the resend needs their data channels.
      this.linkNeighbours(m.prev, m.next)
        .then(() => this.core?.update(m))
        .catch((e: unknown) => this.update({ lastError: `session ${m.sessionId}: ${(e as Error).message}` }));
    });
    socket.on('step:input', (m) => {
      this.trace?.mark(m.sessionId, m.step, 'input');
      this.core?.input(m);
    });
    // A challenge step: the server counts this tab as ready once its answer matches the server's own runner.
    socket.on('volunteer:challenge', (raw) => void this.answerChallenge(raw));
    socket.on('server:error', (e) => {
      this.update({ lastError: `${e.code}: ${e.message}` });
      if (e.code === 'ERR_EVICTED' || e.code === 'ERR_BANNED') this.update({ state: 'evicted' });
      else if (e.code === 'ERR_CAPACITY') this.update({ state: 'unfit' });
    });
    socket.on('disconnect', (reason) => {
      this.setSessions((s) => s.clear());
      if (this.status.state === 'evicted' || this.status.state === 'paused' || this.status.state === 'left') return;
      // No stage fits this device: asking again at once would be refused again. The swarm may grow or re-cut its
      // model meanwhile, so it asks again after a while, and says what stops it until then.
      if (this.status.state === 'unfit') return this.askAgainLater();
      this.update({ state: 'connecting' });
      // Socket.IO retries by itself after a lost connection, but not when the server ended
      // the session (a restart): then retry here, with back-off and jitter.
      if (reason === 'io server disconnect') this.reconnectLater();
    });
    // The server refused the connection itself (too many from this address, a page of another version): said here.
    socket.on('connect_error', (e) => {
      const refusal = connectRefusal(e);
      if (refusal !== null) this.update({ lastError: `${refusal.code}: ${refusal.message}` });
    });
  }

  /** Open channels go to the compute worker (the worker path), once it runs a replica; frames for them follow them there. */
  private readonly handoff = {
    take: (remote: string, dc: RTCDataChannel): boolean => {
      const path = this.path;
      if (path === null) return false;
      const moved = path.adopt(remote, dc);
      this.update({ channelsMoved: path.moved, channelsKept: path.kept });
      return moved;
    },
    send: (remote: string, messages: readonly Uint8Array[]) => this.path?.sendVia(remote, messages),
    drop: (remote: string) => this.path?.unlink(remote),
  };

  /** Frames for the server's replicas (the fallback), sent over the socket in batches: a replay is a few events. */
  private readonly toServer = new FrameBatcher((to, batch) => this.emit('frame', { to, data: packFrameMessages(batch) }));

  /** Sends to the coordinator, through the bench's delay line (at once when it has none). */
  private emit<E extends keyof ClientToServerEvents>(event: E, ...args: Parameters<ClientToServerEvents[E]>): void {
    this.net.run(() => this.socket.emit(event, ...args));
  }

  /** The sessions open on this tab, for "computing" against "waiting for work". */
  private readonly sessions = new Set<number>();

  private setSessions(change: (s: Set<number>) => void): void {
    change(this.sessions);
    if (this.sessions.size !== this.status.openSessions) this.update({ openSessions: this.sessions.size });
  }

  private update(patch: Partial<ReplicaStatus>): void {
    this.status = { ...this.status, ...patch };
    this.onStatus(this.status);
  }

  /**
   * Loads the assigned stage, trying again after a short wait when a try fails
   * (a download cut off, a compute worker that did not start): one bad moment
   * must not cost the swarm a volunteer for good.
   */
  private async load(a: StageAssignment): Promise<void> {
    const epoch = this.epoch;
    for (let attempt = 1; ; attempt++) {
      const error = await this.loadOnce(a, epoch);
      // Done, or moot: paused, left, or assigned another stage meanwhile.
      if (error === null || epoch !== this.epoch || this.assignment !== a) return;
      if (attempt >= LOAD_ATTEMPTS) {
        this.update({ state: 'error', lastError: error });
        return;
      }
      this.update({ lastError: `${error} (try ${attempt} of ${LOAD_ATTEMPTS}; trying again)` });
      await new Promise((r) => setTimeout(r, LOAD_RETRY_MS * attempt));
      if (epoch !== this.epoch || this.assignment !== a) return;
    }
  }

  /**
   * A compute worker that starts its runtime at once (a second or two of
   * WebAssembly compilation), meanwhile the tab joins and fetches its
   * weights. A failed start is ignored here: the build that follows reports it.
   */
  private prepareCompute(): PreparedCompute {
    const p: PreparedCompute = { compute: new ComputeClient(), failure: null };
    p.compute.onDeviceLost = (loss) => void this.deviceLost(p.compute, loss);
    p.compute.prepare(this.status.backend).then(
      // A User Timing mark: when the runtime was ready, for the cold-start benchmark and the browser's profiler.
      () => performance.mark('webswarm:runtime-ready'),
      (e: unknown) => {
        p.failure = errorText(e);
      },
    );
    return p;
  }

  /** One try at loading a stage: null when it is ready (or moot), else why it failed. */
  private async loadOnce(a: StageAssignment, epoch: number): Promise<string | null> {
    const prepared = this.prepared ?? this.prepareCompute();
    const { compute } = prepared;
    this.prepared = null;
    // A pause or leave while loading makes this load moot.
    try {
      this.update({ state: 'downloading', modelId: a.modelId, stage: a.stage, progress: null, stageSource: null });
      const manifest = await fetchManifest(a.baseUrl);
      const entry = manifest.stages[a.stage];
      if (entry === undefined) throw new Error(`the manifest has no stage ${a.stage}`);
      const capture = await this.planCapture(manifest, a.stage);
      this.update({
        capture: capture === null ? null : capture.ok ? { on: true, sessions: capture.sessions } : { on: false, why: capture.why },
      });
      const captured = capture?.ok === true ? capture : null;
      const maxSessions = captured?.sessions ?? MAX_SESSIONS_PER_REPLICA;
      const source = await openStage(
        {
          compute,
          backend: this.status.backend,
          baseUrl: a.baseUrl,
          manifest,
          stage: a.stage,
          batching: this.batching,
          capture: captured?.options ?? null,
        },
        {
          progress: (progress) => this.update({ progress }),
          loading: () => {
            if (epoch !== this.epoch) {
              compute.terminate();
              return false;
            }
            // A worker that did not start (its script cut off) answers nothing more: this try fails, the next starts another.
            if (prepared.failure !== null) throw new Error(prepared.failure);
            this.update({ state: 'loading' });
            // Channels handed to the old worker go with it: the mesh opens them again where a session needs them.
            if (this.path !== null) for (const id of this.mesh?.linked ?? []) this.mesh?.lost(id);
            this.path = null;
            this.core = null;
            this.compute?.terminate();
            this.setSessions((s) => s.clear());
            this.compute = compute;
            return true;
          },
        },
      );
      if (source === null) return null;
      this.update({ stageSource: source, ortBuild: compute.ortBuild });
      if (epoch !== this.epoch) return null;
      this.manifest = manifest;
      const trace = this.trace;
      const last = a.stage === manifest.stages.length - 1;
      const outputs = this.outputs(last, epoch);
      if (this.status.dataPath === 'worker') {
        // The data path runs in the worker: the ReplicaCore there computes on the worker's own executor.
        const path = new WorkerDataPath(
          compute,
          { ...outputs, closed: (peer) => this.mesh?.lost(peer) },
          {
            stage: a.stage,
            stages: manifest.stages.length,
            fault: this.fault,
            share: this.duty.share,
            trace,
            maxSessions,
          },
        );
        path.setNetDelay(this.net.delayMs);
        this.path = path;
        this.core = path;
      } else {
        // Each session's KV cache lives in the worker: a step sends only its input and gets only its output.
        const sessions = this.duty.wrapSessions(compute);
        this.core = new ReplicaCore(
          manifest,
          a.stage,
          trace === null ? sessions : trace.wrap(sessions, () => compute.lastComputeMs),
          outputs,
          // A random seed: two faulty tabs must not tell the same lie by accident (that would be collusion).
          this.fault === null ? null : faultBehaviour(this.fault, Math.floor(Math.random() * 2 ** 31)),
          () => compute.lastComputeMs,
          MAX_STEPS_AHEAD,
          maxSessions,
        );
      }
      const stepMs = await this.firstStep(manifest, a.stage, captured !== null);
      if (epoch !== this.epoch) return null;
      this.update({ state: 'ready', lastError: null });
      // The partition is echoed: a ready for a partition the server has since replaced is ignored there.
      this.emit('volunteer:ready', {
        modelId: a.modelId,
        stage: a.stage,
        stepMs,
        ...(a.partition === undefined ? {} : { partition: a.partition }),
        // Said only where it holds fewer than any replica does: the coordinator routes it no more.
        ...(maxSessions < MAX_SESSIONS_PER_REPLICA ? { sessions: maxSessions } : {}),
      });
      return null;
    } catch (e) {
      if (this.compute !== compute) compute.terminate();
      return errorText(e);
    }
  }

  /**
   * Where a replica's results go, on either data path: frames to the mesh or
   * the socket, reports to the coordinator; nothing once the stage it was
   * made for is gone (a lost GPU device, a pause): no late step of a dropped
   * replica reaches the swarm.
   */
  private outputs(last: boolean, epoch: number): ReplicaOutputs {
    const trace = this.trace;
    const live = () => epoch === this.epoch;
    const emit: typeof this.emit = (...args) => {
      if (live()) this.emit(...args);
    };
    return {
      frames: (to, messages) => {
        if (!live()) return;
        // On the worker path only frames the worker could not send itself come here (their stamps were taken there).
        if (trace !== null && this.path === null && messages[0] !== undefined) trace.markFrame(messages[0], 'sent');
        if (!isServerPeer(to)) this.mesh?.send(to, messages);
        else this.toServer.push(to, messages);
      },
      // A stage that feeds another sends its frames first (they are sent in the same turn, after this call):
      // its digest is needed only once the last stage's logits are in, so it leaves the critical path.
      digest: last ? (m) => emit('step:digest', m) : (m) => queueMicrotask(() => emit('step:digest', m)),
      logits: (m) => {
        if (this.path === null) trace?.mark(m.sessionId, m.step, 'sent');
        trace?.mark(m.sessionId, m.step, 'logits');
        emit('step:logits', m);
      },
      failed: (m) => emit('step:failed', m),
      computed: () => {
        if (!live()) return;
        this.update({ stepsComputed: this.status.stepsComputed + 1 });
        this.maybeFail();
      },
      rejected: (reason, count) => this.refused(reason, count),
    };
  }

  /**
   * One decode step of this stage, run before the tab says ready so that the
   * coordinator's challenge step, which it times for itself (the stepMs this
   * returns is informative: the coordinator ignores it), does not pay the
   * runtime's first-run costs. One run, not a warm-up and a timed run: a
   * second would only delay ready (a q4 stage of the 135M shape by a few
   * hundred ms on WASM). Its time, first-run costs included, is reported.
   */
  private async firstStep(manifest: StageManifest, stage: number, captured: boolean): Promise<number> {
    const entry = manifest.stages[stage];
    const compute = this.compute;
    if (entry === undefined || compute === null) return 0;
    const input: TensorData =
      stage === 0
        ? { dtype: 'int64', dims: [1, 1], data: new BigInt64Array(1) }
        : { dtype: 'float32', dims: [1, 1, manifest.model.hiddenSize], data: new Float32Array(manifest.model.hiddenSize) };
    const t0 = performance.now();
    if (captured) {
      // Captured stages run session steps only: a session of its own (an id no session or challenge has), freed after.
      await compute.step(FIRST_STEP_SESSION, stage, input);
      compute.release(FIRST_STEP_SESSION);
    } else await compute.run(stage, freshFeeds(manifest, stage, input));
    return performance.now() - t0;
  }

  /**
   * The captured rows for `stage` where capture was asked for (null where it was not): not ok, with the reason, on
   * WASM or where no two rows fit.
   */
  private async planCapture(manifest: StageManifest, stage: number): Promise<CapturePlan | null> {
    if (this.captureSessions === undefined) return null;
    if (this.status.backend !== 'webgpu')
      return { ok: false, why: `graph capture runs on WebGPU; this tab computes on ${this.status.backend}` };
    return planCapture(manifest, stage, bufferLimitBytes('webgpu', await this.capacity) ?? Infinity, this.captureSessions);
  }

  /**
   * The data channels a session needs. A majority of each neighbouring stage's
   * are awaited before it joins or applies an update (linkNeighbours), the rest
   * opened alongside; the mesh loop's other end (a
   * one-stage model's replicas: each other, not this tab) is opened alongside
   * and never waited for: the coordinator feeds stage 0 the verified token
   * without it, and a loop peer that left must not hold up the session.
   */
  private linkSession(sessionId: number, neighbours: readonly string[], loop: readonly string[]): void {
    const me = this.status.volunteerId;
    const needed = [...new Set(volunteerPeers(neighbours))].filter((id) => id !== me);
    const extra = [...new Set(volunteerPeers(loop))].filter((id) => id !== me && !needed.includes(id));
    this.mesh?.need(sessionId, [...needed, ...extra]);
    for (const id of extra) this.mesh?.connect(id).catch(() => undefined);
  }

  /** Data channels to a majority of the previous and of the next stage's replicas (see linkNeighbours). */
  private linkNeighbours(prev: readonly string[], next: readonly string[]): Promise<NeighbourLinks> {
    const me = this.status.volunteerId;
    const others = (ids: readonly string[]) => ids.filter((id) => id !== me);
    return linkNeighbours([others(prev), others(next)], (id) => this.mesh?.connect(id) ?? Promise.resolve());
  }

  private async openSession(m: SessionOpen): Promise<void> {
    if (this.core === null || !this.core.open(m)) return;
    this.setSessions((s) => s.add(m.sessionId));
    this.linkSession(m.sessionId, [...m.prev, ...m.next], m.loop?.peers ?? []);
    try {
      // A majority of each neighbouring stage is what the vote needs: a neighbour that never connects does not hold the join.
      const { unreached } = await this.linkNeighbours(m.prev, m.next);
      if (unreached.length > 0) this.core?.unreached(m.sessionId, unreached);
      this.emit('session:joined', unreached.length === 0 ? { sessionId: m.sessionId } : { sessionId: m.sessionId, unreached });
    } catch (e) {
      const message = (e as Error).message;
      this.update({ lastError: `session ${m.sessionId}: ${message}` });
      this.emit('step:failed', { sessionId: m.sessionId, step: 0, code: 'ERR_NOT_LINKED', message });
    }
  }

  private async answerChallenge(raw: StageChallenge): Promise<void> {
    const core = this.core;
    const manifest = this.manifest;
    if (core === null || manifest === null) return;
    const m = parseChallenge(raw, manifest.model.hiddenSize, manifest.model.vocabSize);
    if (!m.ok) {
      this.update({ lastError: `a challenge from the server was refused: ${m.reason}` });
      return;
    }
    try {
      this.emit('volunteer:proof', { challengeId: m.value.challengeId, digest: await core.challenge(m.value) });
    } catch (e) {
      this.update({ lastError: `challenge step failed: ${(e as Error).message}` });
    }
  }

  /** Counts `count` refused frames under their reason's code (its first word). */
  private refused(reason: string, count = 1): void {
    const code = rejectionCode(reason);
    const by = this.status.framesRejectedBy;
    this.update({ framesRejected: this.status.framesRejected + count, framesRejectedBy: { ...by, [code]: (by[code] ?? 0) + count } });
  }

  /** What inbound frames hold on this thread now (the main-thread path); null on the worker path (read it in the worker) or before a stage. */
  held(): ReturnType<ReplicaCore['held']> | null {
    return this.core instanceof ReplicaCore ? this.core.held() : null;
  }

  /** The mesh's counters: peers with a connection, connections made and signalling messages sent (for tests and diagnostics). */
  links(): PeerMesh['counts'] | null {
    return this.mesh?.counts ?? null;
  }

  /** Each open data channel's selected candidate pair (relay = through TURN): for tests and diagnostics. */
  iceStats(): Promise<{ peer: string; pair: SelectedPair | null }[]> {
    return this.mesh?.iceStats() ?? Promise.resolve([]);
  }

  channelMessages(): Promise<{ sent: number; received: number }> {
    return this.mesh?.channelMessages() ?? Promise.resolve({ sent: 0, received: 0 });
  }

  private retries = 0;

  private reconnectLater(): void {
    const delayMs = Math.min(30_000, 500 * 2 ** this.retries) * (0.5 + Math.random() / 2);
    this.retries += 1;
    setTimeout(() => {
      if (!this.socket.connected && this.status.state === 'connecting') this.socket.connect();
    }, delayMs);
  }

  private askAgainLater(): void {
    const epoch = this.epoch;
    setTimeout(() => {
      if (epoch === this.epoch && this.status.state === 'unfit' && !this.socket.connected) this.socket.connect();
    }, UNFIT_RETRY_MS);
  }

  /** crash: the tab goes away; disconnect: the network drops and comes back. */
  private maybeFail(): void {
    if (this.status.stepsComputed !== FAULT_AFTER_STEPS) return;
    if (this.fault === 'crash') {
      this.leave();
      location.replace('about:blank');
    } else if (this.fault === 'disconnect') {
      this.mesh?.close();
      this.socket.disconnect();
      setTimeout(() => this.socket.connect(), 2_000);
    } else if (this.fault === 'gpu-lost') {
      // The worker destroys its device; the loss then comes back as any loss does (deviceLost).
      this.compute?.loseDevice().catch(() => undefined);
    }
  }

  /**
   * The GPU device of `compute` was lost. The steps waiting on it failed
   * already (ComputeClient: ERR_DEVICE_LOST), and their step:failed goes out
   * before the socket closes, LEAVE_AFTER_LOSS_MS later: then the tab leaves the swarm at once (the coordinator fails its sessions over and
   * stops routing to it), and comes back as a new volunteer on WebGPU or WASM
   * (device-loss.ts), ready again only after a fresh challenge.
   */
  private async deviceLost(compute: ComputeClient, loss: DeviceLoss): Promise<void> {
    if (compute !== this.compute) return;
    // The failures of the steps under way: on this thread they were emitted in the microtasks after the loss; from the
    // worker's replica (the worker data path) they are messages right behind device-lost. Either way they leave first.
    await new Promise((r) => setTimeout(r, LEAVE_AFTER_LOSS_MS));
    if (compute !== this.compute) return;
    this.stop();
    const epoch = this.epoch;
    this.update({ state: 'recovering', lastError: `${deviceLostText(loss)}; leaving the swarm and starting again` });
    const adapter = this.losses.onWasmForGood ? null : await webgpuAdapter().catch(() => null);
    if (epoch !== this.epoch) return; // paused or left meanwhile
    const r = this.losses.afterLoss(adapter);
    if (r.backend !== this.status.backend) this.capacity = browserCapacity(r.backend).catch(() => null);
    this.update({ backend: r.backend, adapter: r.adapter, stage: null, deviceLoss: { ...r, loss, at: Date.now() } });
    this.prepared = this.prepareCompute();
    this.socket.connect();
  }

  /**
   * Stops computing now: leaves the swarm (the coordinator hands this tab's
   * sessions to other replicas) and frees the worker; the weights stay in the
   * browser's cache, so resuming is quick, and the page keeps showing them.
   */
  pause(): void {
    if (this.status.state === 'evicted' || this.status.state === 'left') return;
    this.stop();
    this.update({ state: 'paused' });
  }

  /** Joins the swarm again after a pause. */
  resume(): void {
    if (this.status.state !== 'paused') return;
    this.update({ state: 'connecting' });
    this.socket.connect();
  }

  /** Leaves for good (the tab stays open). */
  leave(): void {
    this.stop();
    this.update({ state: 'left' });
  }

  private epoch = 0;

  private stop(): void {
    this.epoch += 1;
    this.mesh?.close();
    this.mesh = null;
    this.core = null;
    this.path = null;
    this.compute?.terminate();
    this.compute = null;
    this.prepared?.compute.terminate();
    this.prepared = null;
    this.setSessions((s) => s.clear());
    this.socket.disconnect();
  }
}
