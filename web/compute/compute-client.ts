import type { Feeds, StageExecutor } from '../../shared/model/pipeline.js';
import type { Backend, ComputeErrorCode, FromWorker, ToWorker } from './messages.js';

export class WorkerError extends Error {
  constructor(
    readonly code: ComputeErrorCode | 'ERR_TIMEOUT',
    message: string,
  ) {
    super(message);
  }
}

/** Stage execution in a dedicated Web Worker, as a StageExecutor for the pipeline. */
export class ComputeClient implements StageExecutor {
  private readonly worker: Worker;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (m: FromWorker) => void; reject: (e: Error) => void }>();
  backend: Backend | null = null;
  adapter: string | null = null;
  /** Compute time of the last run, measured inside the worker. */
  lastComputeMs = 0;

  constructor(private readonly timeoutMs = 120_000) {
    this.worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' });
    this.worker.onmessage = (ev: MessageEvent<FromWorker>) => {
      const p = this.pending.get(ev.data.id);
      if (p === undefined) return;
      this.pending.delete(ev.data.id);
      if (ev.data.type === 'error') p.reject(new WorkerError(ev.data.code, ev.data.message));
      else p.resolve(ev.data);
    };
    this.worker.onerror = (ev) => {
      // An ErrorEvent for an exception in the worker; a plain Event when its script did not load.
      const why = ev.message ? `${ev.message} (${ev.filename}:${ev.lineno})` : 'its script did not load, or it was stopped';
      for (const p of this.pending.values()) p.reject(new WorkerError('ERR_RUN', `compute worker failed: ${why}`));
      this.pending.clear();
    };
  }

  private call(m: ToWorker, transfer: Transferable[]): Promise<FromWorker> {
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

  async load(backend: Backend, stages: { index: number; bytes: ArrayBuffer }[]): Promise<void> {
    const r = await this.call({ type: 'load', id: this.nextId++, backend, stages }, []);
    if (r.type !== 'loaded') throw new WorkerError('ERR_BAD_MESSAGE', `expected loaded, got ${r.type}`);
    this.backend = r.backend;
    this.adapter = r.adapter;
  }

  async run(stage: number, feeds: Feeds): Promise<Feeds> {
    const r = await this.call({ type: 'run', id: this.nextId++, stage, feeds }, []);
    if (r.type !== 'result') throw new WorkerError('ERR_BAD_MESSAGE', `expected result, got ${r.type}`);
    this.lastComputeMs = r.computeMs;
    return r.outputs;
  }

  terminate(): void {
    this.worker.terminate();
  }
}
