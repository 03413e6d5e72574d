// The one Node module that imports onnxruntime-web: its WASM backend runs the
// same kernels in Node as in a volunteer's tab, which is what an oracle wants.
import * as ort from 'onnxruntime-web';
import type { Feeds, Fetches, StageExecutor } from '../../shared/model/pipeline.js';
import { fromRuntime, type RuntimeTensorClass, toRuntime } from '../../shared/model/runtime-tensors.js';
import { stageFeeds, stageFetches, stageSessionOptions } from '../../shared/model/session-options.js';

let configured = false;

function configure(threads: number): void {
  if (configured) return;
  ort.env.wasm.numThreads = threads;
  ort.env.logLevel = 'error';
  configured = true;
}

const Tensor = ort.Tensor as unknown as RuntimeTensorClass<ort.Tensor>;

/** Runs stage graphs with onnxruntime-web's WASM backend in this process. */
export class OrtExecutor implements StageExecutor {
  /**
   * Sessions created in this process and not released: each holds its stage's
   * weights in the one WASM heap (at most 4 GiB) that every session of the
   * process shares, which no garbage collection gives back.
   */
  static liveSessions = 0;
  private released = false;

  private constructor(private readonly sessions: ort.InferenceSession[]) {}

  /** One session per stage, created one at a time. `threads` = 1 keeps results and timing steady. */
  static async create(stageBytes: readonly Uint8Array[], threads = 1): Promise<OrtExecutor> {
    configure(threads);
    const sessions: ort.InferenceSession[] = [];
    for (const bytes of stageBytes) {
      // A volunteer's WASM options (nothing is left on a device).
      sessions.push(await ort.InferenceSession.create(bytes, stageSessionOptions('wasm', { outputs: [] })));
      OrtExecutor.liveSessions += 1;
    }
    return new OrtExecutor(sessions);
  }

  async run(stage: number, feeds: Feeds, fetches?: Fetches): Promise<Feeds> {
    const session = this.sessions[stage];
    if (session === undefined) throw new RangeError(`no stage ${stage}`);
    const inputs: Record<string, ort.Tensor> = {};
    for (const [k, v] of Object.entries(stageFeeds(session.inputNames, feeds))) inputs[k] = toRuntime(Tensor, v);
    const out = await session.run(inputs, stageFetches(session.outputNames, fetches));
    const result: Feeds = {};
    for (const [k, v] of Object.entries(out)) result[k] = fromRuntime(k, v.type, v.dims, v.data);
    return result;
  }

  /** True once released: it runs nothing more. */
  get broken(): boolean {
    return this.released;
  }

  /** Gives the sessions' memory back; once only (a second call does nothing). */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    for (const s of this.sessions) {
      await s.release();
      OrtExecutor.liveSessions -= 1;
    }
  }
}
