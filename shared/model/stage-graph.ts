import type { ModelConfig } from './config.js';
import { GraphBuilder, type ValueSpec } from './onnx-graph.js';
import type { Feeds } from './pipeline.js';
import type { WeightPrecision } from './quantize.js';
import { ropeInverseFrequencies } from './rope.js';
import { gatherEmbedding, matMulWeight } from './weight-nodes.js';
import { layerWeightNames, type WeightReader } from './weights.js';

/** A half-open range of decoder layers [start, end). */
export interface LayerRange {
  readonly start: number;
  readonly end: number;
}

export interface StageSpec {
  readonly index: number;
  readonly count: number;
  readonly layers: LayerRange;
}

/** Names of a stage's inputs and outputs: one convention for builder, runner and volunteers. */
export const STAGE_IO = {
  inputIds: 'input_ids',
  hiddenIn: 'hidden_states_in',
  hiddenOut: 'hidden_states',
  logits: 'logits',
  /** The last stage's: from which position its head runs (LOGITS_FROM_LAST or LOGITS_FROM_ALL), int64 [1]. */
  logitsFrom: 'logits_from',
  pastKey: (layer: number): string => `past.${layer}.key`,
  pastValue: (layer: number): string => `past.${layer}.value`,
  presentKey: (layer: number): string => `present.${layer}.key`,
  presentValue: (layer: number): string => `present.${layer}.value`,
} as const;

/** A stage's main input: token ids for stage 0, hidden states for the others. */
export function stageInputName(stage: number): string {
  return stage === 0 ? STAGE_IO.inputIds : STAGE_IO.hiddenIn;
}

/**
 * Which positions the last stage's LM head runs on. 'last': the call says, by
 * its logits_from input: each row's last position (LOGITS_FROM_LAST, what a
 * runtime adapter feeds when a call names none: logits [B, 1, vocab], the
 * only row a sampled step reads), or every position (LOGITS_FROM_ALL: a
 * scored prompt's step, a row of logits for each of its positions). 'all':
 * every position always, with no such input (kept for benches and tests that
 * compare against it). At a prompt of P positions the head is P × hidden ×
 * vocab multiply-adds, most of a prefill on a real vocabulary, and its output
 * can pass a WebGPU adapter's maxBufferSize.
 */
export type HeadPositions = 'last' | 'all';

/** logits_from: the head on each row's last position only. */
export const LOGITS_FROM_LAST = -1;
/** logits_from: the head on every position of the step. */
export const LOGITS_FROM_ALL = 0;
export type LogitsFrom = typeof LOGITS_FROM_LAST | typeof LOGITS_FROM_ALL;

/** logits_from as a feed. */
export function logitsFromFeed(from: LogitsFrom): { dtype: 'int64'; dims: number[]; data: BigInt64Array } {
  return { dtype: 'int64', dims: [1], data: BigInt64Array.of(BigInt(from)) };
}

/** A step's logits_from feed where its caller names one (else the runtime adapter feeds LOGITS_FROM_LAST: session-options.ts). */
export function headFeeds(logitsFrom: LogitsFrom | undefined): Feeds {
  return logitsFrom === undefined ? {} : { [STAGE_IO.logitsFrom]: logitsFromFeed(logitsFrom) };
}

/** Options of the stage builders; the defaults are what the product builds. */
export interface StageBuildOptions {
  /** Default 'last'. */
  readonly head?: HeadPositions;
}

/** A stage's main output: logits for the last stage, hidden states for the others. */
export function stageOutputName(stage: number, numStages: number): string {
  return stage === numStages - 1 ? STAGE_IO.logits : STAGE_IO.hiddenOut;
}

const B = 'batch';
const S = 'sequence';
const P = 'past_sequence';
const T = 'total_sequence';
/** The rows of logits a call gives: 1, or the step's positions (logits_from). */
const R = 'logit_rows';

export function stageInputs(cfg: ModelConfig, stage: StageSpec, head: HeadPositions = 'last'): ValueSpec[] {
  const first: ValueSpec =
    stage.index === 0
      ? { name: STAGE_IO.inputIds, dtype: 'int64', shape: [B, S] }
      : { name: STAGE_IO.hiddenIn, dtype: 'float32', shape: [B, S, cfg.hiddenSize] };
  const kv: ValueSpec[] = [];
  for (let l = stage.layers.start; l < stage.layers.end; l++) {
    kv.push({ name: STAGE_IO.pastKey(l), dtype: 'float32', shape: [B, cfg.numKvHeads, P, cfg.headDim] });
    kv.push({ name: STAGE_IO.pastValue(l), dtype: 'float32', shape: [B, cfg.numKvHeads, P, cfg.headDim] });
  }
  const last = stage.index === stage.count - 1;
  const from: ValueSpec[] = last && head === 'last' ? [{ name: STAGE_IO.logitsFrom, dtype: 'int64', shape: [1] }] : [];
  return [first, ...kv, ...from];
}

export function stageOutputs(cfg: ModelConfig, stage: StageSpec, head: HeadPositions = 'last'): ValueSpec[] {
  const last = stage.index === stage.count - 1;
  const first: ValueSpec = last
    ? { name: STAGE_IO.logits, dtype: 'float32', shape: [B, head === 'last' ? R : S, cfg.vocabSize] }
    : { name: STAGE_IO.hiddenOut, dtype: 'float32', shape: [B, S, cfg.hiddenSize] };
  const kv: ValueSpec[] = [];
  for (let l = stage.layers.start; l < stage.layers.end; l++) {
    kv.push({ name: STAGE_IO.presentKey(l), dtype: 'float32', shape: [B, cfg.numKvHeads, T, cfg.headDim] });
    kv.push({ name: STAGE_IO.presentValue(l), dtype: 'float32', shape: [B, cfg.numKvHeads, T, cfg.headDim] });
  }
  return [first, ...kv];
}

/** x @ W^T (+ b) for a Hugging Face Linear weight of shape [outF, inF], W stored in the stage's precision. */
export function linear(
  g: GraphBuilder,
  w: WeightReader,
  x: string,
  name: string,
  outF: number,
  inF: number,
  precision: WeightPrecision,
  bias?: string,
): string {
  let y = matMulWeight(g, x, name, w.get(name, [outF, inF]).data, outF, inF, precision);
  if (bias !== undefined) y = g.op('Add', [y, g.weight(bias, [outF], w.get(bias, [outF]).data)]);
  return y;
}

/** RMSNorm: x / sqrt(mean(x²) + eps) · weight, in float32 like transformers' LlamaRMSNorm. */
function rmsNorm(g: GraphBuilder, w: WeightReader, x: string, name: string, dim: number, eps: number): string {
  const meanSq = g.op('ReduceMean', [g.op('Mul', [x, x])], { axes: [-1], keepdims: 1 });
  const inv = g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [meanSq, g.float(eps)])])]);
  return g.op('Mul', [g.op('Mul', [x, inv]), g.weight(name, [dim], w.get(name, [dim]).data)]);
}

/** [B, S, heads·hd] → [B, heads, S, hd] */
function splitHeads(g: GraphBuilder, x: string, heads: number, headDim: number): string {
  return g.op('Transpose', [g.op('Reshape', [x, g.ints([0, 0, heads, headDim])])], { perm: [0, 2, 1, 3] });
}

/** Rotary positions, transformers' rotate-half form: x·cos + rotate_half(x)·sin. */
function rope(g: GraphBuilder, x: string, cos: string, sin: string, headDim: number): string {
  const half = headDim / 2;
  const x1 = g.op('Slice', [x, g.ints([0]), g.ints([half]), g.ints([-1])]);
  const x2 = g.op('Slice', [x, g.ints([half]), g.ints([headDim]), g.ints([-1])]);
  const rotated = g.op('Concat', [g.op('Neg', [x2]), x1], { axis: -1 });
  return g.op('Add', [g.op('Mul', [x, cos]), g.op('Mul', [rotated, sin])]);
}

/** [B, kvHeads, T, hd] → [B, heads, T, hd] by repeating each kv head (grouped-query attention). */
function repeatKv(g: GraphBuilder, x: string, cfg: ModelConfig): string {
  const rep = cfg.numHeads / cfg.numKvHeads;
  if (rep === 1) return x;
  const expanded = g.op('Expand', [g.op('Unsqueeze', [x, g.ints([2])]), g.ints([1, 1, rep, 1, 1])]);
  return g.op('Reshape', [expanded, g.ints([0, cfg.numHeads, -1, cfg.headDim])]);
}

function decoderLayer(
  g: GraphBuilder,
  w: WeightReader,
  cfg: ModelConfig,
  l: number,
  x: string,
  cos: string,
  sin: string,
  mask: string,
  precision: WeightPrecision,
): string {
  const n = layerWeightNames(l);
  const d = cfg.hiddenSize;
  const hd = cfg.headDim;
  const qDim = cfg.numHeads * hd;
  const kvDim = cfg.numKvHeads * hd;
  const h = rmsNorm(g, w, x, n.inputNorm, d, cfg.rmsNormEps);
  const q = linear(g, w, h, n.q, qDim, d, precision, cfg.qkvBias ? n.qBias : undefined);
  const k = linear(g, w, h, n.k, kvDim, d, precision, cfg.qkvBias ? n.kBias : undefined);
  const v = linear(g, w, h, n.v, kvDim, d, precision, cfg.qkvBias ? n.vBias : undefined);
  const qr = rope(g, splitHeads(g, q, cfg.numHeads, hd), cos, sin, hd);
  const kr = rope(g, splitHeads(g, k, cfg.numKvHeads, hd), cos, sin, hd);
  const vh = splitHeads(g, v, cfg.numKvHeads, hd);
  const keys = g.op('Concat', [STAGE_IO.pastKey(l), kr], { axis: 2 }, STAGE_IO.presentKey(l));
  const values = g.op('Concat', [STAGE_IO.pastValue(l), vh], { axis: 2 }, STAGE_IO.presentValue(l));
  const kAll = repeatKv(g, keys, cfg);
  const vAll = repeatKv(g, values, cfg);
  const scores = g.op('Add', [
    g.op('Mul', [g.op('MatMul', [qr, g.op('Transpose', [kAll], { perm: [0, 1, 3, 2] })]), g.float(1 / Math.sqrt(hd))]),
    mask,
  ]);
  const attn = g.op('MatMul', [g.op('Softmax', [scores], { axis: -1 }), vAll]);
  const merged = g.op('Reshape', [g.op('Transpose', [attn], { perm: [0, 2, 1, 3] }), g.ints([0, 0, qDim])]);
  const o = linear(g, w, merged, n.o, d, qDim, precision, cfg.oBias ? n.oBias : undefined);
  const x2 = g.op('Add', [x, o]);
  const h2 = rmsNorm(g, w, x2, n.postNorm, d, cfg.rmsNormEps);
  const gate = linear(g, w, h2, n.gate, cfg.intermediateSize, d, precision);
  const up = linear(g, w, h2, n.up, cfg.intermediateSize, d, precision);
  const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]);
  return g.op('Add', [x2, linear(g, w, act, n.down, d, cfg.intermediateSize, precision)]);
}

export { ropeInverseFrequencies } from './rope.js';

/** Stage 0's token embedding: a Gather from the embedding table, stored in the stage's precision. */
export function embedTokens(g: GraphBuilder, w: WeightReader, cfg: ModelConfig, precision: WeightPrecision): string {
  const d = cfg.hiddenSize;
  const table = w.get('model.embed_tokens.weight', [cfg.vocabSize, d]);
  return gatherEmbedding(g, STAGE_IO.inputIds, 'model.embed_tokens.weight', table.data, cfg.vocabSize, d, precision);
}

/**
 * Positions the manifest says a last stage's head runs on: 'last' when it
 * takes logits_from; else 'all' (also an older builder's head on the last
 * position alone, which had no such input: a cache of it is rebuilt).
 */
export function headPositionsOf(inputs: readonly ValueSpec[]): HeadPositions {
  return inputs.some((i) => i.name === STAGE_IO.logitsFrom) ? 'last' : 'all';
}

/**
 * [B, S, d] → [B, R, d]: each row's positions from logits_from on, the ones
 * whose logits are read: its last (−1), or all (0). In a batched decode step
 * every row is one position (step-batch.ts), so it is that row's step
 * whatever the row's cache holds.
 */
function headRows(g: GraphBuilder, x: string): string {
  return g.op('Slice', [x, STAGE_IO.logitsFrom, g.ints([Number.MAX_SAFE_INTEGER]), g.ints([1])]);
}

/**
 * The last stage's LM head on normed hidden states [B, S, d], writing the
 * logits output, in the stage's precision: on the positions logits_from
 * names, or on every position if `head` is 'all'.
 */
export function lmHead(
  g: GraphBuilder,
  w: WeightReader,
  cfg: ModelConfig,
  normed: string,
  precision: WeightPrecision,
  head: HeadPositions = 'last',
): string {
  const d = cfg.hiddenSize;
  const rows = head === 'last' ? headRows(g, normed) : normed;
  const headName = cfg.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
  const weight = w.get(headName, [cfg.vocabSize, d]);
  return matMulWeight(g, rows, 'lm_head.transposed', weight.data, cfg.vocabSize, d, precision, STAGE_IO.logits);
}

/** A stage graph's description (its doc string). */
export function stageDoc(stage: StageSpec, form = ''): string {
  return `webswarm stage ${stage.index + 1}/${stage.count}${form}, layers [${stage.layers.start}, ${stage.layers.end})`;
}

/**
 * Builds the ONNX graph of one stage straight from the checkpoint's weights.
 * Positions come from the length of the first layer's past keys, so the same
 * graph serves the prompt (past length 0) and every decoding step.
 */
export function buildStageGraph(
  cfg: ModelConfig,
  w: WeightReader,
  stage: StageSpec,
  precision: WeightPrecision = 'f32',
  options: StageBuildOptions = {},
): Uint8Array {
  const head = options.head ?? 'last';
  const g = new GraphBuilder();
  const first = stage.index === 0;
  const last = stage.index === stage.count - 1;
  const d = cfg.hiddenSize;
  const hd = cfg.headDim;

  let x: string;
  let seqLen: string;
  if (first) {
    x = embedTokens(g, w, cfg, precision);
    seqLen = g.op('Gather', [g.op('Shape', [STAGE_IO.inputIds]), g.ints([1], true)], { axis: 0 });
  } else {
    x = STAGE_IO.hiddenIn;
    seqLen = g.op('Gather', [g.op('Shape', [STAGE_IO.hiddenIn]), g.ints([1], true)], { axis: 0 });
  }
  const pastLen = g.op('Gather', [g.op('Shape', [STAGE_IO.pastKey(stage.layers.start)]), g.ints([2], true)], { axis: 0 });
  const totalLen = g.op('Add', [pastLen, seqLen]);
  const positions = g.op('Range', [pastLen, totalLen, g.ints([1], true)]);

  // Rotary tables [S, hd]; inverse frequencies as transformers computes them, rope_scaling included.
  const invFreq = ropeInverseFrequencies(cfg);
  const freqs = g.op('Mul', [
    g.op('Unsqueeze', [g.op('Cast', [positions], { to: 1 }), g.ints([1])]),
    g.weight('rope.inv_freq', [1, hd / 2], invFreq),
  ]);
  const emb = g.op('Concat', [freqs, freqs], { axis: -1 });
  const cos = g.op('Cos', [emb]);
  const sin = g.op('Sin', [emb]);

  // Causal mask [S, T]: query i (at position past+i) sees keys 0..past+i.
  const keyPos = g.op('Range', [g.ints([0], true), totalLen, g.ints([1], true)]);
  const future = g.op('Greater', [g.op('Unsqueeze', [keyPos, g.ints([0])]), g.op('Unsqueeze', [positions, g.ints([1])])]);
  const mask = g.op('Where', [future, g.float(-3.4028234663852886e38), g.float(0)]);

  for (let l = stage.layers.start; l < stage.layers.end; l++) x = decoderLayer(g, w, cfg, l, x, cos, sin, mask, precision);

  if (last) {
    lmHead(g, w, cfg, rmsNorm(g, w, x, 'model.norm.weight', d, cfg.rmsNormEps), precision, head);
  } else {
    g.op('Identity', [x], {}, STAGE_IO.hiddenOut);
  }
  return g.toBytes(`stage_${stage.index}`, stageInputs(cfg, stage, head), stageOutputs(cfg, stage, head), stageDoc(stage));
}
