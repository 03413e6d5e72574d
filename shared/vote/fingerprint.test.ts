import { describe, expect, it } from 'vitest';
import { agreeFingerprints, fingerprint } from './fingerprint.js';

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
    expect(agreeFingerprints(fingerprint(rounded), fingerprint(a))).toBe(true);
    expect(agreeFingerprints(fingerprint(tampered), fingerprint(a))).toBe(false);
    // Noise of ±0.25 on large logits: small next to their norm, but not next to the values.
    const logits = Float32Array.from({ length: 20_000 }, (_, i) => Math.cos(i) * 30);
    const noisy = logits.map((v, i) => v + (i % 2 === 0 ? 0.25 : -0.25));
    expect(agreeFingerprints(fingerprint(noisy), fingerprint(logits))).toBe(false);
    expect(agreeFingerprints([1, Number.NaN], [1, 2])).toBe(false);
  });
});
