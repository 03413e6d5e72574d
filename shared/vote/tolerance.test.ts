import { describe, expect, it } from 'vitest';
import { agrees, maxAbsDifference, RELATIVE_TOLERANCE } from './tolerance.js';

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

  it('never agrees with NaN, infinities or another length', () => {
    expect(agrees(new Float32Array([Number.NaN, -20, 3]), b)).toBe(false);
    expect(agrees(new Float32Array([Number.POSITIVE_INFINITY, -20, 3]), b)).toBe(false);
    expect(agrees(new Float32Array([0.5, -20]), b)).toBe(false);
    expect(maxAbsDifference([1], [1, 2])).toBe(Number.POSITIVE_INFINITY);
  });
});
