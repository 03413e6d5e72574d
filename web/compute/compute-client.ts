import type { StageManifest } from '../../shared/model/manifest.js';
import {
  type Feeds,
  type Float32Tensor,
  ownBuffer,
  type SessionExecutor,
  type StageExecutor,
  type TensorData,
} from '../../shared/model/pipeline.js';
import type { LogitsFrom } from '../../shared/model/stage-graph.js';
import type { CaptureOptions } from './captured-stages.js';
import type { ReplicaEvent, ToReplica } from './datapath-messages.js';
import type { Backend, ComputeErrorCode, DeviceLoss, FromWorker, ToWorker, WorkerCall, WorkerStats } from './messages.js';
import type { OrtBuild } from './ort-build.js';
import type { StageTensors } from './stage-build.js';

export class WorkerError extends Error {
  constructor(
    readonly code: ComputeErrorCode | 'ERR_TIMEOUT' | 'ERR_TERMINATED',
    message: string,
  ) {
    super(message);
  }
}

/** What ComputeClient uses of a Worker: tests inject a fake one, so the client runs in Node. */
export interface WorkerLike {
  onmessage: ((ev: MessageEvent<FromWorker>) => void) | null;
  onerror: ((ev: ErrorEvent) => void) | null;
  postMessage(m: ToWorker, transfer: Transferable[]): void;
  terminate(): void;
}

/** The compute worker of this app (Vite bundles worker.ts from this expression). */
export function startComputeWorker(): WorkerLike {
  return new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' });
}

const FROM_WORKER_TYPES = new Set<string>(['loaded', 'result', 'stepped', 'done', 'stats', 'error']);

/** The worker's device-lost message, checked: two short strings. */
function parseDeviceLoss(raw: unknown): DeviceLoss | null {
  if (typeof raw !== 'object' || raw === null) return null;
  const { reason, message } = raw as { reason?: unknown; message?: unknown };
  if (typeof reason !== 'string' || typeof message !== 'string') return null;
  return { reason: reason.slice(0, 40), message: message.slice(0, 500) };
}

/**
 * Stage execution in a dedicated Web Worker: a StageExecutor for the pipeline,
 * and a SessionExecutor whose KV caches live in the worker, so a step sends
 * only its input there (transferred, not copied) and gets only its main output back.
 */
export class ComputeClient implements StageExecutor, SessionExecutor {
  private readonly worker: WorkerLike;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (m: FromWorker) => void; reject: (e: Error) => void }>();
  private terminated = false;
  backend: Backend | null = null;
  adapter: string | null = null;
  /** The onnxruntime-web build the loaded stages run on; null before a load. */
  ortBuild: OrtBuild | null = null;
  /** Compute time of the last run, measured inside the worker. */
  lastComputeMs = 0;
  /** What the worker's replica reports (?datapath=worker); dropped while none listens. */
  onReplica: ((e: ReplicaEvent) => void) | null = null;
  /** The GPU device the stages run on was lost (told once); the worker computes nothing more. */
  onDeviceLost: ((loss: DeviceLoss) => void) | null = null;
  /** The loss, once the worker told it: every call fails with ERR_DEVICE_LOST from then on. */
  deviceLoss: DeviceLoss | null = null;

  constructor(
    private readonly timeoutMs = 120_000,
    createWorker: () => WorkerLike = startComputeWorker,
  ) {
    this.worker = createWorker();
    this.worker.onmessage = (ev: MessageEvent<FromWorker>) => {
      const m: unknown = ev.data;
      // Only answers to calls still waiting; anything else (late, unknown, malformed) is dropped.
      if (typeof m !== 'object' || m === null) return;
      const { id, type } = m as { id?: unknown; type?: unknown };
      if (type === 'replica' && ev.data.type === 'replica') {
        this.onReplica?.(ev.data.event);
        return;
      }
      if (type === 'device-lost') {
        const loss = parseDeviceLoss((m as { loss?: unknown }).loss);
        if (loss !== null) this.lost(loss);
        return;
      }
      if (typeof id !== 'number' || typeof type !== 'string' || !FROM_WORKER_TYPES.has(type)) return;
      const p = this.pending.get(id);
      if (p === undefined) return;
      this.pending.delete(id);
      if (ev.data.type === 'error') p.reject(new WorkerError(ev.data.code, ev.data.message));
      else p.resolve(ev.data);
    };
    this.worker.onerror = (ev) => {
      // An ErrorEvent for an exception in the worker; a plain Event when its script did not load.
      const why = ev.message ? `${ev.message} (${ev.filename}:${ev.lineno})` : 'its script did not load, or it was stopped';
      this.failAll(new WorkerError('ERR_RUN', `compute worker failed: ${why}`));
    };
  }

  /**
   * The device is lost: the calls waiting fail now with ERR_DEVICE_LOST (an
   * answer that comes for one later is dropped, as for any call no longer
   * waiting), and so does every call after.
   */
  private lost(loss: DeviceLoss): void {
    if (this.deviceLoss !== null) return;
    this.deviceLoss = loss;
    this.failAll(new WorkerError('ERR_DEVICE_LOST', deviceLostText(loss)));
    this.onDeviceLost?.(loss);
  }

  private failAll(e: WorkerError): void {
    const waiting = [...this.pending.values()];
    this.pending.clear();
    for (const p of waiting) p.reject(e);
  }

  private call(m: WorkerCall, transfer: Transferable[]): Promise<FromWorker> {
    if (this.terminated) return Promise.reject(new WorkerError('ERR_TERMINATED', `compute worker was stopped before ${m.type}`));
    if (this.deviceLoss !== null) return Promise.reject(new WorkerError('ERR_DEVICE_LOST', deviceLostText(this.deviceLoss)));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(m.id);
        reject(new WorkerError('ERR_TIMEOUT', `compute worker gave no answer to ${m.type} in ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending.set(m.id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.worker.postMessage(m, transfer);
    });
  }

  /**
   * Creates sessions from stage files already checked against the manifest
   * (stage-cache.ts); their buffers are transferred, not copied: the caller
   * must not use them after.
   */
  async load(
    backend: Backend,
    manifest: StageManifest,
    stages: { index: number; bytes: ArrayBuffer }[],
    batching = true,
    capture: CaptureOptions | null = null,
  ): Promise<void> {
    const buffers = stages.map((s) => s.bytes);
    const r = await this.call({ type: 'load', id: this.nextId++, backend, manifest, stages, batching, capture }, buffers);
    if (r.type !== 'loaded') throw new WorkerError('ERR_BAD_MESSAGE', `expected loaded, got ${r.type}`);
    this.backend = r.backend;
    this.adapter = r.adapter;
    this.ortBuild = r.build;
  }

  /** Starts the backend's runtime in the worker now (a second or two of WebAssembly compilation), so that load or build is quick later. */
  async prepare(backend: Backend): Promise<void> {
    const r = await this.call({ type: 'prepare', id: this.nextId++, backend }, []);
    if (r.type !== 'done') throw new WorkerError('ERR_BAD_MESSAGE', `expected done, got ${r.type}`);
  }

  /**
   * Like load, but the worker builds each stage from the checkpoint tensors
   * (transferred, not copied: the caller must not use them after) and checks
   * it against the manifest's sha256 before creating its session.
   */
  async build(
    backend: Backend,
    manifest: StageManifest,
    stages: readonly StageTensors[],
    batching = true,
    capture: CaptureOptions | null = null,
  ): Promise<void> {
    const buffers = new Set<ArrayBuffer>();
    for (const s of stages) for (const t of s.tensors) buffers.add(t.bytes.buffer as ArrayBuffer);
    const r = await this.call({ type: 'build', id: this.nextId++, backend, manifest, stages, batching, capture }, [...buffers]);
    if (r.type !== 'loaded') throw new WorkerError('ERR_BAD_MESSAGE', `expected loaded, got ${r.type}`);
    this.backend = r.backend;
    this.adapter = r.adapter;
    this.ortBuild = r.build;
  }

  async step(session: number, stage: number, input: TensorData, logitsFrom?: LogitsFrom): Promise<Float32Tensor> {
    const own = ownBuffer(input);
    const m = { type: 'step', id: this.nextId++, session, stage, input: own, ...(logitsFrom === undefined ? {} : { logitsFrom }) } as const;
    const r = await this.call(m, [own.data.buffer as ArrayBuffer]);
    if (r.type !== 'stepped') throw new WorkerError('ERR_BAD_MESSAGE', `expected stepped, got ${r.type}`);
    this.lastComputeMs = r.computeMs;
    return r.output;
  }

  async truncate(session: number, positions: number): Promise<void> {
    const r = await this.call({ type: 'truncate', id: this.nextId++, session, positions }, []);
    if (r.type !== 'done') throw new WorkerError('ERR_BAD_MESSAGE', `expected done, got ${r.type}`);
  }

  release(session: number): void {
    if (this.terminated) return;
    // Fire and forget: nothing waits on it, and a worker that is gone has no cache to free.
    this.call({ type: 'release', id: this.nextId++, session }, []).catch(() => {});
  }

  /** Sessions the worker keeps caches for, and where their KV tensors are. */
  async stats(): Promise<WorkerStats> {
    const r = await this.call({ type: 'stats', id: this.nextId++ }, []);
    if (r.type !== 'stats') throw new WorkerError('ERR_BAD_MESSAGE', `expected stats, got ${r.type}`);
    return r.stats;
  }

  async run(stage: number, feeds: Feeds): Promise<Feeds> {
    const r = await this.call({ type: 'run', id: this.nextId++, stage, feeds }, []);
    if (r.type !== 'result') throw new WorkerError('ERR_BAD_MESSAGE', `expected result, got ${r.type}`);
    this.lastComputeMs = r.computeMs;
    return r.outputs;
  }

  /** The fault gpu-lost: the worker destroys its GPU device (the real API), which the worker then reports as lost. */
  async loseDevice(): Promise<void> {
    const r = await this.call({ type: 'lose-device', id: this.nextId++ }, []);
    if (r.type !== 'done') throw new WorkerError('ERR_BAD_MESSAGE', `expected done, got ${r.type}`);
  }

  /** A message to the worker's replica (?datapath=worker): nothing answers it but the replica's events. */
  post(m: ToReplica, transfer: Transferable[] = []): void {
    if (!this.terminated) this.worker.postMessage(m, transfer);
  }

  /** Stops the worker; calls still waiting fail now (ERR_TERMINATED) instead of at their timeout. */
  terminate(): void {
    if (this.terminated) return;
    this.terminated = true;
    this.worker.terminate();
    this.failAll(new WorkerError('ERR_TERMINATED', 'compute worker was stopped'));
  }
}

/** A lost device in words, for the step failures it causes (the coordinator's log shows them). */
export function deviceLostText(loss: DeviceLoss): string {
  return `the GPU device was lost (${loss.reason}${loss.message === '' ? '' : `: ${loss.message}`})`;
}
