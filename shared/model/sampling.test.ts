import { describe, expect, it } from 'vitest';
import { sampleTokenBySort } from '../../testing/reference-rules.js';
import {
  adjustedLogits,
  argmax,
  GREEDY,
  randomAt,
  type SamplingParams,
  sampleToken,
  samplingError,
  seededRandom,
  usesHistory,
} from './sampling.js';

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
    expect(samplingError({ ...GREEDY, temperature: -1 })?.message).toMatch(/temperature/);
    expect(samplingError({ ...GREEDY, topP: 0 })?.message).toMatch(/top_p/);
    expect(samplingError({ ...GREEDY, topK: 1.5 })?.message).toMatch(/top_k/);
    expect(samplingError({ ...GREEDY, seed: -3 })?.message).toMatch(/seed/);
    expect(samplingError(GREEDY)).toBeNull();
    expect(samplingError({ ...GREEDY, logitBias: [[1, 101]] })?.param).toBe('logit_bias');
    expect(samplingError({ ...GREEDY, presencePenalty: 3 })?.param).toBe('presence_penalty');
  });

  it('logit_bias moves the tokens it names, before greedy and before sampling', () => {
    // [1, 3, 2.5, -1, 3, 0]: greedy takes 1; −100 on 1 leaves 4; +100 on 3 forces 3 whatever the draw.
    expect(sampleToken(logits, { ...GREEDY, logitBias: [[1, -100]] }, () => 0.5)).toBe(4);
    expect(sampleToken(logits, { ...GREEDY, logitBias: [[3, 100]] }, () => 0.5)).toBe(3);
    const hot = { temperature: 1, topK: 0, topP: 1, seed: 5 };
    expect(new Set(draws({ ...hot, logitBias: [[3, 100]] }, 200))).toEqual(new Set([3]));
    const banned = new Set(
      draws(
        {
          ...hot,
          logitBias: [
            [1, -100],
            [4, -100],
          ],
        },
        500,
      ),
    );
    expect(banned.has(1) || banned.has(4)).toBe(false);
    expect(banned.size).toBeGreaterThan(1);
  });

  it('penalties count what was generated: frequency once per time, presence once', () => {
    const generated = [1, 1, 2, 5];
    const p = { ...GREEDY, frequencyPenalty: 0.25, presencePenalty: 0.1 };
    const got = Array.from(adjustedLogits(logits, p, generated));
    const want = [1, 3 - 0.5 - 0.1, 2.5 - 0.25 - 0.1, -1, 3, 0 - 0.25 - 0.1];
    for (const [i, v] of got.entries()) expect(v).toBeCloseTo(want[i] as number, 12);
    // Token 1 (generated twice) falls behind 4, which greedy then takes; without a history nothing moves.
    expect(sampleToken(logits, p, () => 0, generated)).toBe(4);
    expect(sampleToken(logits, p, () => 0)).toBe(1);
    // A negative penalty favours repeats.
    expect(sampleToken(logits, { ...GREEDY, presencePenalty: -2 }, () => 0, [3])).toBe(1);
    expect(sampleToken(logits, { ...GREEDY, presencePenalty: -2 }, () => 0, [2])).toBe(2);
  });

  it('leaves the voted row as it is, and returns it unchanged without adjustments', () => {
    const row = Float32Array.from(logits);
    adjustedLogits(row, { ...GREEDY, logitBias: [[0, 50]], frequencyPenalty: 2 }, [1, 1]);
    expect(Array.from(row)).toEqual(Array.from(logits));
    expect(adjustedLogits(row, GREEDY, [1, 2])).toBe(row);
    expect(adjustedLogits(row, { ...GREEDY, frequencyPenalty: 1 }, [])).toBe(row);
  });

  it('says which settings depend on the completion so far (the mesh loop cannot run them)', () => {
    expect(usesHistory(GREEDY)).toBe(false);
    expect(usesHistory({ ...GREEDY, logitBias: [[1, 5]] })).toBe(false);
    expect(usesHistory({ ...GREEDY, frequencyPenalty: 0.1 })).toBe(true);
    expect(usesHistory({ ...GREEDY, presencePenalty: -0.1 })).toBe(true);
  });

  it('names bad penalties and biases', () => {
    expect(samplingError({ ...GREEDY, frequencyPenalty: 2.5 })?.message).toMatch(/^frequency_penalty/);
    expect(samplingError({ ...GREEDY, presencePenalty: Number.NaN })?.message).toMatch(/^presence_penalty/);
    expect(samplingError({ ...GREEDY, logitBias: [[1, 101]] })?.message).toMatch(/^logit_bias: the bias of token 1/);
    expect(samplingError({ ...GREEDY, logitBias: [[1.5, 1]] })?.message).toMatch(/^logit_bias: token id 1.5/);
    expect(
      samplingError({
        ...GREEDY,
        logitBias: [
          [2, 1],
          [2, 3],
        ],
      })?.message,
    ).toMatch(/named once/);
    const many = Array.from({ length: 1025 }, (_, i) => [i, 1] as const);
    expect(samplingError({ ...GREEDY, logitBias: many })?.message).toMatch(/at most 1024/);
    expect(samplingError({ ...GREEDY, logitBias: many.slice(0, 1024), frequencyPenalty: -2, presencePenalty: 2 })).toBeNull();
  });

  it('draws, for every seed and setting, the token the plain rule (a sort of indices) draws', () => {
    const random = seededRandom(5);
    const tried = new Set<string>();
    let differ = 0;
    for (let trial = 0; trial < 400; trial++) {
      // Now and then past RADIX_FROM (4 096), where float32 rows are sorted by radix.
      const n = trial % 10 === 0 ? 4097 + Math.floor(random() * 3000) : 1 + Math.floor(random() * 600);
      // Few distinct values (ties, −0 and +0), now and then NaN and infinities; a peaked or a flat row.
      const scale = trial % 2 === 0 ? 0.25 : 3;
      const row = Float32Array.from({ length: n }, () => Math.round((random() - 0.5) * 16) * scale);
      if (trial % 5 === 0) row[Math.floor(random() * n)] = -0;
      if (trial % 7 === 0)
        row[Math.floor(random() * n)] = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY][trial % 3] as number;
      const p: SamplingParams = {
        temperature: [0.05, 0.7, 1, 2.5][trial % 4] as number,
        topK: [0, 1, 5, 40, 1000][trial % 5] as number,
        topP: [1, 0.9, 0.5, 0.01][Math.floor(trial / 4) % 4] as number,
        seed: trial,
        ...(trial % 6 === 0 ? { logitBias: [[0, 2.5]] as const, frequencyPenalty: 0.5, presencePenalty: -0.25 } : {}),
      };
      const generated = trial % 6 === 0 ? [0, 1, 1] : [];
      const fast = seededRandom(trial);
      const plain = seededRandom(trial);
      for (let draw = 0; draw < 8; draw++) {
        const want = Number.isFinite(Math.max(...row.filter(Number.isFinite), Number.NEGATIVE_INFINITY))
          ? sampleTokenBySort(row, p, plain, generated)
          : null;
        const got = want === null ? null : sampleToken(row, p, fast, generated);
        expect(got, `trial ${trial}, draw ${draw}`).toBe(want);
        tried.add(`${p.topK > 0}/${p.topP < 1}`);
        if (want !== null && want !== argmax(row)) differ += 1;
      }
    }
    // Every kind of cut came up, and the draws were not all the most likely token.
    expect(tried.size).toBe(4);
    expect(differ).toBeGreaterThan(500);
    // A row with nothing finite is refused by both.
    const none = new Float32Array([Number.NaN, Number.POSITIVE_INFINITY]);
    const p = { ...GREEDY, temperature: 1 };
    expect(() => sampleToken(none, p, () => 0.5)).toThrow(/no finite logits/);
    expect(() => sampleTokenBySort(none, p, () => 0.5)).toThrow(/no finite logits/);
  });
});
