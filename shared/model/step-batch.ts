// Several sessions' decode steps of one stage as one runtime call: their
// inputs and KV caches gathered into a batch, and the batch's outputs cut back
// into one set of outputs per session. Pure tensor code; which steps may share
// a call is decided here too (canShareCall), where the graphs' limits are.
//
// Fused graph: GroupQueryAttention takes seqlens_k per row, so rows of
// different lengths share a call: the past is padded (with zeros) to the
// longest, each row's new key and value are written at its own length, and
// attention reads only that row's first seqlens_k + 1 positions. Each row's
// present is cut back to its own positions, so the padding never reaches a
// cache.
//
// Plain graph: positions and the causal mask come from the past tensor's
// length, one for the whole batch, so only rows of equal length share a call
// (a per-row mask would be a new input of the reference graph and change every
// plain stage file).
import type { ModelConfig } from './config.js';
import type { Feeds, Float32Tensor, KvCache, KvFeeds, TensorData } from './pipeline.js';
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

/** True when the cache holds no tensor on a device (WebGPU buffers are not gathered: see README "Batching across sessions"). */
function onHost(cache: KvCache): boolean {
  return cache.placement.device === 0;
}

/** Whether `row` may run in one call with `head` (both of one stage). */
export function canShareCall(form: GraphForm, head: BatchRow, row: BatchRow): boolean {
  if (!isDecode(head.input) || !isDecode(row.input) || head.input.dtype !== row.input.dtype) return false;
  if (!onHost(head.cache) || !onHost(row.cache)) return false;
  return form === 'fused' || head.cache.length === row.cache.length;
}

/** The first `keep` positions of row `row` of a KV tensor [B, heads, T, hd], copied into `out` at row `outRow` of [B', heads, outT, hd]. */
function copyPositions(
  src: Float32Array,
  row: number,
  srcT: number,
  keep: number,
  out: Float32Array,
  outRow: number,
  outT: number,
  heads: number,
  hd: number,
): void {
  for (let h = 0; h < heads; h++) {
    const from = (row * heads + h) * srcT * hd;
    out.set(src.subarray(from, from + keep * hd), (outRow * heads + h) * outT * hd);
  }
}

function float32(t: TensorData | KvFeeds[string] | undefined, name: string): Float32Tensor {
  if (t === undefined || t.dtype !== 'float32') throw new Error(`${name} is not a float32 tensor on the host`);
  return t;
}

/** The feeds of one call for all rows (at least one): inputs stacked, pasts padded to the longest, and the fused form's per-row lengths. */
export function gatherFeeds(
  cfg: ModelConfig,
  layers: { start: number; end: number },
  form: GraphForm,
  stage: number,
  rows: readonly BatchRow[],
): Feeds {
  const b = rows.length;
  const heads = cfg.numKvHeads;
  const hd = cfg.headDim;
  const lengths = rows.map((r) => r.cache.length);
  const past = Math.max(...lengths);
  const feeds: Feeds = {};
  const first = rows[0]?.input;
  if (first === undefined) throw new RangeError('a batch needs a row');
  if (first.dtype === 'int64') {
    feeds[stageInputName(stage)] = { dtype: 'int64', dims: [b, 1], data: BigInt64Array.from(rows, (r) => r.input.data[0] as bigint) };
  } else {
    const d = first.data.length;
    const data = new Float32Array(b * d);
    for (const [i, r] of rows.entries()) data.set(float32(r.input, 'a batched input').data, i * d);
    feeds[stageInputName(stage)] = { dtype: 'float32', dims: [b, 1, d], data };
  }
  const pasts = rows.map((r) => r.cache.feeds(1));
  for (let l = layers.start; l < layers.end; l++) {
    for (const name of [STAGE_IO.pastKey(l), STAGE_IO.pastValue(l)]) {
      const data = new Float32Array(b * heads * past * hd);
      pasts.forEach((p, i) => {
        const t = float32(p[name], name);
        copyPositions(t.data, 0, t.dims[2] as number, lengths[i] as number, data, i, past, heads, hd);
      });
      feeds[name] = { dtype: 'float32', dims: [b, heads, past, hd], data };
    }
  }
  if (form === 'fused') {
    // Per row, its total length − 1 (= what it holds, for one new position); the batch's largest total.
    feeds[FUSED_IO.seqlensK] = { dtype: 'int32', dims: [b], data: Int32Array.from(lengths) };
    feeds[FUSED_IO.totalSequenceLength] = { dtype: 'int32', dims: [], data: Int32Array.of(past + 1) };
  }
  return feeds;
}

/** One call's outputs cut into each row's: its main output [1, 1, x] and its present.* holding exactly its positions. */
export function scatterOutputs(
  cfg: ModelConfig,
  layers: { start: number; end: number },
  stage: number,
  numStages: number,
  rows: readonly BatchRow[],
  outputs: KvFeeds,
): KvFeeds[] {
  const heads = cfg.numKvHeads;
  const hd = cfg.headDim;
  const mainName = stageOutputName(stage, numStages);
  const main = float32(outputs[mainName], mainName);
  const width = main.data.length / rows.length;
  return rows.map((r, i) => {
    const keep = r.cache.length + 1;
    const own: KvFeeds = { [mainName]: { dtype: 'float32', dims: [1, 1, width], data: main.data.slice(i * width, (i + 1) * width) } };
    for (let l = layers.start; l < layers.end; l++) {
      for (const name of [STAGE_IO.presentKey(l), STAGE_IO.presentValue(l)]) {
        const t = float32(outputs[name], name);
        const data = new Float32Array(heads * keep * hd);
        copyPositions(t.data, i, t.dims[2] as number, keep, data, 0, keep, heads, hd);
        own[name] = { dtype: 'float32', dims: [1, heads, keep, hd], data };
      }
    }
    return own;
  });
}
