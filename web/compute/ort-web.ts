// The only browser module that imports onnxruntime-web. A WASM volunteer
// loads the plain WASM build (a 14 MB binary); only a WebGPU volunteer loads a
// WebGPU build: where the engine has JSPI (WebAssembly.Suspending and
// WebAssembly.promising: Chromium 137 and later), the JSPI build (17 MB); else
// the asyncify build (27 MB, whose binary is instrumented to unwind and rewind
// its stack at every await: slower to start and to run). Both WebGPU builds
// are the same kernels, with bit-identical outputs (e2e/stage-in-browser.spec.ts);
// all builds' CPU kernels are the same code, so replicas on any agree.
import type * as Ort from 'onnxruntime-web';
import { KeyedSerial } from '../../shared/model/keyed-serial.js';
import type { StageManifest } from '../../shared/model/manifest.js';
import { GraphBuilder } from '../../shared/model/onnx-graph.js';
import type { Feeds, Fetches, KvFeeds, KvStageExecutor, TensorData } from '../../shared/model/pipeline.js';
import { fromRuntime, type RuntimeTensorClass, toRuntime } from '../../shared/model/runtime-tensors.js';
import { stageFeeds, stageFetches, stageGraphFor, stageSessionOptions } from '../../shared/model/session-options.js';
import { ComputeError } from './compute-error.js';
import { GpuKv, type GpuKvCounts, type GpuKvTensor, NO_GPU_KV } from './gpu-kv.js';
import type { Backend } from './messages.js';
import { ortBuildFor } from './ort-build.js';
import { webgpuAdapter } from './webgpu.js';

export { ComputeError, ortBuildFor };

type OrtModule = typeof Ort;

/** How long a failed WebGPU run waits for the device's lost promise before it reports a plain ERR_RUN. */
const LOSS_SETTLE_MS = 100;

/** A GPU device's loss as the runs on it see it (StageSessions, captured-stages.ts): why, once it was lost. */
export class LossLatch {
  why: string | null = null;
  private signal: () => void = () => {};
  private readonly lost = new Promise<void>((resolve) => {
    this.signal = resolve;
  });

  mark(why: string): void {
    this.why ??= why;
    this.signal();
  }

  /** ERR_DEVICE_LOST naming `what`, once the device is lost; null before. */
  error(what: string): ComputeError | null {
    return this.why === null ? null : new ComputeError('ERR_DEVICE_LOST', `${what}: the GPU device was lost (${this.why})`);
  }

  /** Throws error(what), once the device is lost. */
  check(what: string): void {
    const e = this.error(what);
    if (e !== null) throw e;
  }

  /**
   * A WebGPU run that failed may have failed because the device is being
   * lost: its lost promise resolves a moment after the run's own error (a
   * buffer unmapped under a read). Waits that moment, so that the failure
   * names the loss (ERR_DEVICE_LOST) rather than the symptom.
   */
  async settle(): Promise<void> {
    await Promise.race([this.lost, new Promise((r) => setTimeout(r, LOSS_SETTLE_MS))]);
  }
}

function ortFor(backend: Backend): Promise<OrtModule> {
  const build = ortBuildFor(backend);
  if (build === 'jspi') return import('onnxruntime-web/jspi');
  return build === 'asyncify' ? import('onnxruntime-web/webgpu') : import('onnxruntime-web/wasm');
}

/** The backend's onnxruntime-web build, set up once. */
export async function runtimeFor(backend: Backend): Promise<OrtModule> {
  // One thread: multi-threaded WASM inside a module worker never finished
  // creating its session here (Chromium 156, ORT 1.30), and a volunteer's
  // stage is small; several tabs share the cores anyway.
  const ort = await ortFor(backend);
  ort.env.wasm.numThreads = 1;
  ort.env.logLevel = 'error';
  return ort;
}

/**
 * The GPUDevice onnxruntime-web's WebGPU build runs on, once its first WebGPU session exists (null before): 1.30 stores
 * the device itself in env.webgpu.device, though the typings say a promise, so either is awaited.
 */
export async function ortGpuDevice(ort: OrtModule): Promise<GPUDevice | null> {
  return (await (ort.env.webgpu as { device?: GPUDevice | Promise<GPUDevice> }).device) ?? null;
}

/** A one-node graph (y = x): its session makes onnxruntime-web compile and start its WebAssembly. */
function warmUpGraph(): Uint8Array {
  const g = new GraphBuilder();
  g.op('Identity', ['x'], {}, 'y');
  return g.toBytes(
    'warm_up',
    [{ name: 'x', dtype: 'float32', shape: [1] }],
    [{ name: 'y', dtype: 'float32', shape: [1] }],
    'runtime warm-up',
  );
}

function toOrt(ort: OrtModule, t: TensorData): Ort.Tensor {
  return toRuntime(ort.Tensor as unknown as RuntimeTensorClass<Ort.Tensor>, t);
}

/** Stage sessions on one backend, created one at a time. */
export class StageSessions {
  private readonly sessions = new Map<number, Ort.InferenceSession>();
  /** One run at a time: one session must not run twice at once. */
  private readonly queue = new KeyedSerial();
  /** The device's loss, once it is lost: every run fails after, and a run under way when it happened gives no result. */
  private readonly loss = new LossLatch();
  /** The KV tensors on the GPU and their gather (WebGPU only). */
  private kv: GpuKv | null = null;

  private constructor(
    readonly backend: Backend,
    private readonly ort: OrtModule,
  ) {}

  static async create(
    backend: Backend,
    stages: readonly { index: number; bytes: ArrayBuffer }[],
    manifest: StageManifest,
  ): Promise<StageSessions> {
    if (backend === 'webgpu' && (await webgpuAdapter()) === null) {
      throw new ComputeError('ERR_BACKEND_UNAVAILABLE', 'WebGPU was asked for, but this browser gives no adapter');
    }
    const ort = await runtimeFor(backend);
    const s = new StageSessions(backend, ort);
    for (const { index, bytes } of stages) {
      const entry = manifest.stages[index];
      if (entry === undefined) throw new ComputeError('ERR_NO_STAGE', `the manifest has no stage ${index}`);
      try {
        s.sessions.set(
          index,
          await ort.InferenceSession.create(stageGraphFor(backend, new Uint8Array(bytes)), stageSessionOptions(backend, entry)),
        );
      } catch (e) {
        throw new ComputeError('ERR_SESSION_CREATE', `stage ${index} on ${backend}: ${(e as Error).message}`);
      }
    }
    if (backend === 'webgpu') {
      const device = await s.gpuDevice();
      if (device === null)
        throw new ComputeError('ERR_BACKEND_UNAVAILABLE', 'onnxruntime-web created its WebGPU sessions but gave no GPUDevice');
      s.kv = new GpuKv(device, ort.Tensor, (what) => s.guard(what));
    }
    return s;
  }

  /**
   * What a CachingExecutor runs the stages on: runKv, and on WebGPU the gather of KV tensors on the GPU that lets decode
   * steps share a call (gpu-kv.ts; WASM batches on the host).
   */
  get kvExecutor(): KvStageExecutor {
    const run: KvStageExecutor['run'] = (stage, feeds, fetches) => this.runKv(stage, feeds, fetches);
    return this.kv === null ? { run } : { run, device: this.kv };
  }

  /** GPU buffers created here and onnxruntime tensors held, now (both 0 on WASM). */
  get gpuCounts(): GpuKvCounts {
    return this.kv?.counts ?? NO_GPU_KV;
  }

  /**
   * Starts the backend's runtime (its first session costs 1–2 s of WebAssembly
   * compilation) with a one-node session: called while the stage's weights
   * download, so that the stage's own session is quick.
   */
  static async prepare(backend: Backend): Promise<void> {
    const ort = await runtimeFor(backend);
    try {
      const session = await ort.InferenceSession.create(warmUpGraph(), { executionProviders: [backend], logSeverityLevel: 3 });
      await session.release();
    } catch (e) {
      throw new ComputeError('ERR_SESSION_CREATE', `warm-up on ${backend}: ${(e as Error).message}`);
    }
  }

  /**
   * The GPUDevice onnxruntime-web runs these stages on (WebGPU only; null on
   * WASM), created with the first session.
   */
  async gpuDevice(): Promise<GPUDevice | null> {
    return this.backend === 'webgpu' ? ortGpuDevice(this.ort) : null;
  }

  /** The device is lost: from now on no run gives a result (see DeviceWatch). */
  markLost(why: string): void {
    this.loss.mark(why);
  }

  /** On WebGPU, the moment a failed run waits for the device's loss to be told (LossLatch.settle). */
  private async settleLoss(): Promise<void> {
    if (this.backend !== 'webgpu') return;
    await this.loss.settle();
  }

  private checkDevice(stage: number): void {
    this.guard(`stage ${stage}`);
  }

  private guard(what: string): void {
    this.loss.check(what);
  }

  /** Runs one stage with every output on the host; runs are serialised, since one session must not run twice at once. */
  run(stage: number, feeds: Feeds, fetches?: Fetches): Promise<Feeds> {
    return this.enqueue(() => this.runNow(stage, feeds, false, fetches) as Promise<Feeds>);
  }

  /**
   * Runs one stage leaving the outputs that live on the GPU (present.* on
   * WebGPU) there, as DeviceTensors the caller owns; feeds may be such tensors.
   */
  runKv(stage: number, feeds: KvFeeds, fetches?: Fetches): Promise<KvFeeds> {
    return this.enqueue(() => this.runNow(stage, feeds, true, fetches));
  }

  private enqueue<T>(f: () => Promise<T>): Promise<T> {
    return this.queue.run(0, f);
  }

  private async runNow(stage: number, feeds: KvFeeds, keepOnDevice: boolean, fetches: Fetches): Promise<KvFeeds> {
    const session = this.sessions.get(stage);
    if (session === undefined) throw new ComputeError('ERR_NO_STAGE', `stage ${stage} is not loaded`);
    this.checkDevice(stage);
    const inputs: Record<string, Ort.Tensor> = {};
    /** Row views fed alone, copied out into buffers of their own for this run. */
    const temps: GpuKvTensor[] = [];
    let out: Ort.InferenceSession.OnnxValueMapType;
    try {
      for (const [k, v] of Object.entries(stageFeeds(session.inputNames, feeds))) {
        if (v.dtype !== 'device') inputs[k] = toOrt(this.ort, v);
        else if (this.kv === null) throw new ComputeError('ERR_RUN', `feed ${k} is a device tensor, and ${this.backend} keeps none`);
        else {
          const { tensor, temp } = this.kv.feed(v);
          inputs[k] = tensor;
          if (temp !== null) temps.push(temp);
        }
      }
      // Without a list, what it always fetched: the fused form's new.* only for a WASM batch that keeps its own KV buffer.
      out = await session.run(inputs, stageFetches(session.outputNames, fetches));
    } catch (e) {
      if (e instanceof ComputeError) throw e;
      await this.settleLoss();
      this.checkDevice(stage);
      throw new ComputeError('ERR_RUN', `stage ${stage} on ${this.backend}: ${(e as Error).message}`);
    } finally {
      for (const t of temps) t.dispose();
    }
    const result: KvFeeds = {};
    for (const [k, v] of Object.entries(out)) {
      if (keepOnDevice && v.location === 'gpu-buffer' && this.kv !== null) {
        result[k] = this.kv.own(v);
        continue;
      }
      // getData copies GPU outputs back; for CPU tensors it returns the data as is.
      let data: Awaited<ReturnType<Ort.Tensor['getData']>>;
      try {
        data = await v.getData();
      } catch (e) {
        await this.settleLoss();
        this.checkDevice(stage);
        throw new ComputeError('ERR_RUN', `stage ${stage} on ${this.backend}: reading ${k} back: ${(e as Error).message}`);
      }
      try {
        result[k] = fromRuntime(k, v.type, v.dims, data);
      } catch (e) {
        throw new ComputeError('ERR_RUN', (e as Error).message);
      }
      v.dispose();
    }
    // Lost while it ran, or while its outputs were read back: what came back may be a lost device's, never to be reported.
    if (this.loss.why !== null) {
      for (const t of Object.values(result)) if (t.dtype === 'device') t.dispose();
      this.checkDevice(stage);
    }
    return result;
  }
}
