// KV tensors on the GPU in a WebGPU volunteer's worker, and the gather that
// lets several sessions' decode steps share one onnxruntime call
// (shared/model/step-batch-device.ts). onnxruntime-web has no call that
// concatenates tensors outside a session, so the gather is ours: on the
// GPUDevice onnxruntime runs on, one command encoder of copyBufferToBuffer
// into a fresh buffer, wrapped with Tensor.fromGpuBuffer as the call's feed.
// A batch's present.* is then cut into row views (refcounted: the batch's
// tensor goes back to onnxruntime when the last row's view is disposed).
//
// Ordering (onnxruntime-web 1.30, whose WebGPU build is the C++ WebGPU
// execution provider compiled to WebAssembly): its OnRunEnd flushes (submits)
// the run's command encoder to the device's queue before session.run
// resolves (and reading the main output back needs that submit anyway), and
// env.webgpu.device is the very GPUDevice it runs on (the JS object behind its
// handle). A device has one queue, which runs submissions in order: a copy we
// submit after run() resolved sees that run's outputs, and onnxruntime's next
// run, submitted after our copy, sees what it wrote. A tensor we dispose goes
// back to onnxruntime's buffer cache only after our copies from it were
// submitted, so its reuse is ordered after them too; a buffer we destroy
// after a run is freed by WebGPU once the submitted work using it is done.
import type * as Ort from 'onnxruntime-web';
import type { DeviceBatching, DeviceTensor, Float32Tensor } from '../../shared/model/pipeline.js';
import { ComputeError } from './compute-error.js';

type TensorClass = typeof Ort.Tensor;

/** What this worker holds on the GPU now (stats: both 0 once every session is closed). */
export interface GpuKvCounts {
  /** GPU buffers created here (gathered pasts, rows copied out, read-backs) not yet destroyed. */
  readonly buffers: number;
  /** onnxruntime's present.* tensors held by caches: a batch's counts once, however many rows view it. */
  readonly tensors: number;
  /** Since the stages loaded: batch pasts fed as the last call's present.* as they were (no copy)… */
  readonly reused: number;
  /** …and rows copied (or written from the host) into a gathered past, or out of a batch for a step alone. */
  readonly copied: number;
}

/** The counts where no GPU KV tensors are kept (WASM, or stages run with graph capture). */
export const NO_GPU_KV: GpuKvCounts = { buffers: 0, tensors: 0, reused: 0, copied: 0 };

/** A GPU tensor held by one or more handles: `free` runs when the last is disposed. */
class Held {
  private refs = 0;

  constructor(
    readonly tensor: Ort.Tensor,
    readonly buffer: GPUBuffer,
    private readonly free: () => void,
  ) {}

  acquire(): this {
    this.refs++;
    return this;
  }

  release(): void {
    this.refs--;
    if (this.refs === 0) this.free();
  }
}

function product(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** A handle on a GPU tensor: all of it (row null), or row `row` of a batch's, as [1, …]. */
export class GpuKvTensor implements DeviceTensor {
  readonly dtype = 'device';
  readonly dims: readonly number[];
  private disposed = false;

  constructor(
    readonly kv: GpuKv,
    readonly held: Held,
    /** The held tensor's dims ([B, heads, T, hd]). */
    readonly whole: readonly number[],
    readonly row: number | null,
  ) {
    this.dims = row === null ? whole : [1, ...whole.slice(1)];
  }

  get batchRow(): number {
    return this.row ?? 0;
  }

  /** Where this handle's data starts in the held buffer, in bytes. */
  get offset(): number {
    return (this.row ?? 0) * product(this.dims) * 4;
  }

  read(): Promise<Float32Array> {
    return this.kv.read(this);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.held.release();
  }
}

export class GpuKv implements DeviceBatching {
  private buffers = 0;
  private tensors = 0;
  private reused = 0;
  private copied = 0;

  constructor(
    private readonly device: GPUDevice,
    private readonly Tensor: TensorClass,
    /** Throws ERR_DEVICE_LOST once the device is lost (StageSessions). */
    private readonly guard: (what: string) => void,
  ) {}

  get counts(): GpuKvCounts {
    return { buffers: this.buffers, tensors: this.tensors, reused: this.reused, copied: this.copied };
  }

  /** An output onnxruntime left on the GPU (present.*): one handle; its last disposal gives it back to onnxruntime. */
  own(t: Ort.Tensor): GpuKvTensor {
    this.tensors++;
    const held = new Held(t, t.gpuBuffer as GPUBuffer, () => {
      this.tensors--;
      t.dispose();
    });
    return new GpuKvTensor(this, held.acquire(), t.dims, null);
  }

  private mine(t: Float32Tensor | DeviceTensor): GpuKvTensor {
    if (!(t instanceof GpuKvTensor) || t.kv !== this) throw new ComputeError('ERR_RUN', 'a KV tensor of another runtime was fed');
    return t;
  }

  split(t: DeviceTensor): DeviceTensor[] {
    const whole = this.mine(t);
    if (whole.row !== null) throw new ComputeError('ERR_RUN', 'a row view cannot be split');
    const views = Array.from({ length: whole.dims[0] as number }, (_, i) => new GpuKvTensor(this, whole.held.acquire(), whole.dims, i));
    whole.dispose();
    return views;
  }

  /** The held tensor whose rows 0..B−1 the rows are, in order, when it fits `positions`; else null. */
  private sameBatch(rows: readonly (Float32Tensor | DeviceTensor)[], positions: number, exact: boolean): GpuKvTensor | null {
    const first = rows[0];
    if (!(first instanceof GpuKvTensor) || first.row !== 0 || first.whole[0] !== rows.length) return null;
    const t = first.whole[2] as number;
    if (exact ? t !== positions : t < positions) return null;
    return rows.every((r, i) => r instanceof GpuKvTensor && r.held === first.held && r.row === i) ? first : null;
  }

  gather(
    rows: readonly (Float32Tensor | DeviceTensor)[],
    keep: readonly number[],
    positions: number,
    exact: boolean,
  ): Float32Tensor | DeviceTensor {
    this.guard('gathering a batch');
    const b = rows.length;
    const [, heads, , hd] = (rows[0]?.dims ?? []) as [number, number, number, number];
    if (b === 0 || keep.length !== b) throw new RangeError(`a gather of ${b} rows with ${keep.length} lengths`);
    const same = this.sameBatch(rows, positions, exact);
    // The same rows as the last call, in order: its present.* is this call's past as it is (a new handle on it).
    if (same !== null) {
      this.reused++;
      return new GpuKvTensor(this, same.held.acquire(), same.whole, null);
    }
    for (const [i, r] of rows.entries()) {
      const n = keep[i] as number;
      if (r.dims.length !== 4 || r.dims[0] !== 1 || r.dims[1] !== heads || r.dims[3] !== hd || n > (r.dims[2] as number) || n > positions)
        throw new RangeError(`row ${i} of a gather: [${r.dims.join(', ')}], ${n} positions kept of ${positions}`);
    }
    if (positions === 0) return { dtype: 'float32', dims: [b, heads, 0, hd], data: new Float32Array(0) };
    const rowBytes = heads * positions * hd * 4;
    const out = this.create([b, heads, positions, hd]);
    const encoder = this.device.createCommandEncoder();
    for (const [i, r] of rows.entries()) {
      const n = keep[i] as number;
      const srcT = r.dims[2] as number;
      const to = i * rowBytes;
      if (n > 0) this.copied++;
      if (r.dtype === 'float32') {
        // A cache on the host (the plain form's, read back at a roll-back): written whole when it is as long, else per head.
        const data = r.data as Float32Array<ArrayBuffer>;
        if (srcT === positions) this.device.queue.writeBuffer(out.held.buffer, to, data, 0, heads * positions * hd);
        else
          for (let h = 0; h < heads && n > 0; h++)
            this.device.queue.writeBuffer(out.held.buffer, to + h * positions * hd * 4, data, h * srcT * hd, n * hd);
        continue;
      }
      const src = this.mine(r);
      // A row as long as the batch's is contiguous: one copy (its own stale tail past n included, never another session's).
      if (srcT === positions) encoder.copyBufferToBuffer(src.held.buffer, src.offset, out.held.buffer, to, rowBytes);
      else
        for (let h = 0; h < heads && n > 0; h++)
          encoder.copyBufferToBuffer(
            src.held.buffer,
            src.offset + h * srcT * hd * 4,
            out.held.buffer,
            to + h * positions * hd * 4,
            n * hd * 4,
          );
    }
    this.device.queue.submit([encoder.finish()]);
    return out;
  }

  /** A zeroed GPU buffer of our own as a tensor of `dims` (fed to onnxruntime); destroyed when its last handle is disposed. */
  private create(dims: readonly number[]): GpuKvTensor {
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const buffer = this.device.createBuffer({ size: product(dims) * 4, usage });
    this.buffers++;
    const tensor = this.Tensor.fromGpuBuffer(buffer, { dataType: 'float32', dims });
    const held = new Held(tensor, buffer, () => {
      tensor.dispose();
      buffer.destroy();
      this.buffers--;
    });
    return new GpuKvTensor(this, held.acquire(), dims, null);
  }

  /**
   * The onnxruntime tensor to feed for `t`: a tensor's own, or a row view's
   * copied out into a buffer of its own (one copy: a prefill, a replay or a
   * lone step after a batch), `temp` then to dispose once the run is over.
   */
  feed(t: DeviceTensor): { tensor: Ort.Tensor; temp: GpuKvTensor | null } {
    const h = this.mine(t);
    if (h.row === null) return { tensor: h.held.tensor, temp: null };
    const T = h.dims[2] as number;
    const own = this.mine(this.gather([h], [T], T, true));
    return { tensor: own.held.tensor, temp: own };
  }

  /** A handle's data on the host: its bytes alone (a row's slice) copied into a mappable buffer and read. */
  async read(h: GpuKvTensor): Promise<Float32Array> {
    this.guard('reading a KV tensor back');
    const size = product(h.dims) * 4;
    const staging = this.device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.buffers++;
    try {
      const encoder = this.device.createCommandEncoder();
      encoder.copyBufferToBuffer(h.held.buffer, h.offset, staging, 0, size);
      this.device.queue.submit([encoder.finish()]);
      await staging.mapAsync(GPUMapMode.READ);
      return new Float32Array(staging.getMappedRange().slice(0));
    } catch (e) {
      this.guard('reading a KV tensor back');
      throw new ComputeError('ERR_RUN', `reading a KV tensor back: ${(e as Error).message}`);
    } finally {
      staging.destroy();
      this.buffers--;
    }
  }
}
