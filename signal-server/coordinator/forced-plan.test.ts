import { describe, expect, it } from 'vitest';
import { ForcedPlan } from './forced-plan.js';

describe('ForcedPlan', () => {
  it('no given tokens: step 0 feeds the prompt, every step samples, one row each', () => {
    const p = new ForcedPlan([5, 6, 7], []);
    expect(p.steps).toBe(0);
    expect(p.chunked).toBe(false);
    expect(p.input(0)).toEqual([5, 6, 7]);
    expect(p.input(1, 9)).toEqual([9]);
    expect(() => p.input(1)).toThrow(RangeError);
    expect(p.rows(0)).toBe(1);
    expect(() => p.targets(0)).toThrow(RangeError);
  });

  it('a given token a step (chunk 1): step s feeds forced[s − 1] and scores forced[s]', () => {
    const p = new ForcedPlan([1], [2, 3, 4]);
    expect(p.steps).toBe(3);
    expect([0, 1, 2, 3].map((s) => p.input(s))).toEqual([[1], [2], [3], [4]]);
    expect([0, 1, 2].map((s) => p.targets(s))).toEqual([[2], [3], [4]]);
    expect([0, 1, 2, 3].map((s) => p.rows(s))).toEqual([1, 1, 1, 1]);
  });

  it('chunks of 3: every given token but the last in chunks, each row scoring the token after its position; the last fed alone', () => {
    // Prompt 10 11 | given 12 … 19: step 0 scores 12; chunks [12 13 14] [15 16 17] [18] score 13 … 19; step 4 feeds 19.
    const p = new ForcedPlan([10, 11], [12, 13, 14, 15, 16, 17, 18, 19], 1, 3);
    expect(p.steps).toBe(4);
    expect(p.chunked).toBe(true);
    expect([0, 1, 2, 3, 4].map((s) => p.input(s))).toEqual([[10, 11], [12, 13, 14], [15, 16, 17], [18], [19]]);
    expect([0, 1, 2, 3, 4].map((s) => p.rows(s))).toEqual([1, 3, 3, 1, 1]);
    expect([0, 1, 2, 3].map((s) => p.targets(s))).toEqual([[12], [13, 14, 15], [16, 17, 18], [19]]);
    expect(p.input(5, 42)).toEqual([42]);
  });

  it('the prompt in rows at step 0, then chunks: every given token scored once, in order, and each step a row per target', () => {
    for (const chunk of [1, 2, 3, 4, 7, 100])
      for (let given = 1; given <= 9; given++) {
        const prompt = [100, 101, 102];
        const forced = Array.from({ length: given }, (_, i) => 200 + i);
        const p = new ForcedPlan(prompt, forced, 3, chunk);
        const scored = Array.from({ length: p.steps }, (_, s) => {
          expect(p.targets(s).length, `chunk ${chunk}, given ${given}, step ${s}`).toBe(p.rows(s));
          return p.targets(s);
        }).flat();
        expect(scored).toEqual([101, 102, ...forced]);
        // What the steps feed, the prompt's and the given tokens in order, each once.
        expect(Array.from({ length: p.steps + 1 }, (_, s) => p.input(s)).flat()).toEqual([...prompt, ...forced]);
        expect(p.steps).toBe(1 + Math.ceil((given - 1) / chunk));
        expect(p.rows(p.steps)).toBe(1);
      }
  });

  it('refuses a chunk below 1, and rows at step 0 without a prompt of as many tokens and given tokens after it', () => {
    expect(() => new ForcedPlan([1], [2], 1, 0)).toThrow(/chunk/);
    expect(() => new ForcedPlan([1], [2], 1, 1.5)).toThrow(/chunk/);
    expect(() => new ForcedPlan([1, 2, 3], [4], 2)).toThrow(/rows/);
    expect(() => new ForcedPlan([1, 2, 3], [], 3)).toThrow(/rows/);
  });
});
