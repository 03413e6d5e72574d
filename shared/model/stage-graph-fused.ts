// The second form of a stage graph, from the same builder: onnxruntime's fused
// contrib operators, which its WebGPU and CPU (WASM) execution providers
// implement, instead of some thirty plain operators per layer. The plain form
// (stage-graph.ts) stays the reference this one is tested against.
//
// Per layer: SimplifiedLayerNormalization (the first) or
// SkipSimplifiedLayerNormalization (the residual add and the norm in one),
// one MatMul for q, k and v packed, GroupQueryAttention with the rotary
// positions inside it (do_rotary, from precomputed cos/sin tables), and the
// SwiGLU MLP. Positions come in as int32 inputs (seqlens_k and
// total_sequence_length), never from int64 shape arithmetic, so nothing of a
// stage falls back to the CPU on WebGPU.
//
// The KV cache is a buffer whose length can exceed the positions it holds:
// GroupQueryAttention reads the first seqlens_k + 1 − S positions of
// past.*, writes the S new ones after them and returns present.* of length
// max(buffer, total). So a roll-back only lowers the count fed next time:
// the stale tail is overwritten, never read, and no tensor moves.
//
// Each layer also outputs the key and value it wrote at each row's last
// position (new.<layer>.key / .value, [B, kvHeads, 1, headDim]): a caller
// that keeps the cache in a buffer of its own (shared/model/kv-slab.ts)
// fetches those instead of present.*, which onnxruntime-web would copy out of
// its WebAssembly memory whole, every step. Fetched only when asked for.
import type { ModelConfig } from './config.js';
import { ModelError } from './errors.js';
import { GraphBuilder, MS_DOMAIN, type ValueSpec } from './onnx-graph.js';
import type { WeightPrecision } from './quantize.js';
import {
  embedTokens,
  type HeadPositions,
  type LayerRange,
  linear,
  lmHead,
  ropeInverseFrequencies,
  STAGE_IO,
  type StageBuildOptions,
  type StageSpec,
  stageDoc,
  stageInputs,
  stageOutputs,
} from './stage-graph.js';
import { matMulWeight } from './weight-nodes.js';
import { layerWeightNames, type WeightReader } from './weights.js';

/** The two forms of a stage graph: plain ONNX operators (the reference) or onnxruntime's fused ones. */
export type GraphForm = 'plain' | 'fused';
export const GRAPH_FORMS: readonly GraphForm[] = ['plain', 'fused'];

/** The fused form's position inputs (int32): per sequence, total length − 1; and the batch's largest total length. */
export const FUSED_IO = {
  seqlensK: 'seqlens_k',
  totalSequenceLength: 'total_sequence_length',
  /** The key each row's step wrote at its last position (seqlens_k): [B, kvHeads, 1, headDim]. */
  newKey: (layer: number) => `new.${layer}.key`,
  /** The value each row's step wrote at its last position. */
  newValue: (layer: number) => `new.${layer}.value`,
} as const;

/** The fused form's outputs: the plain form's, then each layer's new.key and new.value. */
export function fusedStageOutputs(cfg: ModelConfig, stage: StageSpec, head: HeadPositions = 'last'): ValueSpec[] {
  const out = stageOutputs(cfg, stage, head);
  for (let l = stage.layers.start; l < stage.layers.end; l++) {
    for (const name of [FUSED_IO.newKey(l), FUSED_IO.newValue(l)])
      out.push({ name, dtype: 'float32', shape: ['batch', cfg.numKvHeads, 1, cfg.headDim] });
  }
  return out;
}

export function fusedStageInputs(cfg: ModelConfig, stage: StageSpec, head: HeadPositions = 'last'): ValueSpec[] {
  return [
    ...stageInputs(cfg, stage, head),
    { name: FUSED_IO.seqlensK, dtype: 'int32', shape: ['batch'] },
    { name: FUSED_IO.totalSequenceLength, dtype: 'int32', shape: [] },
  ];
}

/** Rotary tables [maxPositions, hd/2] for GroupQueryAttention's do_rotary: cos and sin of position · inverse frequency, in float32. */
function rotaryTables(cfg: ModelConfig): { cos: Float32Array; sin: Float32Array } {
  const half = cfg.headDim / 2;
  const invFreq = ropeInverseFrequencies(cfg);
  const cos = new Float32Array(cfg.maxPositions * half);
  const sin = new Float32Array(cfg.maxPositions * half);
  for (let p = 0; p < cfg.maxPositions; p++) {
    for (let i = 0; i < half; i++) {
      // The plain graph multiplies in float32 (Cast(position) · inv_freq), then takes cos and sin.
      const angle = Math.fround(p * (invFreq[i] as number));
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

/** q, k and v projections as one MatMul: weights [d, qDim + 2·kvDim] (and biases) packed in that order. */
function packedQkv(g: GraphBuilder, w: WeightReader, cfg: ModelConfig, l: number, x: string, precision: WeightPrecision): string {
  const n = layerWeightNames(l);
  const d = cfg.hiddenSize;
  const qDim = cfg.numHeads * cfg.headDim;
  const kvDim = cfg.numKvHeads * cfg.headDim;
  const out = qDim + 2 * kvDim;
  const rows = new Float32Array(out * d);
  rows.set(w.get(n.q, [qDim, d]).data, 0);
  rows.set(w.get(n.k, [kvDim, d]).data, qDim * d);
  rows.set(w.get(n.v, [kvDim, d]).data, (qDim + kvDim) * d);
  let y = matMulWeight(g, x, `model.layers.${l}.self_attn.qkv_proj.packed`, rows, out, d, precision);
  if (cfg.qkvBias) {
    const bias = new Float32Array(out);
    bias.set(w.get(n.qBias, [qDim]).data, 0);
    bias.set(w.get(n.kBias, [kvDim]).data, qDim);
    bias.set(w.get(n.vBias, [kvDim]).data, qDim + kvDim);
    y = g.op('Add', [y, g.weight(`model.layers.${l}.self_attn.qkv_proj.bias_packed`, [out], bias)]);
  }
  return y;
}

function normWeight(g: GraphBuilder, w: WeightReader, name: string, d: number): string {
  return g.weight(name, [d], w.get(name, [d]).data);
}

/** (residual + delta) and its RMSNorm in one operator; returns [normed, sum]. */
function skipNorm(g: GraphBuilder, w: WeightReader, cfg: ModelConfig, residual: string, delta: string, weight: string): [string, string] {
  const [normed, , , sum] = g.opN(
    'SkipSimplifiedLayerNormalization',
    [residual, delta, normWeight(g, w, weight, cfg.hiddenSize)],
    [null, '', '', null],
    { epsilon: { float: cfg.rmsNormEps } },
    MS_DOMAIN,
  );
  return [normed as string, sum as string];
}

/** Why this model has no fused form (onnxruntime's GroupQueryAttention kernels), or null when it has one. */
export function fusedFormProblem(cfg: ModelConfig): string | null {
  // onnxruntime's CPU kernel: "head_size shall be a multiple of 16".
  if (cfg.headDim % 16 !== 0) return `head_dim ${cfg.headDim} is not a multiple of 16, which GroupQueryAttention needs`;
  return null;
}

/**
 * Builds the fused-operator graph of one stage. Same inputs and outputs as
 * the plain graph, plus the two int32 position inputs of FUSED_IO.
 */
export function buildFusedStageGraph(
  cfg: ModelConfig,
  w: WeightReader,
  stage: StageSpec,
  precision: WeightPrecision = 'f32',
  options: StageBuildOptions = {},
): Uint8Array {
  const head = options.head ?? 'last';
  const problem = fusedFormProblem(cfg);
  if (problem !== null) throw new ModelError('ERR_MODEL_UNSUPPORTED', 'config.json', `no fused stage graphs: ${problem}`);
  const g = new GraphBuilder();
  const first = stage.index === 0;
  const last = stage.index === stage.count - 1;
  const d = cfg.hiddenSize;
  const hd = cfg.headDim;
  const layers: LayerRange = stage.layers;

  const tables = rotaryTables(cfg);
  const cos = g.weight('rope.cos_cache', [cfg.maxPositions, hd / 2], tables.cos);
  const sin = g.weight('rope.sin_cache', [cfg.maxPositions, hd / 2], tables.sin);

  let residual = first ? embedTokens(g, w, cfg, precision) : STAGE_IO.hiddenIn;
  const [firstNormed] = g.opN(
    'SimplifiedLayerNormalization',
    [residual, normWeight(g, w, layerWeightNames(layers.start).inputNorm, d)],
    [null],
    { axis: -1, epsilon: { float: cfg.rmsNormEps } },
  );
  let normed = firstNormed as string;
  // Where each row's step wrote its last position along present.*'s axis 2: seqlens_k as [B, kvHeads, 1, headDim] indices.
  const lastIndex = g.op('Expand', [g.op('Unsqueeze', [FUSED_IO.seqlensK, g.ints([1, 2, 3])]), g.ints([1, cfg.numKvHeads, 1, hd])]);

  for (let l = layers.start; l < layers.end; l++) {
    const n = layerWeightNames(l);
    const qDim = cfg.numHeads * hd;
    const [attn] = g.opN(
      'GroupQueryAttention',
      [
        packedQkv(g, w, cfg, l, normed, precision),
        '',
        '',
        STAGE_IO.pastKey(l),
        STAGE_IO.pastValue(l),
        FUSED_IO.seqlensK,
        FUSED_IO.totalSequenceLength,
        cos,
        sin,
      ],
      [null, STAGE_IO.presentKey(l), STAGE_IO.presentValue(l)],
      {
        num_heads: cfg.numHeads,
        kv_num_heads: cfg.numKvHeads,
        do_rotary: 1,
        rotary_interleaved: 0,
        scale: { float: 1 / Math.sqrt(hd) },
      },
      MS_DOMAIN,
    );
    g.op('GatherElements', [STAGE_IO.presentKey(l), lastIndex], { axis: 2 }, FUSED_IO.newKey(l));
    g.op('GatherElements', [STAGE_IO.presentValue(l), lastIndex], { axis: 2 }, FUSED_IO.newValue(l));
    const o = linear(g, w, attn as string, n.o, d, qDim, precision, cfg.oBias ? n.oBias : undefined);
    const [h2, x2] = skipNorm(g, w, cfg, residual, o, n.postNorm);
    const gate = linear(g, w, h2, n.gate, cfg.intermediateSize, d, precision);
    const up = linear(g, w, h2, n.up, cfg.intermediateSize, d, precision);
    const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]);
    const mlp = linear(g, w, act, n.down, d, cfg.intermediateSize, precision);
    if (l + 1 < layers.end) {
      [normed, residual] = skipNorm(g, w, cfg, x2, mlp, layerWeightNames(l + 1).inputNorm);
    } else if (last) {
      lmHead(g, w, cfg, skipNorm(g, w, cfg, x2, mlp, 'model.norm.weight')[0], precision, head);
    } else {
      g.op('Add', [x2, mlp], {}, STAGE_IO.hiddenOut);
    }
  }
  return g.toBytes(
    `stage_${stage.index}`,
    fusedStageInputs(cfg, stage, head),
    fusedStageOutputs(cfg, stage, head),
    stageDoc(stage, ' (fused)'),
  );
}
