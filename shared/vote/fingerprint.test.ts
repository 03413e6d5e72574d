import { describe, expect, it } from 'vitest';
import { fingerprint } from './fingerprint.js';
import { agrees } from './tolerance.js';

describe('fingerprint', () => {
  it('samples evenly and ends with the norm', () => {
    expect(fingerprint([3, 4], 2)).toEqual([3, 4, 5]);
    expect(
      fingerprint(
        Float32Array.from({ length: 100 }, (_, i) => i),
        4,
      ).slice(0, 4),
    ).toEqual([0, 25, 50, 75]);
    expect(fingerprint([])).toEqual([0]);
  });

  it('agrees for backend rounding and not for a tampered output', () => {
    const a = Float32Array.from({ length: 4800 }, (_, i) => Math.sin(i) * 4);
    const rounded = a.map((v) => v + 2e-5);
    const tampered = a.map((v, i) => (i % 7 === 0 ? v + 0.5 : v));
    expect(agrees(fingerprint(rounded), fingerprint(a))).toBe(true);
    expect(agrees(fingerprint(tampered), fingerprint(a))).toBe(false);
  });
});
