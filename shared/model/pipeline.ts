import type { ModelConfig } from './config.js';
import { KeyedSerial } from './keyed-serial.js';
import type { StageManifest } from './manifest.js';
import { type SamplingParams, sampleToken, seededRandom } from './sampling.js';
import { headFeeds, type LogitsFrom, STAGE_IO, stageInputName, stageOutputName } from './stage-graph.js';
import { FUSED_IO, type GraphForm } from './stage-graph-fused.js';
import { type BatchCounts, StepBatcher } from './step-batcher.js';

/** A tensor as it crosses the runtime boundary. */
export type TensorData =
  | { readonly dtype: 'float32'; readonly dims: readonly number[]; readonly data: Float32Array }
  | { readonly dtype: 'int64'; readonly dims: readonly number[]; readonly data: BigInt64Array }
  | { readonly dtype: 'int32'; readonly dims: readonly number[]; readonly data: Int32Array };

export type Feeds = Record<string, TensorData>;

/**
 * A float32 tensor that the runtime keeps on its device (a WebGPU buffer): a
 * KV cache lives there between steps, and is fed back without a copy. Opaque
 * here; read back only when a plain graph's cache is cut (a roll-back).
 */
export interface DeviceTensor {
  readonly dtype: 'device';
  readonly dims: readonly number[];
  /** Its row in the batch output it is a view of (DeviceBatching.split); 0 for a tensor of its own. */
  readonly batchRow?: number;
  /** Copies the tensor to the host. */
  read(): Promise<Float32Array>;
  /** Frees its device memory; it must not be used after. */
  dispose(): void;
}

/** Feeds and outputs that may stay on the device (KV tensors only). */
export type KvFeeds = Record<string, TensorData | DeviceTensor>;

/**
 * The outputs a caller needs of a run: absent, every output but the fused
 * form's new.* (see stage-graph-fused.ts); an executor may return more than
 * asked for, never fewer.
 */
export type Fetches = readonly string[] | undefined;

/**
 * What an executor whose KV tensors stay on a device (WebGPU) offers so that
 * several sessions' decode steps can share a call (step-batch-device.ts):
 * their caches gathered into one device tensor, and the batch's present.* cut
 * back into one view per row, all without leaving the device.
 */
export interface DeviceBatching {
  /**
   * One [B, heads, positions, hd] tensor whose row i holds the first keep[i]
   * positions of rows[i] (a host tensor, a device tensor of its own, or a row
   * view of an earlier batch's) and zeros after them. When the rows are the
   * rows of one earlier batch, in order, and that batch's tensor fits (at
   * least `positions` long; exactly, when `exact`), it is that tensor, with no
   * copy. A host tensor of no positions when `positions` is 0. The caller
   * disposes a device result once the call that read it is over.
   */
  gather(
    rows: readonly (Float32Tensor | DeviceTensor)[],
    keep: readonly number[],
    positions: number,
    exact: boolean,
  ): Float32Tensor | DeviceTensor;
  /**
   * A batch call's output [B, …] on the device as B views [1, …], row i's
   * batchRow i: the batch's tensor is freed when the last view is disposed.
   * Takes over `t` (it must not be disposed by the caller).
   */
  split(t: DeviceTensor): DeviceTensor[];
}

/** Runs one stage on feeds whose KV tensors may be on the device, and may leave its present.* outputs there. */
export interface KvStageExecutor {
  run(stage: number, feeds: KvFeeds, fetches?: Fetches): Promise<KvFeeds>;
  /** Present where present.* stay on a device and that device can gather them: decode steps of caches there are batched too. */
  readonly device?: DeviceBatching;
  /**
   * Where the host KV arrays fed to it are best made (kv-slab.ts's slabs, a
   * batch call's gathered pasts), when not in a plain array: a runner in
   * another thread is handed memory made shared (SharedArrayBuffer) without a
   * copy.
   */
  readonly hostArray?: HostArray;
}

/** Makes a zeroed array of `length` floats (KvStageExecutor.hostArray). */
export type HostArray = (length: number) => Float32Array;

/** A stage's main output (logits for the last, hidden states for the others), checked to be float32. */
export function mainOutput(outputs: KvFeeds, stage: number, numStages: number): Extract<TensorData, { dtype: 'float32' }> {
  const name = stageOutputName(stage, numStages);
  const t = outputs[name];
  if (t === undefined || t.dtype !== 'float32') throw new Error(`stage ${stage} returned no float32 ${name}`);
  return t;
}

/** Runs one stage's graph: the reference runner, a worker, or a volunteer implements it. */
export interface StageExecutor {
  run(stage: number, feeds: Feeds, fetches?: Fetches): Promise<Feeds>;
}

export type Float32Tensor = Extract<TensorData, { dtype: 'float32' }>;

/**
 * The tensor with data that owns its whole buffer, so that the buffer can be
 * transferred to another thread without detaching anything else (a runtime may
 * hand out outputs that are views into one buffer).
 */
export function ownBuffer<T extends TensorData>(t: T): T {
  const d = t.data;
  if (d.byteOffset === 0 && d.byteLength === d.buffer.byteLength) return t;
  return { ...t, data: d.slice() } as T;
}

/**
 * Runs the steps of sessions whose KV caches it keeps itself, where the
 * compute is: a volunteer's worker keeps them, so only the step's input and
 * main output cross between threads, never the cache.
 */
export interface SessionExecutor {
  /**
   * Runs `stage` on `input` (appended after what the session holds); returns its main output. At the last stage,
   * `logitsFrom` says which positions' logits (stage-graph.ts: the last, the default, or all of the step's).
   */
  step(session: number, stage: number, input: TensorData, logitsFrom?: LogitsFrom): Promise<Float32Tensor>;
  /** Keeps the first `positions` positions of the session's cache (a roll-back). */
  truncate(session: number, positions: number): Promise<void>;
  /** Forgets the session's cache. */
  release(session: number): void;
}

/** The most sessions' steps one runtime call runs by default (a replica holds at most 16 sessions). */
export const DEFAULT_MAX_BATCH = 16;

export interface CachingOptions {
  /**
   * The most sessions' decode steps of one stage run as one call (batch B);
   * 1 = off: every step is its own call, as soon as it comes.
   */
  readonly maxBatch?: number;
  /**
   * A batcher shared with other CachingExecutors over the same runner (the
   * server's replicas of each stage): one queue for all, so that a batch
   * moves from stage to stage whole (maxBatch is then the batcher's).
   */
  readonly batcher?: StepBatcher;
  /**
   * Into how many calls the sessions' steps are split at most (StepBatcher):
   * a volunteer that holds one of S stages, S, so that every stage of the
   * pipeline has a group to compute; 1 (the default) where one runner
   * computes every stage.
   */
  readonly microBatches?: number;
  /**
   * The fused form's decode steps keep their caches in slabs of their own and
   * fetch only the new positions (shared/model/kv-slab.ts); false: as before,
   * gathered pasts and the whole present.* fetched (benchmarks compare). Only
   * with a batcher of this executor's own (maxBatch > 1).
   */
  readonly slabs?: boolean;
}

/**
 * A SessionExecutor over a stage executor: one KV cache per session and
 * stage, in this thread. With a KvStageExecutor that leaves present.* on the
 * GPU, the caches stay there: each step feeds them back as past.* and frees
 * the tensors they replace. Decode steps of several sessions that wait
 * together run as one call (StepBatcher), unless maxBatch is 1.
 */
export class CachingExecutor implements SessionExecutor {
  private readonly caches = new Map<string, KvCache>();
  /** Steps, cuts and closes of one session run one after another. */
  private readonly queue = new KeyedSerial();
  private readonly batcher: StepBatcher | null;
  private unbatchedSteps = 0;

  constructor(
    private readonly manifest: StageManifest,
    private readonly inner: KvStageExecutor,
    options: CachingOptions = {},
  ) {
    const maxBatch = options.maxBatch ?? DEFAULT_MAX_BATCH;
    if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new RangeError(`maxBatch must be an integer ≥ 1, not ${maxBatch}`);
    this.batcher =
      options.batcher ??
      (maxBatch > 1
        ? new StepBatcher(manifest, inner, maxBatch, options.microBatches ?? 1, () => this.sessions, options.slabs ?? true)
        : null);
  }

  /** Steps run, and how many of them shared a runtime call with another session's. */
  get batching(): BatchCounts {
    if (this.batcher !== null) return this.batcher.stats;
    return {
      steps: this.unbatchedSteps,
      batchedSteps: 0,
      calls: this.unbatchedSteps,
      largestBatch: Math.min(1, this.unbatchedSteps),
      slabSteps: 0,
    };
  }

  private cache(session: number, stage: number): KvCache {
    const key = `${session}/${stage}`;
    let c = this.caches.get(key);
    if (c === undefined) {
      const entry = this.manifest.stages[stage];
      if (entry === undefined) throw new RangeError(`no stage ${stage}`);
      c = new KvCache(this.manifest.model, entry.layers, this.manifest.graph);
      this.caches.set(key, c);
    }
    return c;
  }

  /**
   * Runs `f` after the session's operations before it. A roll-back can come
   * while a step computes: cutting (or freeing) device tensors that step
   * reads must wait for it; the cut then applies to what the step left.
   */
  private serial<T>(session: number, f: () => Promise<T>): Promise<T> {
    return this.queue.run(session, f);
  }

  step(session: number, stage: number, input: TensorData, logitsFrom?: LogitsFrom): Promise<Float32Tensor> {
    return this.serial(session, async () => {
      const cache = this.cache(session, stage);
      if (this.batcher !== null) return this.batcher.step(stage, cache, input, logitsFrom);
      const n = sequenceLength(input);
      const out = await this.inner.run(stage, { [stageInputName(stage)]: input, ...cache.feeds(n), ...headFeeds(logitsFrom) });
      cache.update(out, n);
      this.unbatchedSteps++;
      return mainOutput(out, stage, this.manifest.stages.length);
    });
  }

  truncate(session: number, positions: number): Promise<void> {
    return this.serial(session, async () => {
      for (const [key, c] of this.caches) if (key.startsWith(`${session}/`)) await c.truncate(positions);
    });
  }

  release(session: number): void {
    const drop = () => {
      for (const [key, c] of [...this.caches]) {
        if (!key.startsWith(`${session}/`)) continue;
        c.dispose();
        this.caches.delete(key);
      }
    };
    // At once when nothing of the session is in flight; else after it, so that no step writes into a freed cache.
    if (this.queue.busy(session)) void this.serial(session, async () => drop());
    else drop();
  }

  /** Sessions with a cache now (tests check that closed ones are forgotten). */
  get sessions(): number {
    return new Set([...this.caches.keys()].map((k) => k.split('/')[0])).size;
  }

  /** Where the caches' KV tensors are now: on the device (GPU buffers) or on the host. */
  get kvTensors(): { device: number; host: number } {
    const n = { device: 0, host: 0 };
    for (const c of this.caches.values()) {
      const p = c.placement;
      n.device += p.device;
      n.host += p.host;
    }
    return n;
  }

  /** Forgets every session, freeing device tensors. */
  dispose(): void {
    for (const c of this.caches.values()) c.dispose();
    this.caches.clear();
  }
}

function emptyKv(cfg: ModelConfig): TensorData {
  return { dtype: 'float32', dims: [1, cfg.numKvHeads, 0, cfg.headDim], data: new Float32Array(0) };
}

/** Positions in a stage input: token ids [B, S] or hidden states [B, S, d]. */
export function sequenceLength(input: TensorData): number {
  const s = input.dims[1];
  if (s === undefined || s < 1) throw new RangeError(`stage input of shape [${input.dims.join(', ')}] has no positions`);
  return s;
}

/** The feeds as host tensors; a device tensor among them is an error naming it (a host runtime cannot take it). */
export function hostOnly(f: KvFeeds, what = 'feeds'): Feeds {
  for (const [k, v] of Object.entries(f)) if (v.dtype === 'device') throw new Error(`${what}: ${k} is on the device, not the host`);
  return f as Feeds;
}

/** The feeds of a stage's first step in a new session: `input`, empty past keys and values, and the fused form's positions. */
export function freshFeeds(manifest: StageManifest, stage: number, input: TensorData): Feeds {
  const entry = manifest.stages[stage];
  if (entry === undefined) throw new RangeError(`no stage ${stage}`);
  return {
    [stageInputName(stage)]: input,
    ...hostOnly(new KvCache(manifest.model, entry.layers, manifest.graph).feeds(sequenceLength(input))),
  };
}

/**
 * One stage's KV cache: its layers' present keys and values, fed back as
 * past, on the host or on the device. The plain graph's tensors hold exactly
 * the positions cached; the fused graph's are buffers that may hold a stale
 * tail past them (see stage-graph-fused.ts), so the count is kept here.
 */
export class KvCache {
  private readonly tensors = new Map<string, Float32Tensor | DeviceTensor>();
  private positions = 0;

  constructor(
    private readonly cfg: ModelConfig,
    private readonly layers: { start: number; end: number },
    private readonly form: GraphForm = 'plain',
  ) {}

  /** Number of positions cached. */
  get length(): number {
    return this.positions;
  }

  /**
   * Its row in the batch its tensors came from (0 when they are its own):
   * StepBatcher orders a batch by it, so that a batch that runs again feeds
   * its last call's present.* as they are.
   */
  get batchRow(): number {
    for (const t of this.tensors.values())
      return t.dtype === 'device' ? (t.batchRow ?? 0) : t.data.byteLength === 0 ? 0 : t.data.byteOffset / t.data.byteLength;
    return 0;
  }

  /** How many of its tensors are on the device and on the host. */
  get placement(): { device: number; host: number } {
    let device = 0;
    for (const t of this.tensors.values()) if (t.dtype === 'device') device++;
    return { device, host: this.tensors.size - device };
  }

  /** The past.* feeds for a step of `newPositions` positions (and, for the fused form, its int32 position inputs). */
  feeds(newPositions = 1): KvFeeds {
    const f: KvFeeds = {};
    for (let l = this.layers.start; l < this.layers.end; l++) {
      f[STAGE_IO.pastKey(l)] = this.tensors.get(STAGE_IO.presentKey(l)) ?? emptyKv(this.cfg);
      f[STAGE_IO.pastValue(l)] = this.tensors.get(STAGE_IO.presentValue(l)) ?? emptyKv(this.cfg);
    }
    if (this.form === 'fused') {
      const total = this.positions + newPositions;
      f[FUSED_IO.seqlensK] = { dtype: 'int32', dims: [1], data: Int32Array.of(total - 1) };
      f[FUSED_IO.totalSequenceLength] = { dtype: 'int32', dims: [], data: Int32Array.of(total) };
    }
    return f;
  }

  /**
   * Keeps only the first `length` positions: a step computed on an input that
   * was later found wrong is undone. The fused form only lowers the count;
   * the plain form cuts its tensors, reading device ones back once (a
   * roll-back is rare) and handing them to the runtime again at the next step.
   */
  async truncate(length: number): Promise<void> {
    const keep = Math.max(0, length);
    if (keep >= this.positions) return;
    if (keep === 0) {
      this.dispose();
      return;
    }
    if (this.form === 'plain') {
      for (const [name, t] of [...this.tensors]) {
        const data = t.dtype === 'device' ? await t.read() : t.data;
        const [b, heads, seq, dim] = t.dims as [number, number, number, number];
        const out = new Float32Array(b * heads * keep * dim);
        for (let bh = 0; bh < b * heads; bh++) out.set(data.subarray(bh * seq * dim, bh * seq * dim + keep * dim), bh * keep * dim);
        if (t.dtype === 'device') t.dispose();
        this.tensors.set(name, { dtype: 'float32', dims: [b, heads, keep, dim], data: out });
      }
    }
    this.positions = keep;
  }

  /** Takes a step's present.* as the cache (freeing device tensors they replace); the step added `newPositions`. */
  update(outputs: KvFeeds, newPositions = 1): void {
    for (let l = this.layers.start; l < this.layers.end; l++) {
      for (const name of [STAGE_IO.presentKey(l), STAGE_IO.presentValue(l)]) {
        const t = outputs[name];
        if (t === undefined) throw new Error(`stage output ${name} is missing`);
        if (t.dtype !== 'float32' && t.dtype !== 'device') throw new Error(`stage output ${name} is ${t.dtype}, not float32`);
        const old = this.tensors.get(name);
        if (old !== undefined && old !== t && old.dtype === 'device') old.dispose();
        this.tensors.set(name, t);
      }
    }
    this.positions += newPositions;
  }

  /** Forgets every position, freeing device tensors. */
  dispose(): void {
    for (const t of this.tensors.values()) if (t.dtype === 'device') t.dispose();
    this.tensors.clear();
    this.positions = 0;
  }
}

/**
 * Runs tokens through every stage in order, keeping each stage's KV cache:
 * the loop that the swarm distributes, in one place.
 */
export class PipelineSession {
  private readonly caches: KvCache[];

  constructor(
    private readonly manifest: StageManifest,
    private readonly executor: StageExecutor,
  ) {
    this.caches = manifest.stages.map((s) => new KvCache(manifest.model, s.layers, manifest.graph));
  }

  /** Positions processed so far. */
  get length(): number {
    return this.caches[0]?.length ?? 0;
  }

  /**
   * Feeds `ids` (appended after what came before) and returns the last
   * stage's logits: the last position's [vocab] (a stage set built with the
   * head on every position, benches' and tests': [ids.length, vocab]).
   */
  async forward(ids: readonly number[]): Promise<Float32Array> {
    if (ids.length === 0) throw new Error('forward needs at least one token');
    const vocab = this.manifest.model.vocabSize;
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new RangeError(`token id ${id} is outside the vocabulary [0, ${vocab})`);
    }
    let carry: TensorData = { dtype: 'int64', dims: [1, ids.length], data: BigInt64Array.from(ids, (i) => BigInt(i)) };
    for (let i = 0; i < this.manifest.stages.length; i++) {
      const cache = this.caches[i] as KvCache;
      const out = await this.executor.run(i, { [stageInputName(i)]: carry, ...hostOnly(cache.feeds(ids.length)) });
      cache.update(out, ids.length);
      carry = mainOutput(out, i, this.manifest.stages.length);
    }
    return carry.data as Float32Array;
  }
}

export interface GenerateOptions {
  readonly promptIds: readonly number[];
  readonly maxTokens: number;
  readonly sampling: SamplingParams;
  /** Stop when this token is produced (it is not included); null = never. */
  readonly eosTokenId: number | null;
  readonly onToken?: (token: number, index: number) => void;
}

export interface GenerateResult {
  readonly tokens: number[];
  readonly finishReason: 'stop' | 'length';
  /** Wall time of each forward pass, prompt first, in ms. */
  readonly stepMs: number[];
}

/** Generates with a KV cache: the prompt once, then one token per step. */
export async function generate(
  session: Pick<PipelineSession, 'forward'>,
  manifest: StageManifest,
  o: GenerateOptions,
): Promise<GenerateResult> {
  const vocab = manifest.model.vocabSize;
  const limit = manifest.model.maxPositions;
  if (o.promptIds.length === 0) throw new Error('the prompt is empty');
  if (o.promptIds.length + o.maxTokens > limit) {
    throw new RangeError(`prompt (${o.promptIds.length} tokens) + max tokens (${o.maxTokens}) exceeds the model's ${limit} positions`);
  }
  const random = seededRandom(o.sampling.seed);
  const tokens: number[] = [];
  const stepMs: number[] = [];
  let input: readonly number[] = o.promptIds;
  while (tokens.length < o.maxTokens) {
    const t0 = performance.now();
    const logits = await session.forward(input);
    stepMs.push(performance.now() - t0);
    const row = logits.subarray(logits.length - vocab);
    const next = sampleToken(row, o.sampling, random, tokens);
    if (next === o.eosTokenId) return { tokens, finishReason: 'stop', stepMs };
    tokens.push(next);
    o.onToken?.(next, tokens.length - 1);
    input = [next];
  }
  return { tokens, finishReason: 'length', stepMs };
}
