import { describe, expect, it } from 'vitest';
import { argmax, GREEDY, randomAt, type SamplingParams, sampleToken, samplingError, seededRandom } from './sampling.js';

const logits = new Float32Array([1, 3, 2.5, -1, 3, 0]);

function draws(p: SamplingParams, n: number): number[] {
  const r = seededRandom(p.seed);
  return Array.from({ length: n }, () => sampleToken(logits, p, r));
}

describe('sampling', () => {
  it('greedy takes the first of the largest logits', () => {
    expect(argmax(logits)).toBe(1);
    expect(sampleToken(logits, GREEDY, () => 0.99)).toBe(1);
  });

  it('is reproducible for a seed and differs between seeds', () => {
    const p = { temperature: 1, topK: 0, topP: 1, seed: 42 };
    expect(draws(p, 50)).toEqual(draws(p, 50));
    expect(draws(p, 50)).not.toEqual(draws({ ...p, seed: 43 }, 50));
  });

  it("randomAt(seed, t) is the stream's t-th draw: a step's number is known from (seed, step) alone (the mesh loop, roll-backs)", () => {
    for (const seed of [0, 1, 42, 0xffffffff, 0x9e3779b9]) {
      const r = seededRandom(seed);
      for (let t = 0; t < 300; t++) expect(randomAt(seed, t)).toBe(r());
    }
    expect(randomAt(7, 3)).not.toBe(randomAt(8, 3));
  });

  it('top-k keeps only the k most likely tokens', () => {
    const seen = new Set(draws({ temperature: 5, topK: 2, topP: 1, seed: 1 }, 300));
    expect([...seen].sort()).toEqual([1, 4]);
  });

  it('top-p keeps the smallest set that reaches p', () => {
    // softmax of [1, 3, 2.5, -1, 3, 0]: one 3 holds ≈ 0.36, both 3s ≈ 0.71, with 2.5 ≈ 0.93.
    expect(new Set(draws({ temperature: 1, topK: 0, topP: 0.3, seed: 3 }, 300))).toEqual(new Set([1]));
    expect(new Set(draws({ temperature: 1, topK: 0, topP: 0.5, seed: 3 }, 300))).toEqual(new Set([1, 4]));
    expect(new Set(draws({ temperature: 1, topK: 0, topP: 0.75, seed: 3 }, 300))).toEqual(new Set([1, 4, 2]));
  });

  it('follows the distribution at temperature 1', () => {
    const n = 4000;
    const counts = new Map<number, number>();
    for (const t of draws({ temperature: 1, topK: 0, topP: 1, seed: 9 }, n)) counts.set(t, (counts.get(t) ?? 0) + 1);
    const z = Array.from(logits).reduce((a, b) => a + Math.exp(b), 0);
    expect((counts.get(2) ?? 0) / n).toBeCloseTo(Math.exp(2.5) / z, 1);
  });

  it('names bad settings', () => {
    expect(samplingError({ ...GREEDY, temperature: -1 })).toMatch(/temperature/);
    expect(samplingError({ ...GREEDY, topP: 0 })).toMatch(/top_p/);
    expect(samplingError({ ...GREEDY, topK: 1.5 })).toMatch(/top_k/);
    expect(samplingError({ ...GREEDY, seed: -3 })).toMatch(/seed/);
    expect(samplingError(GREEDY)).toBeNull();
  });
});
