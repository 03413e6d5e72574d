// A WebGPU volunteer's decode path with onnxruntime's graph capture: each
// stage's session records one step's GPU work once and replays it at every
// step after, so a step costs a few buffer writes, one replay and one read
// back, not the ~100 dispatches (each with its bind group and uniforms) that
// onnxruntime-web builds on the CPU for every call (docs/stages.md: a step is
// dispatch-bound on a fast GPU).
//
// Capture needs a step whose shapes and buffers never change. So a stage
// keeps `slots` rows of KV cache, each the model's whole context long, in GPU
// buffers it owns: past.* and present.* are bound to the same buffer
// (GroupQueryAttention writes the new position in place), and every call runs
// all the rows, one position each. A session holds one row per stage; a row
// whose session has nothing to compute this call is fed its own next
// position, where it writes a key and value that nothing reads (its cache
// holds the positions before) and that its next real step overwrites; a full
// row writes over its last position, which nothing reads again either (it can
// take no further step, and a roll-back recomputes what it cuts). So a row
// holds the model's whole context. A prompt of P positions is P calls, one
// position each. A roll-back lowers the row's count, as with the fused
// graph's growing buffers.
//
// Only the fused graph form (GroupQueryAttention) can run this way; the
// non-captured path (StageSessions + CachingExecutor) stays the reference it
// is tested against (e2e/gpu-kv-cache.spec.ts).
import type * as Ort from 'onnxruntime-web';
import { KeyedSerial } from '../../shared/model/keyed-serial.js';
import type { StageEntry, StageManifest } from '../../shared/model/manifest.js';
import type { Float32Tensor, SessionExecutor, TensorData } from '../../shared/model/pipeline.js';
import { capturedSessionOptions, stageGraphFor } from '../../shared/model/session-options.js';
import { LOGITS_FROM_ALL, type LogitsFrom, STAGE_IO, stageInputName, stageOutputName } from '../../shared/model/stage-graph.js';
import { FUSED_IO } from '../../shared/model/stage-graph-fused.js';
import type { BatchCounts } from '../../shared/model/step-batcher.js';
import { ComputeError } from './compute-error.js';
import { LossLatch, ortGpuDevice, runtimeFor } from './ort-web.js';
import { webgpuAdapter } from './webgpu.js';

type OrtModule = typeof Ort;

/** How many sessions' rows a captured stage keeps, by default (a replica holds at most 16 sessions). */
export const DEFAULT_CAPTURE_SLOTS = 4;

export interface CaptureOptions {
  /** Rows of KV cache per stage: the most sessions it holds at once (default DEFAULT_CAPTURE_SLOTS). */
  readonly slots?: number;
  /** Positions a row holds (default and at most: the model's maxPositions). */
  readonly positions?: number;
  /**
   * How long a session's first step waits for a row when every row is held (default 0: refused at once). A
   * volunteer waits: a session closed while it computes gives its row back only once the inputs it had taken are
   * computed (capture-plan.ts CAPTURE_ROW_WAIT_MS).
   */
  readonly rowWaitMs?: number;
  /**
   * Rows only sessions numbered below 0 may take (default 0): a replica's challenges and its step before ready
   * (ReplicaCore numbers them so; the coordinator's sessions are unsigned). A challenge then never waits on the
   * coordinator's sessions, nor a session on a challenge.
   */
  readonly reservedRows?: number;
}

/** A pending position of one row: its input at that position and where its output goes. */
interface RowStep {
  readonly row: number;
  /** Token id (stage 0) or hidden state (length hidden) at this position. */
  readonly input: BigInt64Array | Float32Array;
  readonly position: number;
  resolve(out: Float32Array): void;
  reject(e: unknown): void;
}

const STORAGE = 0x80 | 0x04 | 0x08; // GPUBufferUsage STORAGE | COPY_SRC | COPY_DST
const READBACK = 0x01 | 0x08; // MAP_READ | COPY_DST
const MAP_READ = 0x01; // GPUMapMode.READ

function bytesOf(n: number): number {
  return Math.max(16, Math.ceil(n / 16) * 16);
}

/** What a worker's captured stages share: one runtime call at a time, and the device's loss. */
class SharedRuns {
  private readonly calls = new KeyedSerial();
  readonly loss = new LossLatch();

  /** Runs `f` after the other stages' calls: onnxruntime-web runs one session at a time (StageSessions queues them too). */
  exclusive<T>(f: () => Promise<T>): Promise<T> {
    return this.calls.run(0, f);
  }
}

/** One stage's captured session, its rows' buffers and the calls that step them. */
class CapturedStage {
  private readonly buffers: GPUBuffer[] = [];
  private readonly feeds: Record<string, Ort.Tensor> = {};
  private readonly fetches: Record<string, Ort.Tensor> = {};
  private readonly input: GPUBuffer;
  private readonly seqlens: GPUBuffer;
  private readonly output: GPUBuffer;
  private readonly readback: GPUBuffer;
  /** Floats a row's output holds at a position: hidden (a middle stage) or vocabulary (the last). */
  readonly outWidth: number;
  /** Values of a row's input at a position: a token id (stage 0) or a hidden state. */
  private readonly inWidth: number;
  /** Positions each row holds now; -1 for a free row. */
  private readonly lengths: number[];
  /** Steps waiting for a row to be freed (rowFreed). */
  private readonly freedWaiters = new Set<() => void>();
  private readonly queue: RowStep[] = [];
  /** The calls under way, while rows wait (dispose waits for them before it frees their buffers). */
  private draining: Promise<void> | null = null;
  readonly counts = { steps: 0, calls: 0, batchedSteps: 0, largestBatch: 0 };

  constructor(
    ort: OrtModule,
    private readonly shared: SharedRuns,
    private readonly device: GPUDevice,
    private readonly session: Ort.InferenceSession,
    readonly index: number,
    entry: StageEntry,
    manifest: StageManifest,
    readonly slots: number,
    readonly positions: number,
  ) {
    const cfg = manifest.model;
    const wanted = [stageInputName(index), FUSED_IO.seqlensK, FUSED_IO.totalSequenceLength];
    for (let l = entry.layers.start; l < entry.layers.end; l++) wanted.push(STAGE_IO.pastKey(l), STAGE_IO.pastValue(l));
    if (session.inputNames.includes(STAGE_IO.logitsFrom)) wanted.push(STAGE_IO.logitsFrom);
    const unfed = session.inputNames.filter((n) => !wanted.includes(n));
    const absent = wanted.filter((n) => !session.inputNames.includes(n));
    if (unfed.length > 0 || absent.length > 0)
      throw new ComputeError(
        'ERR_SESSION_CREATE',
        `stage ${index} cannot be captured: its inputs are not the fused form's (unfed: ${unfed.join(', ') || 'none'}; absent: ${absent.join(', ') || 'none'})`,
      );
    // A row's KV buffer for one layer: the largest buffer here, bound whole.
    const kvBytes = slots * cfg.numKvHeads * positions * cfg.headDim * 4;
    const limit = Math.min(device.limits.maxBufferSize, device.limits.maxStorageBufferBindingSize);
    if (kvBytes > limit)
      throw new ComputeError(
        'ERR_SESSION_CREATE',
        `stage ${index}: ${slots} rows of ${positions} positions make KV buffers of ${kvBytes} bytes, over this adapter's ${limit}`,
      );
    const last = index === manifest.stages.length - 1;
    this.outWidth = last ? cfg.vocabSize : cfg.hiddenSize;
    this.inWidth = index === 0 ? 1 : cfg.hiddenSize;
    this.lengths = Array.from({ length: slots }, () => -1);
    const tensor = (dtype: 'float32' | 'int32' | 'int64', dims: number[]): [GPUBuffer, Ort.Tensor] => {
      const per = dtype === 'int64' ? 8 : 4;
      const buffer = device.createBuffer({ size: bytesOf(dims.reduce((a, b) => a * b, 1) * per), usage: STORAGE });
      this.buffers.push(buffer);
      return [buffer, ort.Tensor.fromGpuBuffer(buffer, { dataType: dtype as 'float32', dims })];
    };
    let t: Ort.Tensor;
    if (index === 0) [this.input, t] = tensor('int64', [slots, 1]);
    else [this.input, t] = tensor('float32', [slots, 1, cfg.hiddenSize]);
    this.feeds[stageInputName(index)] = t;
    [this.seqlens, t] = tensor('int32', [slots]);
    this.feeds[FUSED_IO.seqlensK] = t;
    // GroupQueryAttention reads total_sequence_length on the CPU, only to check it against the buffer and size its
    // work; the rows' own lengths come from seqlens_k. The buffer's length, once: the replays never read it again.
    const [total, totalTensor] = tensor('int32', []);
    device.queue.writeBuffer(total, 0, Int32Array.of(positions));
    this.feeds[FUSED_IO.totalSequenceLength] = totalTensor;
    if (session.inputNames.includes(STAGE_IO.logitsFrom)) {
      // One position a call: its head runs on it (LOGITS_FROM_LAST and LOGITS_FROM_ALL are then the same).
      const [from, fromTensor] = tensor('int64', [1]);
      device.queue.writeBuffer(from, 0, BigInt64Array.of(-1n));
      this.feeds[STAGE_IO.logitsFrom] = fromTensor;
    }
    for (let l = entry.layers.start; l < entry.layers.end; l++) {
      for (const [past, present] of [
        [STAGE_IO.pastKey(l), STAGE_IO.presentKey(l)],
        [STAGE_IO.pastValue(l), STAGE_IO.presentValue(l)],
      ] as const) {
        const [, kv] = tensor('float32', [slots, cfg.numKvHeads, positions, cfg.headDim]);
        this.feeds[past] = kv;
        this.fetches[present] = kv;
      }
    }
    const outName = stageOutputName(index, manifest.stages.length);
    [this.output, t] = tensor('float32', [slots, 1, this.outWidth]);
    this.fetches[outName] = t;
    this.readback = device.createBuffer({ size: bytesOf(slots * this.outWidth * 4), usage: READBACK });
    this.buffers.push(this.readback);
  }

  /**
   * A free row, now the session's (its cache empty); null when every row it may take is taken. The last `reserved`
   * rows are for sessions numbered below 0 (CaptureOptions.reservedRows), which take them first.
   */
  claim(session: number, reserved: number): number | null {
    const general = this.slots - reserved;
    const order = session < 0 ? [general, this.slots, 0, general] : [0, general];
    for (let i = 0; i < order.length; i += 2)
      for (let row = order[i] as number; row < (order[i + 1] as number); row++)
        if (this.lengths[row] === -1) {
          this.lengths[row] = 0;
          return row;
        }
    return null;
  }

  free(row: number): void {
    this.lengths[row] = -1;
    for (const wake of [...this.freedWaiters]) wake();
  }

  /** Resolves when a row is freed, or after `ms`. */
  rowFreed(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.freedWaiters.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.freedWaiters.add(wake);
    });
  }

  length(row: number): number {
    return this.lengths[row] as number;
  }

  /** Keeps the row's first `positions` positions (a roll-back: the tail is overwritten, never read). */
  cut(row: number, positions: number): void {
    const n = this.lengths[row] as number;
    if (positions < n) this.lengths[row] = Math.max(0, positions);
  }

  /**
   * Computes one position of a held row (the next after what it holds; the caller has checked that it fits);
   * resolves with its output there.
   */
  stepOne(row: number, input: BigInt64Array | Float32Array): Promise<Float32Array> {
    const lost = this.shared.loss.error(`stage ${this.index}`);
    if (lost !== null) return Promise.reject(lost);
    const position = this.lengths[row] as number;
    this.lengths[row] = position + 1;
    return new Promise((resolve, reject) => {
      this.queue.push({ row, input, position, resolve, reject });
      this.draining ??= this.drain();
    });
  }

  /** Runs calls while rows wait: each call takes at most one position of each row (the rows' first waiting ones). */
  private async drain(): Promise<void> {
    try {
      // One macrotask first, so that the steps of sessions that arrive together share the call.
      await new Promise((r) => setTimeout(r, 0));
      while (this.queue.length > 0) {
        const taken = new Map<number, RowStep>();
        for (let i = 0; i < this.queue.length; ) {
          const s = this.queue[i] as RowStep;
          if (taken.has(s.row)) i++;
          else {
            taken.set(s.row, s);
            this.queue.splice(i, 1);
          }
        }
        const steps = [...taken.values()];
        await this.shared.exclusive(() => this.call(steps));
      }
    } finally {
      this.draining = null;
    }
  }

  private async call(steps: RowStep[]): Promise<void> {
    try {
      this.shared.loss.check(`stage ${this.index}`);
      const seqlens = new Int32Array(this.slots);
      for (let r = 0; r < this.slots; r++) {
        // A row not stepping writes at its next position, past what it holds (never read, overwritten by its next step);
        // a full row at its last, which nothing reads again (see the top of this file).
        const held = Math.max(0, this.lengths[r] as number);
        seqlens[r] = Math.min(held, this.positions - 1);
      }
      const inputs = this.index === 0 ? new BigInt64Array(this.slots) : new Float32Array(this.slots * this.inWidth);
      for (const s of steps) {
        seqlens[s.row] = s.position;
        (inputs as Float32Array).set(s.input as Float32Array, s.row * this.inWidth);
      }
      this.device.queue.writeBuffer(this.input, 0, inputs);
      this.device.queue.writeBuffer(this.seqlens, 0, seqlens);
      await this.session.run(this.feeds, this.fetches);
      // Only the stepping rows' outputs come back, one after another (a last stage's row is a vocabulary of floats).
      const rowBytes = this.outWidth * 4;
      const encoder = this.device.createCommandEncoder();
      for (const [i, st] of steps.entries())
        encoder.copyBufferToBuffer(this.output, st.row * rowBytes, this.readback, i * rowBytes, rowBytes);
      this.device.queue.submit([encoder.finish()]);
      await this.readback.mapAsync(MAP_READ, 0, steps.length * rowBytes);
      const all = new Float32Array(this.readback.getMappedRange(0, steps.length * rowBytes).slice(0));
      this.readback.unmap();
      this.shared.loss.check(`stage ${this.index}`);
      this.counts.calls++;
      this.counts.steps += steps.length;
      if (steps.length > 1) this.counts.batchedSteps += steps.length;
      this.counts.largestBatch = Math.max(this.counts.largestBatch, steps.length);
      for (const [i, st] of steps.entries()) st.resolve(all.slice(i * this.outWidth, (i + 1) * this.outWidth));
    } catch (e) {
      // A run that fails as the device goes fails a moment before its lost promise resolves: wait that moment, so
      // that the failure names the loss rather than its symptom (as StageSessions does).
      if (!(e instanceof ComputeError)) await this.shared.loss.settle();
      const error =
        e instanceof ComputeError
          ? e
          : (this.shared.loss.error(`stage ${this.index}`) ??
            new ComputeError('ERR_RUN', `stage ${this.index} (captured): ${(e as Error).message}`));
      for (const s of steps) s.reject(error);
    }
  }

  /** Refuses what waits, lets the call under way end, then frees the buffers and the session. */
  async dispose(): Promise<void> {
    for (const s of this.queue.splice(0)) s.reject(new ComputeError('ERR_RUN', `stage ${this.index} was closed`));
    for (const wake of [...this.freedWaiters]) wake();
    await this.draining;
    for (const b of this.buffers) b.destroy();
    // A session that will not release (a lost device) is dropped all the same.
    await this.session.release().catch(() => undefined);
  }
}

/**
 * The stages a WebGPU worker holds, captured (see the top of this file): a
 * SessionExecutor, as CachingExecutor is for the non-captured path.
 */
export class CapturedExecutor implements SessionExecutor {
  /** Each session's row in each stage it has stepped: `${session}/${stage}` → row. */
  private readonly rows = new Map<string, number>();
  /** A session's steps, cuts and release run one after another. */
  private readonly queue = new KeyedSerial();

  private constructor(
    private readonly manifest: StageManifest,
    private readonly stages: Map<number, CapturedStage>,
    private readonly device: GPUDevice | null,
    private readonly shared: SharedRuns,
    private readonly rowWaitMs: number,
    private readonly reservedRows: number,
  ) {}

  /** The stages on onnxruntime-web's WebGPU build, as the compute worker runs them (worker.ts). */
  static async forWebGpu(
    stages: readonly { index: number; bytes: ArrayBuffer }[],
    manifest: StageManifest,
    options: CaptureOptions = {},
  ): Promise<CapturedExecutor> {
    if ((await webgpuAdapter()) === null)
      throw new ComputeError('ERR_BACKEND_UNAVAILABLE', 'graph capture was asked for, but this browser gives no WebGPU adapter');
    const ort = await runtimeFor('webgpu');
    return CapturedExecutor.create(ort, stages, manifest, () => ortGpuDevice(ort), options);
  }

  /** The GPUDevice the stages run on. */
  async gpuDevice(): Promise<GPUDevice | null> {
    return this.device;
  }

  /** The device is lost: from now on no step gives a result. */
  markLost(why: string): void {
    this.shared.loss.mark(why);
  }

  /**
   * Creates the captured sessions of `stages` (fused graphs only) on onnxruntime-web's WebGPU build `ort`, whose
   * device is `device` once a first WebGPU session exists (StageSessions.gpuDevice).
   */
  static async create(
    ort: OrtModule,
    stages: readonly { index: number; bytes: ArrayBuffer }[],
    manifest: StageManifest,
    device: () => Promise<GPUDevice | null>,
    options: CaptureOptions = {},
  ): Promise<CapturedExecutor> {
    if (manifest.graph !== 'fused')
      throw new ComputeError('ERR_SESSION_CREATE', `graph capture runs the fused graph form only, not ${manifest.graph}`);
    const slots = options.slots ?? DEFAULT_CAPTURE_SLOTS;
    const positions = options.positions ?? manifest.model.maxPositions;
    const rowWaitMs = options.rowWaitMs ?? 0;
    const reservedRows = options.reservedRows ?? 0;
    if (!Number.isInteger(slots) || slots < 1 || slots > 64)
      throw new RangeError(`capture slots must be an integer in 1..64, not ${slots}`);
    if (!Number.isInteger(positions) || positions < 2 || positions > manifest.model.maxPositions)
      throw new RangeError(`capture positions must be an integer in 2..${manifest.model.maxPositions}, not ${positions}`);
    if (!(rowWaitMs >= 0 && rowWaitMs <= 600_000)) throw new RangeError(`capture rowWaitMs must be in 0..600000, not ${rowWaitMs}`);
    if (!Number.isInteger(reservedRows) || reservedRows < 0 || reservedRows >= slots)
      throw new RangeError(`capture reservedRows must be an integer in 0..${slots - 1} (fewer than the slots), not ${reservedRows}`);
    const made = new Map<number, CapturedStage>();
    const shared = new SharedRuns();
    let gpu: GPUDevice | null = null;
    try {
      for (const { index, bytes } of stages) {
        const entry = manifest.stages[index];
        if (entry === undefined) throw new ComputeError('ERR_NO_STAGE', `the manifest has no stage ${index}`);
        let session: Ort.InferenceSession;
        try {
          session = await ort.InferenceSession.create(
            stageGraphFor('webgpu', new Uint8Array(bytes)),
            capturedSessionOptions() as Ort.InferenceSession.SessionOptions,
          );
        } catch (e) {
          throw new ComputeError('ERR_SESSION_CREATE', `stage ${index} (captured): ${(e as Error).message}`);
        }
        try {
          gpu = await device();
          if (gpu === null)
            throw new ComputeError('ERR_BACKEND_UNAVAILABLE', 'onnxruntime-web created a WebGPU session but gave no GPUDevice');
          made.set(index, new CapturedStage(ort, shared, gpu, session, index, entry, manifest, slots, positions));
        } catch (e) {
          void session.release();
          throw e;
        }
      }
    } catch (e) {
      for (const s of made.values()) void s.dispose();
      throw e;
    }
    return new CapturedExecutor(manifest, made, gpu, shared, rowWaitMs, reservedRows);
  }

  private stage(stage: number): CapturedStage {
    const s = this.stages.get(stage);
    if (s === undefined) throw new ComputeError('ERR_NO_STAGE', `stage ${stage} is not loaded`);
    return s;
  }

  step(session: number, stage: number, input: TensorData, logitsFrom?: LogitsFrom): Promise<Float32Tensor> {
    return this.queue.run(session, async () => {
      const s = this.stage(stage);
      const [batch, positions] = input.dims;
      if (input.dims.length !== (stage === 0 ? 2 : 3) || batch !== 1 || positions === undefined || !(positions >= 1))
        throw new ComputeError(
          'ERR_RUN',
          `stage ${stage}: a step takes one session's positions, not an input of shape [${input.dims.join(', ')}]`,
        );
      const width = stage === 0 ? 1 : this.manifest.model.hiddenSize;
      if (input.dtype !== (stage === 0 ? 'int64' : 'float32') || input.data.length !== positions * width)
        throw new ComputeError('ERR_RUN', `stage ${stage}: input of ${input.dtype} [${input.dims.join(', ')}] is not this stage's`);
      const key = `${session}/${stage}`;
      let row = this.rows.get(key);
      const claimed = row === undefined;
      if (row === undefined) {
        let free = s.claim(session, this.reservedRows);
        for (const until = Date.now() + this.rowWaitMs; free === null && Date.now() < until; free = s.claim(session, this.reservedRows))
          await s.rowFreed(until - Date.now());
        if (free === null) {
          const rows = session < 0 ? s.slots : s.slots - this.reservedRows;
          throw new ComputeError('ERR_RUN', `stage ${stage}: all ${rows} captured rows are held by other sessions`);
        }
        row = free;
        this.rows.set(key, row);
      }
      const start = s.length(row);
      const room = s.positions - start;
      const outs: Float32Array[] = [];
      try {
        // Refused whole before any call: a step that cannot fit would compute every position it can, then be undone.
        if (positions > room)
          throw new ComputeError(
            'ERR_RUN',
            `stage ${stage}: ${positions} positions after ${start} pass the ${s.positions} a captured row holds`,
          );
        for (let p = 0; p < positions; p++) {
          const at = input.data.subarray(p * width, (p + 1) * width) as BigInt64Array | Float32Array;
          outs.push(await s.stepOne(row, at));
        }
      } catch (e) {
        // A step is whole or nothing, as CachingExecutor's: the positions it computed before failing are not held,
        // and a row taken for it alone is free again.
        s.cut(row, start);
        if (claimed && start === 0) {
          s.free(row);
          this.rows.delete(key);
        }
        throw e;
      }
      const last = stage === this.manifest.stages.length - 1;
      const kept = last && logitsFrom !== LOGITS_FROM_ALL ? outs.slice(-1) : outs;
      const data = new Float32Array(kept.length * s.outWidth);
      for (const [i, o] of kept.entries()) data.set(o, i * s.outWidth);
      return { dtype: 'float32', dims: [1, kept.length, s.outWidth], data };
    });
  }

  truncate(session: number, positions: number): Promise<void> {
    return this.queue.run(session, async () => {
      for (const [key, row] of this.rows) {
        if (!key.startsWith(`${session}/`)) continue;
        this.stage(Number(key.split('/')[1])).cut(row, positions);
      }
    });
  }

  release(session: number): void {
    const drop = () => {
      for (const [key, row] of [...this.rows]) {
        if (!key.startsWith(`${session}/`)) continue;
        this.stages.get(Number(key.split('/')[1]))?.free(row);
        this.rows.delete(key);
      }
    };
    if (this.queue.busy(session)) void this.queue.run(session, async () => drop());
    else drop();
  }

  /** Positions a session holds at a stage (0 when it holds none): tests check roll-backs by it. */
  held(session: number, stage: number): number {
    const row = this.rows.get(`${session}/${stage}`);
    return row === undefined ? 0 : this.stage(stage).length(row);
  }

  /** Sessions holding a row now. */
  get sessions(): number {
    return new Set([...this.rows.keys()].map((k) => k.split('/')[0])).size;
  }

  /** Every KV tensor is a GPU buffer of the stage's: the rows held, times the stage's layers' keys and values. */
  get kvTensors(): { device: number; host: number } {
    let device = 0;
    for (const [key] of this.rows) {
      const entry = this.manifest.stages[Number(key.split('/')[1])];
      if (entry !== undefined) device += 2 * (entry.layers.end - entry.layers.start);
    }
    return { device, host: 0 };
  }

  get batching(): BatchCounts {
    const c = { steps: 0, batchedSteps: 0, calls: 0, largestBatch: 0, slabSteps: 0 };
    for (const s of this.stages.values()) {
      c.steps += s.counts.steps;
      c.batchedSteps += s.counts.batchedSteps;
      c.calls += s.counts.calls;
      c.largestBatch = Math.max(c.largestBatch, s.counts.largestBatch);
    }
    return c;
  }

  /** Forgets every session and frees the stages (each once the call it has under way is over). */
  dispose(): Promise<void> {
    const stages = [...this.stages.values()];
    this.stages.clear();
    this.rows.clear();
    return Promise.all(stages.map((s) => s.dispose())).then(() => undefined);
  }
}
