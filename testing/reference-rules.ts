// Test and bench helper: the vote's and the sampler's rules written the plain way (what shared/vote and
// shared/model/sampling.ts did until 5e99bc1), the oracle the tests compare the fast code with and the "before"
// that bench/vote-cost.ts times it against. Nothing in the product imports this.
import { adjustedLogits, argmax, type SamplingParams } from '../shared/model/sampling.js';
import type { AgreeFn, Combine } from '../shared/vote/quorum.js';
import { maxAbs, maxAbsDifference, RELATIVE_TOLERANCE } from '../shared/vote/tolerance.js';

/** Rows of `row` values agree: within the tolerance over the whole arrays (two passes), then each row's argmax. */
export function agreeByPasses(row: number): AgreeFn<Float32Array> {
  return (a, b) => {
    if (a.length !== b.length || a.length % row !== 0) return false;
    if (!(maxAbsDifference(a, b) <= RELATIVE_TOLERANCE * Math.max(1, Math.min(maxAbs(a), maxAbs(b))))) return false;
    for (let at = 0; at < a.length; at += row) if (argmax(a.subarray(at, at + row)) !== argmax(b.subarray(at, at + row))) return false;
    return true;
  };
}

/** A majority of identical values whole (every pair compared both ways), else each column sorted and its middle. */
export const medianBySort: Combine<Float32Array> = (values, needed) => {
  const same = (a: Float32Array, b: Float32Array) => a === b || (a.length === b.length && a.every((v, i) => v === b[i]));
  for (const v of values) if (values.filter((w) => same(v, w)).length >= needed) return { value: v, exact: true };
  const first = values[0];
  if (first === undefined) throw new RangeError('nothing to combine');
  const out = new Float32Array(first.length);
  const column = new Float64Array(values.length);
  for (let i = 0; i < first.length; i++) {
    for (const [j, v] of values.entries()) column[j] = v[i] as number;
    column.sort();
    const mid = column.length >> 1;
    out[i] = column.length % 2 === 1 ? (column[mid] as number) : ((column[mid - 1] as number) + (column[mid] as number)) / 2;
  }
  return { value: out, exact: false };
};

/** The sampler by a sort of every finite token's index (most likely first, ties by index), then the cut and the draw in that order. */
export function sampleTokenBySort(
  row: ArrayLike<number>,
  p: SamplingParams,
  random: () => number,
  generated: readonly number[] = [],
): number {
  const logits = adjustedLogits(row, p, generated);
  if (p.temperature === 0) return argmax(logits);
  const order = Array.from({ length: logits.length }, (_, i) => i).filter((i) => Number.isFinite(logits[i] as number));
  if (order.length === 0) throw new Error('no finite logits to sample from');
  order.sort((a, b) => (logits[b] as number) - (logits[a] as number) || a - b);
  const kept = p.topK > 0 ? order.slice(0, p.topK) : order;
  const top = logits[kept[0] as number] as number;
  const weights = kept.map((i) => Math.exp(((logits[i] as number) - top) / p.temperature));
  const total = weights.reduce((a, b) => a + b, 0);
  let cut = kept.length;
  if (p.topP < 1) {
    let acc = 0;
    for (let j = 0; j < kept.length; j++) {
      acc += (weights[j] as number) / total;
      if (acc >= p.topP) {
        cut = j + 1;
        break;
      }
    }
  }
  const mass = weights.slice(0, cut).reduce((a, b) => a + b, 0);
  let r = random() * mass;
  for (let j = 0; j < cut; j++) {
    r -= weights[j] as number;
    if (r < 0) return kept[j] as number;
  }
  return kept[cut - 1] as number;
}
