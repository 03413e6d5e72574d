import { describe, expect, it } from 'vitest';
import { argmax, seededRandom } from '../../shared/model/sampling.js';
import { expandTopLogits, MIN_TOP_LOGITS, topLogitsOf, topParts } from '../../shared/vote/top-logits.js';
import { LOGPROB_FLOOR, logSoftmax, tokenLogprob, topIndices } from './logprobs.js';

/** Independently: log(exp(x_i) / Σ_j exp(x_j)), term by term, for logits small enough not to overflow. */
function naiveLogSoftmax(x: readonly number[]): number[] {
  const total = x.reduce((s, v) => s + Math.exp(v), 0);
  return x.map((v) => Math.log(Math.exp(v) / total));
}

function randomLogits(seed: number, n: number, scale: number): Float32Array {
  const r = seededRandom(seed);
  return Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale);
}

describe('logSoftmax', () => {
  it('equals log(softmax) computed term by term, to float64 precision', () => {
    for (const seed of [1, 2, 3, 42, 1234]) {
      const logits = randomLogits(seed, 512, 8);
      const got = logSoftmax(logits);
      const want = naiveLogSoftmax([...logits]);
      for (let i = 0; i < logits.length; i++) expect(Math.abs((got[i] as number) - (want[i] as number))).toBeLessThan(1e-12);
    }
  });

  it('stays exact where exp would overflow: [1000, 1001] gives -log(1 + e) and -log(1 + 1/e)', () => {
    const got = logSoftmax(Float32Array.from([1000, 1001]));
    expect(got[0]).toBeCloseTo(-Math.log1p(Math.E), 12);
    expect(got[1]).toBeCloseTo(-Math.log1p(Math.exp(-1)), 12);
  });

  it('sums to probability 1 over a vocabulary of float32 logits', () => {
    const got = logSoftmax(randomLogits(7, 2048, 20));
    expect(got.reduce((s, v) => s + Math.exp(v), 0)).toBeCloseTo(1, 12);
  });

  it('gives impossible tokens -Infinity and leaves them out of the sum', () => {
    const got = logSoftmax(Float32Array.from([0, Number.NEGATIVE_INFINITY, Number.NaN, 0]));
    expect([...got]).toEqual([-Math.LN2, Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY, -Math.LN2]);
  });
});

describe('topIndices', () => {
  it('equals sorting all indices by value (ties to the lower index), for every k', () => {
    for (const seed of [5, 6, 7]) {
      const r = seededRandom(seed);
      // Few distinct values: many ties.
      const values = Array.from({ length: 300 }, () => Math.floor(r() * 12));
      const sorted = values.map((_, i) => i).sort((a, b) => (values[b] as number) - (values[a] as number) || a - b);
      for (const k of [0, 1, 2, 5, 20, 299, 300, 400]) expect(topIndices(values, k)).toEqual(sorted.slice(0, k));
    }
  });
});

describe('tokenLogprob', () => {
  it('gives the greedy token the highest log-probability, first among the top', () => {
    const logits = randomLogits(9, 2048, 10);
    const greedy = argmax(logits);
    const lp = tokenLogprob(logits, greedy, 5);
    expect(lp.top[0]?.token).toBe(greedy);
    expect(lp.logprob).toBe(lp.top[0]?.logprob);
    expect(lp.top.map((t) => t.logprob)).toEqual([...lp.top.map((t) => t.logprob)].sort((a, b) => b - a));
    expect(lp.logprob).toBeLessThan(0);
  });

  it('from a top form (its row, the rest −Infinity, and the log-sum-exp) equals the whole row’s, for the top 20', () => {
    for (const seed of [1, 2, 3]) {
      const logits = randomLogits(seed, 49152, 8 + seed);
      const form = topLogitsOf(logits, MIN_TOP_LOGITS);
      const row = expandTopLogits(form, logits.length);
      const whole = tokenLogprob(logits, argmax(logits), 20);
      const top = tokenLogprob(row, argmax(row), 20, topParts(form).logSumExp);
      expect(top.token).toBe(whole.token);
      // The log-sum-exp crosses the wire as float32: 1e-6 of it at most.
      expect(Math.abs(top.logprob - whole.logprob)).toBeLessThan(1e-5);
      expect(top.top.map((t) => t.token)).toEqual(whole.top.map((t) => t.token));
      for (const [i, t] of top.top.entries()) expect(Math.abs(t.logprob - (whole.top[i]?.logprob as number))).toBeLessThan(1e-5);
      // Without it, the row alone would be a distribution over 32 tokens: far off.
      expect(Math.abs(tokenLogprob(row, whole.token, 0).logprob - whole.logprob)).toBeGreaterThan(1);
    }
  });

  it('reports a token without probability as OpenAI does, a finite floor', () => {
    const lp = tokenLogprob(Float32Array.from([0, Number.NEGATIVE_INFINITY]), 1, 2);
    expect(lp.logprob).toBe(LOGPROB_FLOOR);
    expect(lp.top).toEqual([
      { token: 0, logprob: 0 },
      { token: 1, logprob: LOGPROB_FLOOR },
    ]);
  });
});
