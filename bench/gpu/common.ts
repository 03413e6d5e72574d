/** What the GPU benches share: the weights they build stages of, the hidden states they feed. */
import { WEIGHT_PRECISIONS, type WeightPrecision } from '../../shared/model/quantize.js';
import { envChoices } from '../env.js';

/** BENCH_GPU_WEIGHTS: the stages' weight precision (f32 where unset). */
export function benchWeights(): WeightPrecision {
  const [w, ...more] = envChoices<WeightPrecision>('BENCH_GPU_WEIGHTS', WEIGHT_PRECISIONS, ['f32']);
  if (w === undefined || more.length > 0)
    throw new RangeError('BENCH_GPU_WEIGHTS: one precision a run (device.sh: DEVICE_WEIGHTS for several)');
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
