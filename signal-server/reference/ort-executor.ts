// The one Node module that imports onnxruntime-web: its WASM backend runs the
// same kernels in Node as in a volunteer's tab, which is what an oracle wants.
import * as ort from 'onnxruntime-web';
import type { Feeds, StageExecutor, TensorData } from '../../shared/model/pipeline.js';

let configured = false;

function configure(threads: number): void {
  if (configured) return;
  ort.env.wasm.numThreads = threads;
  ort.env.logLevel = 'error';
  configured = true;
}

function toOrt(t: TensorData): ort.Tensor {
  return t.dtype === 'float32' ? new ort.Tensor('float32', t.data, [...t.dims]) : new ort.Tensor('int64', t.data, [...t.dims]);
}

function fromOrt(name: string, t: ort.Tensor): TensorData {
  if (t.type === 'float32') return { dtype: 'float32', dims: [...t.dims], data: t.data as Float32Array };
  if (t.type === 'int64') return { dtype: 'int64', dims: [...t.dims], data: t.data as BigInt64Array };
  throw new Error(`output ${name} has unexpected type ${t.type}`);
}

/** Runs stage graphs with onnxruntime-web's WASM backend in this process. */
export class OrtExecutor implements StageExecutor {
  private constructor(private readonly sessions: ort.InferenceSession[]) {}

  /** One session per stage, created one at a time. `threads` = 1 keeps results and timing steady. */
  static async create(stageBytes: readonly Uint8Array[], threads = 1): Promise<OrtExecutor> {
    configure(threads);
    const sessions: ort.InferenceSession[] = [];
    for (const bytes of stageBytes) {
      sessions.push(await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' }));
    }
    return new OrtExecutor(sessions);
  }

  async run(stage: number, feeds: Feeds): Promise<Feeds> {
    const session = this.sessions[stage];
    if (session === undefined) throw new RangeError(`no stage ${stage}`);
    const inputs: Record<string, ort.Tensor> = {};
    for (const [k, v] of Object.entries(feeds)) inputs[k] = toOrt(v);
    const out = await session.run(inputs);
    const result: Feeds = {};
    for (const [k, v] of Object.entries(out)) result[k] = fromOrt(k, v);
    return result;
  }

  async release(): Promise<void> {
    for (const s of this.sessions) await s.release();
  }
}
