/**
 * The largest single buffer each part of a model puts on a volunteer, as its
 * stage graph holds it (stage-graph.ts, stage-graph-fused.ts, weight-nodes.ts):
 * what a WebGPU adapter's maxBufferSize / maxStorageBufferBindingSize must
 * admit. The checkpoint stores bf16 or f32; the graph holds otherwise:
 * - a Linear weight [out, in]: float32 at f32 and at f16 (the Cast of a float16
 *   initializer is folded into a float32 one when the session is created), one
 *   byte a weight at q8, half a byte at q4 (MatMulNBits keeps it packed);
 * - the fused form packs q, k and v into one weight: their sum is one buffer;
 * - the embedding table: float32 at f32/f16, 8-bit at q8 and q4;
 * - the head: the lm_head weight, or the embedding again where they are tied,
 *   as a Linear weight;
 * - each layer's past keys (and values): [1, kvHeads, maxPositions, headDim]
 *   float32 at full context, one session's (a batch of sessions stacks them);
 * - the logits: one row, [1, 1, vocab] float32 a session, the head running on
 *   the last position only (lmHead in stage-graph.ts). On every position it
 *   was [1, P, vocab], past any adapter's limit on a long prompt (2048 × 49152
 *   × 4 B = 400 MB for SmolLM's vocabulary); one row is smaller than the
 *   head's weight, so it is the largest only where the head is not counted.
 * Norms and biases are float32 vectors, never the largest.
 */
import type { ModelConfig } from '../../shared/model/config.js';
import type { WeightPrecision } from '../../shared/model/quantize.js';
import type { GraphForm } from '../../shared/model/stage-graph-fused.js';
import type { TensorDigest } from '../../shared/model/tensor-index.js';

/** How the stages hold their weights: the manifest's model, precision and graph form. */
export interface HeldForm {
  readonly model: ModelConfig;
  readonly weights: WeightPrecision;
  readonly graph: GraphForm;
}

const LINEAR_BYTES_PER_WEIGHT: Record<WeightPrecision, number> = { f32: 4, f16: 4, q8: 1, q4: 0.5 };
const EMBEDDING_BYTES_PER_WEIGHT: Record<WeightPrecision, number> = { f32: 4, f16: 4, q8: 1, q4: 1 };

function elements(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Bytes of a Linear weight of `n` weights as the graph holds it. */
export function linearHeldBytes(n: number, weights: WeightPrecision): number {
  return Math.ceil(n * LINEAR_BYTES_PER_WEIGHT[weights]);
}

/** One layer's past keys (or values) at full context, float32. */
export function kvHeldBytes(model: ModelConfig): number {
  return model.numKvHeads * model.maxPositions * model.headDim * 4;
}

/** The last stage's logits: one row of float32 for one session (the head runs on the last position only). */
export function logitsHeldBytes(model: ModelConfig): number {
  return model.vocabSize * 4;
}

/** The largest buffer of each layer, of the first stage's own part (the embedding) and of the last's (the head). */
export function largestHeldBuffers(
  tensors: readonly TensorDigest[],
  numLayers: number,
  form: HeldForm,
): { layers: number[]; first: number; last: number } {
  const kv = kvHeldBytes(form.model);
  const layers = new Array<number>(numLayers).fill(kv);
  const packedQkv = new Array<number>(numLayers).fill(0);
  let embedding = 0;
  let head = logitsHeldBytes(form.model);
  for (const t of tensors) {
    const n = elements(t.shape);
    const layer = /^model\.layers\.(\d+)\.(.*)$/.exec(t.name);
    if (layer !== null) {
      const i = Number(layer[1]);
      if (i >= numLayers || t.shape.length !== 2) continue;
      if (form.graph === 'fused' && /^self_attn\.[qkv]_proj\.weight$/.test(layer[2] as string)) packedQkv[i] = (packedQkv[i] as number) + n;
      else layers[i] = Math.max(layers[i] as number, linearHeldBytes(n, form.weights));
    } else if (t.name === 'model.embed_tokens.weight') {
      embedding = Math.ceil(n * EMBEDDING_BYTES_PER_WEIGHT[form.weights]);
      if (form.model.tieWordEmbeddings) head = Math.max(head, linearHeldBytes(n, form.weights));
    } else if (t.name === 'lm_head.weight' && !form.model.tieWordEmbeddings) head = Math.max(head, linearHeldBytes(n, form.weights));
  }
  for (let i = 0; i < numLayers; i++) layers[i] = Math.max(layers[i] as number, linearHeldBytes(packedQkv[i] as number, form.weights));
  return { layers, first: embedding, last: head };
}
