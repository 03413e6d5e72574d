/**
 * Stage graphs run with onnxruntime-web's WASM backend in a worker thread
 * (ort-thread.mjs): what OrtExecutor computes, off the server's event loop. A
 * WASM step is synchronous, so the fallback's and the challenges' steps on the
 * main thread held every socket, vote and HTTP request of the server for as
 * long as a step took (measured in docs/faults.md).
 *
 * One thread serves every runner of the process, one step at a time, as the
 * main thread did: starting a thread and loading onnxruntime in it costs
 * about 0.35 s of CPU, against 45 ms for a runner's sessions in a thread
 * already running. It stops once no runner has used it for IDLE_STOP_MS (its
 * WASM heap, which released sessions leave at its high-water mark, goes with
 * it), and a thread that died is replaced at the next runner's creation.
 */
import { Worker } from 'node:worker_threads';
import type { Feeds, Fetches, StageExecutor } from '../../shared/model/pipeline.js';
import { fromRuntime } from '../../shared/model/runtime-tensors.js';
import { isPresentOutput, stageFeeds, stageFetches, stageSessionOptions } from '../../shared/model/session-options.js';

/** How long the runner thread outlives its last runner, by default. */
export const IDLE_STOP_MS = 60_000;

/** The runner thread's settings (a test shortens the idle time, and puts it back). */
export const runnerThreadOptions = { idleStopMs: IDLE_STOP_MS };

interface RuntimeOutput {
  readonly type: string;
  readonly dims: readonly number[];
  readonly data: unknown;
}

interface Reply {
  readonly id: number;
  readonly error?: string;
  readonly sessions?: number[];
  readonly names?: { readonly inputs: string[][]; readonly outputs: string[][] };
  readonly outputs?: Record<string, RuntimeOutput>;
}

interface Pending {
  resolve(reply: Reply): void;
  reject(e: Error): void;
}

/** The error of a run or a creation cut short because the runner thread stopped (crashed, or was stopped). */
export class RunnerThreadStopped extends Error {}

/** The thread and what is waiting on its answers. */
class RunnerThread {
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  /** Why it stopped; null while it runs. */
  stopped: string | null = null;
  /** Runners made on it and not released. */
  users = 0;
  private idle: NodeJS.Timeout | null = null;

  constructor(readonly worker: Worker) {
    worker.on('message', (reply: Reply) => {
      const p = this.pending.get(reply.id);
      if (p === undefined) return;
      this.pending.delete(reply.id);
      if (this.pending.size === 0) worker.unref();
      if (reply.error !== undefined) p.reject(new Error(reply.error));
      else p.resolve(reply);
    });
    worker.on('error', (e: Error) => this.stop(`the runner thread failed: ${e.message}`));
    worker.on('exit', (code) => this.stop(`the runner thread exited (code ${code})`));
    // An idle thread does not keep the process alive; one computing does, until it answers.
    worker.unref();
  }

  ask(message: Record<string, unknown>, transfer: ArrayBuffer[] = []): Promise<Reply> {
    if (this.stopped !== null) return Promise.reject(new RunnerThreadStopped(this.stopped));
    const id = this.nextId++;
    return new Promise<Reply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.ref();
      this.worker.postMessage({ ...message, id }, transfer);
    });
  }

  use(): void {
    this.users += 1;
    if (this.idle !== null) clearTimeout(this.idle);
    this.idle = null;
  }

  unuse(): void {
    this.users -= 1;
    if (this.users > 0 || this.stopped !== null) return;
    this.idle = setTimeout(() => {
      if (this.users > 0) return;
      this.stop('the runner thread was idle');
      void this.worker.terminate();
    }, runnerThreadOptions.idleStopMs);
    this.idle.unref();
  }

  private stop(why: string): void {
    if (this.stopped !== null) return;
    this.stopped = why;
    if (shared === this) shared = null;
    for (const p of this.pending.values()) p.reject(new RunnerThreadStopped(why));
    this.pending.clear();
  }
}

let shared: RunnerThread | null = null;

function runnerThread(): RunnerThread {
  // Plain JavaScript needs none of this process's options: a TypeScript loader inherited (tsx, `npm start`) cost the
  // thread's start about 150 ms of CPU more (V8's flags are the process's, shared by its threads anyway).
  shared ??= new RunnerThread(new Worker(new URL('./ort-thread.mjs', import.meta.url), { execArgv: [] }));
  return shared;
}

/**
 * A zeroed float array in shared memory: handed to the runner thread without
 * a copy (KvStageExecutor.hostArray: the fallback's KV slabs, whose whole
 * length every decode step feeds, and the pasts a batch call gathers).
 */
export function sharedFloat32Array(length: number): Float32Array {
  return new Float32Array(new SharedArrayBuffer(length * Float32Array.BYTES_PER_ELEMENT));
}

export class ThreadExecutor implements StageExecutor {
  /** Runners of this process whose sessions are held (made or being made, not released, their thread running). */
  static get live(): number {
    return shared?.users ?? 0;
  }

  private released = false;

  private constructor(
    private readonly thread: RunnerThread,
    private readonly sessions: readonly number[],
    private readonly names: NonNullable<Reply['names']>,
  ) {}

  /**
   * One session per stage, made in the runner thread. The stage bytes are
   * moved there where each owns its whole buffer (the caller's arrays are left
   * empty), copied otherwise.
   */
  static async create(stageBytes: readonly Uint8Array[]): Promise<ThreadExecutor> {
    // An empty array (one moved to another runner already) would never reach the thread: its message is dropped.
    for (const [i, b] of stageBytes.entries()) if (b.byteLength === 0) throw new RangeError(`stage ${i}'s bytes are empty`);
    const stages = stageBytes.map((b) => (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? b : b.slice()));
    const thread = runnerThread();
    thread.use();
    try {
      const reply = await thread.ask(
        { op: 'create', stages, options: stageSessionOptions('wasm', { outputs: [] }) },
        stages.map((b) => b.buffer as ArrayBuffer),
      );
      if (reply.sessions === undefined || reply.names === undefined)
        throw new Error('the runner thread answered a creation without its sessions');
      return new ThreadExecutor(thread, reply.sessions, reply.names);
    } catch (e) {
      thread.unuse();
      throw e;
    }
  }

  /** True once it can run nothing more (its thread stopped, or it was released). */
  get broken(): boolean {
    return this.released || this.thread.stopped !== null;
  }

  async run(stage: number, feeds: Feeds, fetches?: Fetches): Promise<Feeds> {
    if (this.released) throw new Error(`the runner was released: no stage ${stage}`);
    const session = this.sessions[stage];
    const inputs = this.names.inputs[stage];
    const outputs = this.names.outputs[stage];
    if (session === undefined || inputs === undefined || outputs === undefined) throw new RangeError(`no stage ${stage}`);
    // The feeds are copied, never moved: a caller keeps its KV cache and its carry. Shared memory is not copied: the
    // thread reads it during the run. A caller never writes what a run it sent reads until that run has answered: a KV
    // slab's rows (sharedFloat32Array), StepBatcher's gathered pasts. The present.* come back in shared memory (the
    // thread copies them there), so that fed back as next step's past.* they cross without a copy.
    const asked = stageFetches(outputs, fetches);
    const reply = await this.thread.ask({
      op: 'run',
      session,
      feeds: stageFeeds(inputs, feeds),
      fetches: asked,
      shared: asked.filter(isPresentOutput),
    });
    const result: Feeds = {};
    for (const [k, v] of Object.entries(reply.outputs ?? {})) result[k] = fromRuntime(k, v.type, v.dims, v.data);
    return result;
  }

  /** Gives the sessions back after the runs sent before; once only (a second call does nothing). */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    try {
      // A thread that stopped took the sessions with it.
      await this.thread.ask({ op: 'release', sessions: this.sessions }).catch((e: unknown) => {
        if (!(e instanceof RunnerThreadStopped)) throw e;
      });
    } finally {
      this.thread.unuse();
    }
  }

  /** The thread itself, for tests that stop it as a crash would. */
  get worker(): Worker {
    return this.thread.worker;
  }
}
