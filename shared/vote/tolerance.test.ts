import { describe, expect, it } from 'vitest';
import { agreeByPasses } from '../../testing/reference-rules.js';
import { argmax, seededRandom } from '../model/sampling.js';
import { agrees, agreesByRows, maxAbs, maxAbsDifference, RELATIVE_TOLERANCE } from './tolerance.js';

describe('tolerance', () => {
  const b = new Float32Array([0.5, -20, 3]);

  it('accepts backend rounding, scaled by the largest value', () => {
    // 20 · 1e-3 = 0.02 is the allowed spread here.
    expect(agrees(new Float32Array([0.51, -20.01, 3]), b)).toBe(true);
    expect(agrees(new Float32Array([0.5, -20, 3.03]), b)).toBe(false);
  });

  it('uses an absolute floor of 1e-3 for small tensors', () => {
    const small = new Float32Array([1e-4, -2e-4]);
    expect(agrees(new Float32Array([9e-4, 0]), small)).toBe(true);
    expect(agrees(new Float32Array([2e-3, 0]), small)).toBe(false);
    expect(RELATIVE_TOLERANCE).toBe(1e-3);
  });

  it('is the same both ways round, held to the smaller of the two scales', () => {
    // 0.1001 apart: within 1e-3 of 100.1001's scale, not of 100's. Which came first does not matter, and an answer
    // that inflates its own largest value does not widen the tolerance it is held to.
    const x = [100, 1];
    const y = [100.1001, 1];
    expect(agrees(x, y)).toBe(false);
    expect(agrees(y, x)).toBe(false);
    expect(agrees([100.0999, 1], x)).toBe(true);
    expect(agrees(x, [100.0999, 1])).toBe(true);
    expect(agreesByRows([1, 5000], [1.9, 2], 2)).toBe(false);
    expect(agreesByRows([1, 2], [1.9, 5000], 2)).toBe(false);
  });

  it('never agrees with NaN, infinities or another length', () => {
    expect(agrees(new Float32Array([Number.NaN, -20, 3]), b)).toBe(false);
    expect(agrees(new Float32Array([Number.POSITIVE_INFINITY, -20, 3]), b)).toBe(false);
    expect(agrees(new Float32Array([0.5, -20]), b)).toBe(false);
    expect(maxAbsDifference([1], [1, 2])).toBe(Number.POSITIVE_INFINITY);
  });

  it('in one pass, says what the rule and a most likely entry per row say, on random rows near the bound', () => {
    // The rule as written above (two passes) and argmax per row: the oracle of the one-pass version.
    const oracle = (a: Float32Array, b: Float32Array, row: number) => agreeByPasses(row)(a, b);
    const random = seededRandom(7);
    const seen = { agree: 0, disagree: 0, argmax: 0 };
    for (let trial = 0; trial < 600; trial++) {
      const row = 1 + Math.floor(random() * 9);
      const rows = 1 + Math.floor(random() * 3);
      const b = Float32Array.from({ length: row * rows }, () => (random() - 0.5) * 40);
      // A spread around the bound (20 · 1e-3 here), ties for the top, a value that is not finite, a length off.
      const spread = random() * 0.04;
      const a = b.map((v) => v + (random() - 0.5) * spread);
      if (trial % 3 === 0 && row > 1) {
        // A row whose top two are 0.008 apart in b and swapped in a: within the tolerance, another most likely entry.
        const at = Math.floor(random() * rows) * row;
        const top = at + argmax(b.subarray(at, at + row));
        const other = top === at ? at + 1 : at;
        b[other] = (b[top] as number) - 0.004;
        a[top] = b[top] as number;
        a[other] = (b[top] as number) + 0.004;
      }
      if (trial % 53 === 0) a[0] = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY][trial % 3] as number;
      const other = trial % 61 === 0 ? a.subarray(1) : a;
      const want = oracle(other, b, row);
      expect(agreesByRows(other, b, row), `trial ${trial}`).toBe(want);
      expect(agreesByRows(other, b, 0), `trial ${trial}, no rows`).toBe(
        other.length === b.length && maxAbsDifference(other, b) <= RELATIVE_TOLERANCE * Math.max(1, Math.min(maxAbs(other), maxAbs(b))),
      );
      if (want) seen.agree += 1;
      else if (agrees(other, b)) seen.argmax += 1;
      else seen.disagree += 1;
    }
    // Each outcome came up: agreeing, out of tolerance, and within tolerance but another most likely entry.
    expect(Math.min(seen.agree, seen.disagree, seen.argmax)).toBeGreaterThan(20);
  });
});
