import { describe, expect, it } from 'vitest';
import { randomAt, type SamplingParams, sampleToken, seededRandom } from '../model/sampling.js';
import { parseLogits } from '../protocol/validate.js';
import { RELATIVE_TOLERANCE } from './tolerance.js';
import {
  agreedTokens,
  agreeScoredForms,
  agreeTopLogits,
  expandScoredRow,
  expandTopLogits,
  MAX_TOP_LOGITS,
  MIN_TOP_LOGITS,
  medianOfScored,
  medianOfTop,
  SCORED_ROW_LENGTH,
  SCORED_TOP,
  scoredFormsOf,
  scoredFormsProblem,
  TOP_MARGIN,
  topLogitsFor,
  topLogitsLength,
  topLogitsOf,
  topLogitsProblem,
  topParts,
} from './top-logits.js';

/** The plain rule: ids by value (largest first, the lower id on a tie), the k first; the row's log-sum-exp in float64. */
function oracle(row: Float32Array, k: number) {
  const ids = [...row.keys()].filter((i) => !Number.isNaN(row[i])).sort((a, b) => (row[b] as number) - (row[a] as number) || a - b);
  const max = Math.max(...row);
  const lse = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
  return { ids: ids.slice(0, k), rest: ids.length > k ? (row[ids[k] as number] as number) : Number.NEGATIVE_INFINITY, lse };
}

/** A row with ties (values on a grid), sometimes −Infinity (a masked token). */
function rowOf(random: () => number, n: number, grid: number): Float32Array {
  return Float32Array.from({ length: n }, () =>
    random() < 0.02 ? Number.NEGATIVE_INFINITY : Math.round((random() - 0.5) * 20 * grid) / grid,
  );
}

describe('top forms of logits', () => {
  it('carry the k most likely tokens as the plain rule orders them, the largest left out and the log-sum-exp', () => {
    const random = seededRandom(3);
    for (let trial = 0; trial < 200; trial++) {
      const n = 40 + Math.floor(random() * 400);
      const k = 1 + Math.floor(random() * 32);
      const row = rowOf(random, n, trial % 2 === 0 ? 4 : 1000);
      const wire = topLogitsOf(row, k);
      const want = oracle(row, k);
      const got = topParts(wire);
      expect([...got.ids]).toEqual(want.ids);
      expect([...got.values]).toEqual(want.ids.map((i) => row[i]));
      expect(got.rest).toBe(want.rest);
      expect(got.logSumExp).toBe(Math.fround(want.lse));
      expect(topLogitsProblem(wire, k, n)).toBeNull();
    }
  });

  it('give the same draw as the whole row for greedy and every top_k up to k, with any temperature and top_p', () => {
    const random = seededRandom(5);
    let draws = 0;
    for (let trial = 0; trial < 150; trial++) {
      const n = 300 + Math.floor(random() * 300);
      const row = rowOf(random, n, trial % 3 === 0 ? 2 : 100);
      const k = 32;
      const expanded = expandTopLogits(topLogitsOf(row, k), n);
      for (const topK of [0, 1, 5, 31, 32]) {
        const temperature = topK === 0 ? 0 : ([0.3, 1, 2.5][trial % 3] as number);
        const topP = [1, 0.9, 0.5][trial % 3] as number;
        const p: SamplingParams = { temperature, topK, topP, seed: trial };
        for (let i = 0; i < 4; i++) {
          expect(sampleToken(expanded, p, () => randomAt(trial, i))).toBe(sampleToken(row, p, () => randomAt(trial, i)));
          draws++;
        }
      }
    }
    expect(draws).toBe(150 * 5 * 4);
  });

  it('name what is wrong with a form no row could have', () => {
    const row = Float32Array.from({ length: 100 }, (_, i) => Math.sin(i) * 5);
    const good = topLogitsOf(row, 4);
    const bad = (change: (w: Float32Array) => void, n = 100) => {
      const w = good.slice();
      change(w);
      return topLogitsProblem(w, 4, n);
    };
    expect(topLogitsProblem(good, 4, 100)).toBeNull();
    expect(topLogitsProblem(good.subarray(1), 4, 100)).toMatch(/9 floats where the top 4 tokens take 10/);
    expect(bad((w) => (w[4] = 100))).toMatch(/token id 100 is not one of the vocabulary's 100/);
    expect(bad((w) => (w[4] = 1.5))).toMatch(/token id 1.5/);
    expect(bad((w) => (w[5] = w[4] as number))).toMatch(/named twice/);
    expect(bad((w) => (w[1] = (w[0] as number) + 1))).toMatch(/not in order at 1/);
    // A tie must name the lower id first.
    expect(
      bad((w) => {
        w[1] = w[0] as number;
        [w[4], w[5]] = [Math.max(w[4] as number, w[5] as number), Math.min(w[4] as number, w[5] as number)];
      }),
    ).toMatch(/not in order at 1/);
    expect(bad((w) => (w[2] = Number.NaN))).toMatch(/value 2 is not finite/);
    expect(bad((w) => (w[8] = (w[3] as number) + 0.5))).toMatch(/rest .* is above/);
    expect(bad((w) => (w[9] = (w[0] as number) - 0.1))).toMatch(/log-sum-exp .* is impossible/);
    expect(bad((w) => (w[9] = (w[0] as number) + Math.log(100) + 1))).toMatch(/log-sum-exp .* is impossible/);
    expect(bad((w) => (w[9] = Number.NaN))).toMatch(/log-sum-exp NaN/);
    // A row with NaN (a broken replica) makes a NaN log-sum-exp: refused as any other.
    const broken = row.slice();
    broken[50] = Number.NaN;
    expect(topLogitsProblem(topLogitsOf(broken, 4), 4, 100)).toMatch(/log-sum-exp NaN/);
  });

  it('agree across rounding, and where it swaps the tokens about the k-th place', () => {
    const random = seededRandom(9);
    const n = 2048;
    let swapped = 0;
    for (let trial = 0; trial < 100; trial++) {
      const row = Float32Array.from({ length: n }, () => (random() - 0.5) * 30);
      // Near-ties at the boundary: the 8th and 9th most likely a hair apart.
      const order = [...row.keys()].sort((a, b) => (row[b] as number) - (row[a] as number));
      row[order[8] as number] = (row[order[7] as number] as number) - 1e-4;
      const other = row.map((v) => v + (random() - 0.5) * 2e-3);
      const a = topLogitsOf(row, 8);
      const b = topLogitsOf(other, 8);
      if (topParts(a).ids.join() !== topParts(b).ids.join()) swapped++;
      if (topParts(a).ids[0] === topParts(b).ids[0]) {
        expect(agreeTopLogits(a, b)).toBe(true);
        expect(agreeTopLogits(b, a)).toBe(true);
      }
    }
    expect(swapped).toBeGreaterThan(10);
  });

  it('agree or not the same both ways round: held to the smaller of the two forms’ scales', () => {
    // Values well apart and small, so the log-sum-exp sets each form's scale. The second form's log-sum-exp is 0.9 of
    // a tolerance higher (a larger scale), and its 8th value 1.0005 tolerances of the first form higher: within the
    // second form's tolerance, not the first's. Held to the second argument's scale, this agreed one way round only.
    const row = Float32Array.from({ length: 512 }, (_, i) => (i < 8 ? 0.9 - i * 0.1 : -2 - (i % 7) * 0.01));
    const a = topLogitsOf(row, 8);
    const k = 8;
    const lse = 2 * k + 1;
    const tolA = RELATIVE_TOLERANCE * Math.max(1, Math.abs(a[lse] as number));
    expect(Math.abs(a[lse] as number)).toBeGreaterThan(1);
    const b = a.slice();
    b[lse] = (a[lse] as number) + 0.9 * tolA;
    b[k - 1] = (a[k - 1] as number) + 1.0005 * tolA;
    expect(topLogitsProblem(b, k, 512)).toBeNull();
    expect(agreeTopLogits(a, b)).toBe(false);
    expect(agreeTopLogits(b, a)).toBe(false);
    // Inside the smaller tolerance, both ways round agree.
    b[k - 1] = (a[k - 1] as number) + 0.999 * tolA;
    expect(agreeTopLogits(a, b)).toBe(true);
    expect(agreeTopLogits(b, a)).toBe(true);
  });

  it('disagree with a form that moves a value, hides a likely token, names another top token or another mass', () => {
    // Logits spread as a model's are (the top tokens units apart, not all within the tolerance of each other).
    const random = seededRandom(21);
    const row = Float32Array.from({ length: 2048 }, () => (random() - 0.5) * 30);
    const honest = topLogitsOf(row, 32);
    const k = 32;
    const tol = RELATIVE_TOLERANCE * Math.max(1, ...topParts(honest).values.map(Math.abs), Math.abs(topParts(honest).logSumExp));
    const lie = (change: (r: Float32Array) => void) => {
      const r = row.slice();
      change(r);
      return topLogitsOf(r, k);
    };
    const ids = [...topParts(honest).ids];
    expect(
      agreeTopLogits(
        lie(() => {}),
        honest,
      ),
    ).toBe(true);
    // Within the tolerance: agrees (as whole rows would).
    expect(
      agreeTopLogits(
        lie((r) => (r[ids[5] as number] = (r[ids[5] as number] as number) - tol / 2)),
        honest,
      ),
    ).toBe(true);
    // A value moved past it.
    expect(
      agreeTopLogits(
        lie((r) => (r[ids[5] as number] = (r[ids[5] as number] as number) - 3 * tol)),
        honest,
      ),
    ).toBe(false);
    // Another most likely token.
    expect(
      agreeTopLogits(
        lie((r) => (r[ids[1] as number] = (r[ids[0] as number] as number) + 1e-6)),
        honest,
      ),
    ).toBe(false);
    // A likely token hidden: pushed out of the form (its place taken by the next), rest claims no higher.
    const hidden = honest.slice();
    hidden.copyWithin(3, 4, k);
    hidden.copyWithin(k + 3, k + 4, 2 * k);
    hidden[k - 1] = hidden[2 * k] as number;
    hidden[2 * k - 1] = 2047;
    expect(topLogitsProblem(hidden, k, 2048)).toBeNull();
    expect(agreeTopLogits(hidden, honest)).toBe(false);
    expect(agreeTopLogits(honest, hidden)).toBe(false);
    // The row's mass or the rest moved.
    const mass = honest.slice();
    mass[2 * k + 1] = (mass[2 * k + 1] as number) + 3 * tol;
    expect(agreeTopLogits(mass, honest)).toBe(false);
    const rest = honest.slice();
    rest[2 * k] = (rest[2 * k] as number) - 3 * tol;
    expect(agreeTopLogits(rest, honest)).toBe(false);
    expect(agreeTopLogits(honest.subarray(2), honest)).toBe(false);
  });

  it('combine to a bit-identical majority, or to medians no agreeing minority can move past the honest values', () => {
    const random = seededRandom(13);
    const row = Float32Array.from({ length: 2048 }, () => (random() - 0.5) * 30);
    const a = topLogitsOf(row, 32);
    const same = medianOfTop(
      [
        a,
        a.slice(),
        topLogitsOf(
          row.map((v) => v + 1e-3),
          32,
        ),
      ],
      2,
    );
    expect(same).toEqual({ value: a, exact: true });
    for (let trial = 0; trial < 30; trial++) {
      const h1 = row.map((v) => v + (random() - 0.5) * 1e-3);
      const h2 = row.map((v) => v + (random() - 0.5) * 1e-3);
      // A nudger inside the tolerance: every value pushed up as far as it may go.
      const liar = row.map((v) => v + 0.014);
      const forms = [topLogitsOf(h1, 32), topLogitsOf(liar, 32), topLogitsOf(h2, 32)];
      expect(agreeTopLogits(forms[0] as Float32Array, forms[1] as Float32Array)).toBe(true);
      const { value, exact } = medianOfTop(forms, 2);
      expect(exact).toBe(false);
      expect(topLogitsProblem(value, 32, 2048)).toBeNull();
      const got = topParts(value);
      got.ids.forEach((id, j) => {
        const v = got.values[j] as number;
        expect(v).toBeGreaterThanOrEqual(Math.min(h1[id] as number, h2[id] as number));
        expect(v).toBeLessThanOrEqual(Math.max(h1[id] as number, h2[id] as number));
      });
      const lses = [forms[0], forms[2]].map((f) => topParts(f as Float32Array).logSumExp);
      expect(got.logSumExp).toBeGreaterThanOrEqual(Math.min(...lses));
      expect(got.logSumExp).toBeLessThanOrEqual(Math.max(...lses));
    }
  });

  it('never serve a token only a minority names: a liar’s tail token planted at the edge of the tolerance (red team)', () => {
    // The edge: the honest form's 8th and 9th most likely a hair apart. The liar drops the 8th and names instead the
    // row's least likely token, at the honest rest plus 90 % of the tolerance; it lowers its own rest to match.
    const random = seededRandom(41);
    const row = Float32Array.from({ length: 2048 }, () => (random() - 0.5) * 30);
    const order = [...row.keys()].sort((a, b) => (row[b] as number) - (row[a] as number));
    row[order[8] as number] = (row[order[7] as number] as number) - 4e-3;
    const k = 8;
    const honest = topLogitsOf(row, k);
    const h = topParts(honest);
    const tol = RELATIVE_TOLERANCE * Math.max(1, Math.abs(h.logSumExp), ...[...h.values].map(Math.abs));
    const least = order[order.length - 1] as number;
    const liar = honest.slice();
    liar[k - 1] = Math.min(h.rest + 0.9 * tol, h.values[k - 2] as number);
    expect(liar[k - 1] as number).toBeGreaterThan(h.rest);
    liar[2 * k - 1] = least;
    liar[2 * k] = (h.values[k - 1] as number) - 0.9 * tol;
    expect(topLogitsProblem(liar, k, 2048)).toBeNull();
    expect(agreeTopLogits(liar, honest)).toBe(true);
    expect(agreeTopLogits(honest, liar)).toBe(true);
    const other = honest.map((v, j) => (j >= k && j < 2 * k ? v : v * (1 + 2e-6)));
    for (const [forms, needed] of [
      [[liar, honest], 2],
      [[liar, honest, other], 2],
    ] as const) {
      const { value } = medianOfTop([...forms], needed);
      expect([...topParts(value).ids]).not.toContain(least);
      // r = 2: the token only the honest form names is left out too; the 7 both name stay.
      expect(agreedTokens(value)).toBe(forms.length === 2 ? k - 1 : k);
    }
  });

  it('are used where the draw reads only the most likely tokens and the form is at most a quarter of a row', () => {
    const greedy = { temperature: 0, topK: 0, topP: 1, seed: 1 };
    expect(topLogitsFor(greedy, 2048)).toBe(MIN_TOP_LOGITS);
    expect(topLogitsFor(greedy, 49152)).toBe(MIN_TOP_LOGITS);
    expect(topLogitsFor({ ...greedy, temperature: 0.8, topK: 40, topP: 0.9 }, 49152)).toBe(40 + TOP_MARGIN);
    expect(topLogitsFor({ ...greedy, temperature: 0.8, topK: 5 }, 49152)).toBe(MIN_TOP_LOGITS);
    expect(topLogitsFor({ ...greedy, temperature: 0.8, topK: MAX_TOP_LOGITS - TOP_MARGIN }, 49152)).toBe(MAX_TOP_LOGITS);
    expect(topLogitsFor({ ...greedy, temperature: 0.8, topK: MAX_TOP_LOGITS - TOP_MARGIN }, 2048)).toBeNull();
    expect(topLogitsFor({ ...greedy, temperature: 0.8, topK: MAX_TOP_LOGITS - TOP_MARGIN + 1 }, 49152)).toBeNull();
    expect(topLogitsFor({ ...greedy, temperature: 0.8 }, 49152)).toBeNull();
    expect(topLogitsFor({ ...greedy, logitBias: [[3, -100]] }, 49152)).toBeNull();
    expect(topLogitsFor({ ...greedy, frequencyPenalty: 0.5 }, 49152)).toBeNull();
    expect(topLogitsFor({ ...greedy, presencePenalty: -0.5 }, 49152)).toBeNull();
    expect(topLogitsFor(greedy, 263)).toBeNull();
    expect(topLogitsFor(greedy, 264)).toBe(MIN_TOP_LOGITS);
  });

  it('pass the boundary check at a top form’s or scored forms’ length, and nothing else that is not whole rows', () => {
    const msg = (floats: number) => ({ sessionId: 1, step: 0, logits: new Float32Array(floats).buffer });
    expect(parseLogits(msg(topLogitsLength(32)), 2048)).toMatchObject({ ok: true });
    expect(parseLogits(msg(topLogitsLength(MAX_TOP_LOGITS)), 49152)).toMatchObject({ ok: true });
    expect(parseLogits(msg(topLogitsLength(MAX_TOP_LOGITS) + 2), 49152)).toMatchObject({ ok: false });
    expect(parseLogits(msg(topLogitsLength(32) + 3), 2048)).toMatchObject({ ok: false });
    expect(parseLogits(msg(SCORED_ROW_LENGTH), 2048)).toMatchObject({ ok: true });
    expect(parseLogits(msg(96 * SCORED_ROW_LENGTH), 49152)).toMatchObject({ ok: true });
    expect(parseLogits(msg(97 * SCORED_ROW_LENGTH), 49152)).toMatchObject({ ok: false });
    expect(parseLogits(msg(49 * SCORED_ROW_LENGTH), 128_256)).toMatchObject({ ok: true });
    expect(parseLogits(msg(50 * SCORED_ROW_LENGTH), 128_256)).toMatchObject({ ok: false });
    expect(parseLogits(msg(2048), 2048)).toMatchObject({ ok: true });
    // A vocabulary too small for a form of that size: refused, as no session asks for one.
    expect(parseLogits(msg(topLogitsLength(32)), 200)).toMatchObject({ ok: false });
  });
});

describe('scored forms of a scored prompt’s rows', () => {
  const V = 2048;
  /** Rows with a model's spread, and targets anywhere in them: among the most likely, and far in the tail. */
  const rowsOf = (random: () => number, n: number) => Float32Array.from({ length: n * V }, () => (random() - 0.5) * 30);
  const logprob = (row: ArrayLike<number>, token: number, lse?: number) => {
    let max = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < row.length; i++) max = Math.max(max, row[i] as number);
    let sum = 0;
    for (let i = 0; i < row.length; i++) sum += Math.exp((row[i] as number) - max);
    return (row[token] as number) - (lse ?? max + Math.log(sum));
  };

  it('give each scored token the whole row’s log-probability, wherever it stands in the row', () => {
    const random = seededRandom(31);
    const rows = rowsOf(random, 6);
    const whole = (r: number) => rows.subarray(r * V, (r + 1) * V);
    // Row 0's most likely token, then tokens further and further down.
    const targets = [0, 1, 2, 3, 4, 5].map((r) => {
      const order = [...whole(r).keys()].sort((a, b) => (whole(r)[b] as number) - (whole(r)[a] as number));
      return order[[0, 5, 31, 32, 500, V - 1][r] as number] as number;
    });
    const wire = scoredFormsOf(rows, V, targets);
    expect(wire.length).toBe(6 * SCORED_ROW_LENGTH);
    expect(scoredFormsProblem(wire, targets, V)).toBeNull();
    for (const [r, t] of targets.entries()) {
      const { row, logSumExp } = expandScoredRow(wire, r, t, V);
      expect(Math.abs(logprob(row, t, logSumExp) - logprob(whole(r), t))).toBeLessThan(1e-5);
    }
  });

  it('name a scored value the form contradicts, and any row’s broken form', () => {
    const random = seededRandom(32);
    const rows = rowsOf(random, 2);
    const top = topParts(topLogitsOf(rows.subarray(0, V), SCORED_TOP));
    const inForm = top.ids[3] as number;
    const tail = [...Array(V).keys()].find((i) => !top.ids.includes(i)) as number;
    const wire = scoredFormsOf(rows, V, [inForm, tail]);
    expect(scoredFormsProblem(wire, [inForm, tail], V)).toBeNull();
    expect(scoredFormsProblem(wire, [inForm], V)).toMatch(/134 floats where 1 scored rows take 67/);
    const named = wire.slice();
    named[SCORED_ROW_LENGTH - 1] = (named[SCORED_ROW_LENGTH - 1] as number) + 0.01;
    expect(scoredFormsProblem(named, [inForm, tail], V)).toMatch(/row 0: token .* is not what the row's form says/);
    const above = wire.slice();
    above[2 * SCORED_ROW_LENGTH - 1] = (above[2 * SCORED_ROW_LENGTH - 3] as number) + 0.01;
    expect(scoredFormsProblem(above, [inForm, tail], V)).toMatch(/row 1: token .* is not what/);
    const broken = wire.slice();
    broken[SCORED_ROW_LENGTH + 1] = (broken[SCORED_ROW_LENGTH] as number) + 1;
    expect(scoredFormsProblem(broken, [inForm, tail], V)).toMatch(/row 1: the tokens are not in order at 1/);
  });

  it('agree across rounding; a scored value moved past the tolerance does not; the median stays between the honest', () => {
    const random = seededRandom(33);
    const rows = rowsOf(random, 3);
    const targets = [7, 700, 1500];
    const a = scoredFormsOf(rows, V, targets);
    const b = scoredFormsOf(
      rows.map((v) => v * (1 + 2e-6)),
      V,
      targets,
    );
    expect(agreeScoredForms(a, b)).toBe(true);
    const tol = RELATIVE_TOLERANCE * 30;
    const lie = a.slice();
    // Row 1's scored token made likelier, past the tolerance, where its form says nothing of it (in the tail).
    const at = 2 * SCORED_ROW_LENGTH - 1;
    const liar = (by: number) => {
      const w = a.slice();
      w[at] = Math.min((w[at] as number) + by, w[at - 2] as number);
      return w;
    };
    if (topParts(topLogitsOf(rows.subarray(V, 2 * V), SCORED_TOP)).ids.includes(700)) throw new Error('token 700 should be in the tail');
    expect(agreeScoredForms(liar(3 * tol), a)).toBe(false);
    expect(agreeScoredForms(liar(tol / 20), a)).toBe(true);
    expect(agreeScoredForms(lie.subarray(0, SCORED_ROW_LENGTH), a)).toBe(false);
    const { value, exact } = medianOfScored([a, liar(tol / 20), b], 2);
    expect(exact).toBe(false);
    expect(scoredFormsProblem(value, targets, V)).toBeNull();
    const got = value[at] as number;
    expect(got).toBeGreaterThanOrEqual(Math.min(a[at] as number, b[at] as number));
    expect(got).toBeLessThanOrEqual(Math.max(a[at] as number, b[at] as number));
    expect(medianOfScored([a, a.slice(), b], 2)).toEqual({ value: a, exact: true });
  });
});
