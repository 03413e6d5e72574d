// Several sessions' decode steps of one stage as one runtime call: their
// inputs and KV caches gathered into a batch, and the batch's outputs cut back
// into one set of outputs per session. Pure tensor code; which steps may share
// a call is decided here too (canShareCall), where the graphs' limits are.
//
// Fused graph: GroupQueryAttention takes seqlens_k per row, so rows of
// different lengths share a call: the past is padded (with zeros) to the
// longest, each row's new key and value are written at its own length, and
// attention reads only that row's first seqlens_k + 1 positions. Each row's
// present is its block of the batch's output, possibly longer than what it
// holds (the cache's count says how much); no position past a row's own is
// ever read, so the padding never reaches a result.
//
// Plain graph: positions and the causal mask come from the past tensor's
// length, one for the whole batch, so only rows of equal length share a call
// (a per-row mask would be a new input of the reference graph and change every
// plain stage file).
import type { ModelConfig } from './config.js';
import type { DeviceBatching, DeviceTensor, Feeds, Float32Tensor, KvCache, KvFeeds, TensorData } from './pipeline.js';
import { STAGE_IO, stageInputName, stageOutputName } from './stage-graph.js';
import { FUSED_IO, type GraphForm } from './stage-graph-fused.js';

/** One session's step in a batch: its input ([1, 1] ids or [1, 1, d] hidden states) and its stage's cache. */
export interface BatchRow {
  readonly input: TensorData;
  readonly cache: KvCache;
}

/** True when the step is a single position (a decode step): prefills and replays run alone. */
function isDecode(input: TensorData): boolean {
  return input.dims[0] === 1 && input.dims[1] === 1;
}

/** True when the cache holds no tensor on a device (WebGPU buffers are not gathered: see docs/stages.md "Batching across sessions"). */
function onHost(cache: KvCache): boolean {
  return cache.placement.device === 0;
}

/** Whether a row's step may run on slabs (kv-slab.ts): a decode step on a cache on the host (the fused form's, checked by the caller). */
export function slabEligible(row: BatchRow): boolean {
  return isDecode(row.input) && onHost(row.cache);
}

/**
 * Whether `row` may run in one call with `head` (both of one stage): caches
 * on a device only when the executor can gather them there (`onDevice`:
 * step-batch-device.ts), which takes caches on the host too.
 */
export function canShareCall(form: GraphForm, head: BatchRow, row: BatchRow, onDevice = false): boolean {
  if (!isDecode(head.input) || !isDecode(row.input) || head.input.dtype !== row.input.dtype) return false;
  if (!onDevice && (!onHost(head.cache) || !onHost(row.cache))) return false;
  return form === 'fused' || head.cache.length === row.cache.length;
}

/**
 * A cache's first `keep` positions (of its [1, heads, srcT, hd] tensor) into
 * row `outRow` of [B, heads, outT, hd], the rest of the row zeroed: the
 * padding is never read, and holds nothing of another session either.
 */
export function padRow(
  src: Float32Array,
  srcT: number,
  keep: number,
  out: Float32Array,
  outRow: number,
  outT: number,
  heads: number,
  hd: number,
): void {
  for (let h = 0; h < heads; h++) {
    const to = (outRow * heads + h) * outT * hd;
    out.set(src.subarray(h * srcT * hd, (h * srcT + keep) * hd), to);
    out.fill(0, to + keep * hd, to + outT * hd);
  }
}

/**
 * The array whose rows 0..B−1 the tensors are, in order (each row's present.*
 * of the call these rows last ran in together): fed again as it is, with no
 * copy. Null when they are anything else.
 */
export function sameBatch(ts: readonly Float32Tensor[]): Float32Array | null {
  const first = ts[0];
  if (first === undefined) return null;
  const bytes = first.data.byteLength;
  const buffer = first.data.buffer;
  if (first.data.byteOffset !== 0 || buffer.byteLength !== ts.length * bytes) return null;
  for (const [i, t] of ts.entries()) {
    if (t.data.buffer !== buffer || t.data.byteOffset !== i * bytes || t.dims[2] !== first.dims[2]) return null;
  }
  return new Float32Array(buffer, 0, buffer.byteLength / 4);
}

export function float32(t: TensorData | KvFeeds[string] | undefined, name: string): Float32Tensor {
  if (t === undefined || t.dtype !== 'float32') throw new Error(`${name} is not a float32 tensor on the host`);
  return t;
}

/** The rows' one-position inputs as one batch: token ids [B, 1] or hidden states [B, 1, d]. */
export function stackInputs(rows: readonly BatchRow[]): TensorData {
  const b = rows.length;
  const first = rows[0]?.input;
  if (first === undefined) throw new RangeError('a batch needs a row');
  if (first.dtype === 'int64') return { dtype: 'int64', dims: [b, 1], data: BigInt64Array.from(rows, (r) => r.input.data[0] as bigint) };
  const d = first.data.length;
  const data = new Float32Array(b * d);
  for (const [i, r] of rows.entries()) data.set(float32(r.input, 'a batched input').data, i * d);
  return { dtype: 'float32', dims: [b, 1, d], data };
}

/** Where a gathered tensor's data goes: an array of `length` values, any contents (fresh by default; StepBatcher reuses its own). */
export type Scratch = (name: string, length: number) => Float32Array;

const fresh: Scratch = (_name, length) => new Float32Array(length);

/** The feeds of one call for all rows (at least one): inputs stacked, pasts padded to the longest, and the fused form's per-row lengths. */
export function gatherFeeds(
  cfg: ModelConfig,
  layers: { start: number; end: number },
  form: GraphForm,
  stage: number,
  rows: readonly BatchRow[],
  scratch: Scratch = fresh,
): Feeds {
  const b = rows.length;
  const heads = cfg.numKvHeads;
  const hd = cfg.headDim;
  const lengths = rows.map((r) => r.cache.length);
  const past = Math.max(...lengths);
  const feeds: Feeds = { [stageInputName(stage)]: stackInputs(rows) };
  const pasts = rows.map((r) => r.cache.feeds(1));
  for (let l = layers.start; l < layers.end; l++) {
    for (const name of [STAGE_IO.pastKey(l), STAGE_IO.pastValue(l)]) {
      const ts = pasts.map((p) => float32(p[name], name));
      // The same rows as last call, in the same order: that call's present is this one's past (the plain form: all of its length).
      const whole = sameBatch(ts);
      const t = ts[0]?.dims[2] as number;
      if (whole !== null && (form === 'fused' || lengths.every((n) => n === t))) {
        feeds[name] = { dtype: 'float32', dims: [b, heads, t, hd], data: whole };
        continue;
      }
      const data = scratch(name, b * heads * past * hd);
      for (const [i, t] of ts.entries()) padRow(t.data, t.dims[2] as number, lengths[i] as number, data, i, past, heads, hd);
      feeds[name] = { dtype: 'float32', dims: [b, heads, past, hd], data };
    }
  }
  if (form === 'fused') Object.assign(feeds, fusedPositions(lengths));
  return feeds;
}

/** The fused form's position inputs of a batch of one new position per row, each row holding lengths[i]. */
export function fusedPositions(lengths: readonly number[]): Feeds {
  return {
    // Per row, its total length − 1 (= what it holds, for one new position); the batch's largest total.
    [FUSED_IO.seqlensK]: { dtype: 'int32', dims: [lengths.length], data: Int32Array.from(lengths) },
    [FUSED_IO.totalSequenceLength]: { dtype: 'int32', dims: [], data: Int32Array.of(Math.max(...lengths) + 1) },
  };
}

/** Each row's own copy of a batch call's main output [B, 1, x], as [1, 1, x] under its name. */
export function rowMains(outputs: KvFeeds, stage: number, numStages: number, b: number): KvFeeds[] {
  const mainName = stageOutputName(stage, numStages);
  const main = float32(outputs[mainName], mainName);
  const width = main.data.length / b;
  return Array.from({ length: b }, (_, i) => ({
    [mainName]: { dtype: 'float32', dims: [1, 1, width], data: main.data.slice(i * width, (i + 1) * width) },
  }));
}

/** A batch's present.* dims checked: [B, kv heads, T, head_dim] with T past every row's new position. */
export function checkPresent(cfg: ModelConfig, name: string, dims: readonly number[], rows: readonly BatchRow[]): void {
  const [tb, heads, total, hd] = dims as [number, number, number, number];
  const longest = Math.max(...rows.map((r) => r.cache.length + 1));
  if (dims.length !== 4 || tb !== rows.length || heads !== cfg.numKvHeads || hd !== cfg.headDim || total < longest)
    throw new Error(`${name} of a batch of ${rows.length} has shape [${dims.join(', ')}]`);
}

/** A KV tensor of a cache or a call: on the host (float32) or on the device. */
export function kvTensor(t: KvFeeds[string] | undefined, name: string): Float32Tensor | DeviceTensor {
  if (t === undefined || (t.dtype !== 'float32' && t.dtype !== 'device')) throw new Error(`${name} is not a float32 KV tensor`);
  return t;
}

/**
 * One call's outputs cut into each row's: a copy of its main output [1, 1, x]
 * and, without a copy, its block of each present.* ([1, heads, T, hd], T the
 * batch's longest): a cache may be longer than what it holds (the fused form
 * reads only its count; the plain form's rows are all of length T). A row's
 * block keeps the batch's array alive until every row of it has stepped again.
 * With `device` (step-batch-device.ts), present.* on the device are cut into
 * its row views instead; every present.* is checked before any is cut, so that
 * on a malformed one the caller can free them all.
 */
export function scatterOutputs(
  cfg: ModelConfig,
  layers: { start: number; end: number },
  stage: number,
  numStages: number,
  rows: readonly BatchRow[],
  outputs: KvFeeds,
  device?: DeviceBatching,
): KvFeeds[] {
  const presents: [string, Float32Tensor | DeviceTensor][] = [];
  for (let l = layers.start; l < layers.end; l++) {
    for (const name of [STAGE_IO.presentKey(l), STAGE_IO.presentValue(l)]) {
      const t = device === undefined ? float32(outputs[name], name) : kvTensor(outputs[name], name);
      checkPresent(cfg, name, t.dims, rows);
      presents.push([name, t]);
    }
  }
  const own = rowMains(outputs, stage, numStages, rows.length);
  for (const [name, t] of presents) {
    const views = t.dtype === 'device' ? (device as DeviceBatching).split(t) : hostRows(t, rows.length);
    for (const [i, v] of views.entries()) (own[i] as KvFeeds)[name] = v;
  }
  return own;
}

/** A batch's [B, heads, T, hd] tensor as B views [1, heads, T, hd] of its array (no copy). */
export function hostRows(t: Float32Tensor, b: number): Float32Tensor[] {
  const [, heads, total, hd] = t.dims as [number, number, number, number];
  const size = heads * total * hd;
  return Array.from({ length: b }, (_, i) => ({
    dtype: 'float32',
    dims: [1, heads, total, hd],
    data: t.data.subarray(i * size, (i + 1) * size),
  }));
}
