/** What the GPU benches share: the weights they build stages of, the hidden states they feed. */
import { WEIGHT_PRECISIONS, type WeightPrecision } from '../../shared/model/quantize.js';

/** BENCH_GPU_WEIGHTS: the stages' weight precision (f32 where unset). */
export function benchWeights(): WeightPrecision {
  const raw = process.env.BENCH_GPU_WEIGHTS;
  if (raw === undefined || raw === '') return 'f32';
  const w = WEIGHT_PRECISIONS.find((p) => p === raw);
  if (w === undefined) throw new RangeError(`BENCH_GPU_WEIGHTS must be one of ${WEIGHT_PRECISIONS.join(', ')}, not ${JSON.stringify(raw)}`);
  return w;
}

/** A seeded stream of uniform numbers in [-1, 1): the probes' hidden states, the same in every session and run. */
export function seededUniform(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return (s / 2 ** 31) * 2 - 1;
  };
}
