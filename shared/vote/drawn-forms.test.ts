import { describe, expect, it } from 'vitest';
import { mapLogitValues } from '../../testing/logit-values.js';
import { randomAt, type SamplingParams, sampleToken, seededRandom } from '../model/sampling.js';
import { parseLogits } from '../protocol/validate.js';
import { sampleAt } from '../swarm/mesh-loop.js';
import {
  agreeDrawnForms,
  CONTESTED_DRAW,
  DRAWN_EXTRA,
  drawFromDrawnForm,
  drawnFormLength,
  drawnFormOf,
  drawnFormProblem,
  drawnLogitsFor,
  drawnParts,
  expandDrawnForm,
  majorityDraw,
  medianOfDrawn,
  ownDraw,
} from './drawn-forms.js';
import { drawOf, logitsAsSent, sameDraw } from './logits-as-sent.js';
import { Quorum } from './quorum.js';
import { RELATIVE_TOLERANCE } from './tolerance.js';
import { MIN_TOP_LOGITS, topLogitsFor, topParts } from './top-logits.js';

const K = MIN_TOP_LOGITS;

/**
 * A row like a language model's: a long tail (values × `spread`) and about ten likely tokens `lift` above it, some
 * tied on a grid, some −Infinity (masked). A small lift puts most draws in the tail, a large one among the most
 * likely tokens.
 */
function rowOf(random: () => number, n: number, spread: number, lift = 0): Float32Array {
  return Float32Array.from({ length: n }, () => {
    if (random() < 0.01) return Number.NEGATIVE_INFINITY;
    const v = spread * Math.log(random() + 1e-9) + (random() < 10 / n ? lift : 0);
    return random() < 0.1 ? Math.round(v * 4) / 4 : v;
  });
}

/** Another backend's rounding: every value of a form × (1 + 2e-6) (order kept), ids left. */
function rounded(form: Float32Array): Float32Array {
  const out = form.slice();
  const k = (out.length - DRAWN_EXTRA - 2) / 2;
  for (let i = 0; i < out.length; i++) if ((i < k || i >= 2 * k) && i !== out.length - 2) out[i] = (out[i] as number) * (1 + 2e-6);
  return out;
}

/** A 2 048-token row of `seed`, the first settings, its drawn form with the number `u`, and where its extra floats begin. */
function sample(seed: number, u: number) {
  const row = rowOf(seededRandom(seed), 2048, 1.5);
  const p = settings[0] as SamplingParams;
  const form = drawnFormOf(row, K, p, u);
  return { row, p, form, at: form.length - DRAWN_EXTRA };
}

const settings: SamplingParams[] = [
  { temperature: 1, topK: 0, topP: 1, seed: 1 },
  { temperature: 0.7, topK: 0, topP: 0.9, seed: 2 },
  { temperature: 1.5, topK: 0, topP: 1, seed: 3 },
  { temperature: 1, topK: 0, topP: 0.5, seed: 4 },
  { temperature: 0.9, topK: 1000, topP: 0.95, seed: 5 },
  { temperature: 0.8, topK: 40, topP: 1, seed: 6 },
  { temperature: 1.2, topK: 10, topP: 0.8, seed: 7 },
];

describe('drawn forms of logits', () => {
  it('give the whole row’s draw: the majority’s, and where none drew one token, again from voted values among the most likely', () => {
    const random = seededRandom(17);
    let tail = 0;
    let head = 0;
    for (let trial = 0; trial < 600; trial++) {
      const n = trial % 3 === 0 ? 8192 : 2048;
      const row = rowOf(random, n, [0.5, 1.5, 4][trial % 3] as number, [0, 4, 8, 12][trial % 4] as number);
      const p = settings[trial % settings.length] as SamplingParams;
      const u = randomAt(p.seed, trial);
      const want = sampleToken(row, p, () => u);
      // 32 tokens, or top_k + 8 (48 for top_k 40).
      const k = drawnLogitsFor(p, n) as number;
      const form = drawnFormOf(row, k, p, u);
      expect(drawnFormProblem(form, k, n, p.temperature), `trial ${trial}`).toBeNull();
      expect(drawnParts(form).drawn).toBe(want);
      // Three replicas, one of another backend's rounding: not identical, so the median is taken.
      const combine = medianOfDrawn(p, u);
      const accepted = combine([form, rounded(form), form.slice()], 2);
      for (const value of [accepted.value, combine([form, rounded(form), rounded(rounded(form))], 2).value]) {
        expect(drawFromDrawnForm(value, p, u), `trial ${trial}`).toBe(want);
        // The expanded row holds the drawn token at its value (its log-probability), and the top tokens at theirs.
        expect(expandDrawnForm(value, n)[want]).toBeCloseTo(row[want] as number, 4);
      }
      // No majority for one token (medianOfDrawn's −1): drawn again from the voted values, the whole row's token where
      // it lands among the most likely tokens, and no token (the step fails) where it lands beyond them.
      const split = accepted.value.slice();
      split[split.length - 2] = -1;
      const among = topParts(drawnParts(form).form).ids.includes(want);
      expect(drawFromDrawnForm(split, p, u), `trial ${trial}`).toBe(among ? want : null);
      if (among) head += 1;
      else tail += 1;
    }
    // Both ways of deciding were exercised, many times.
    expect(head).toBeGreaterThan(100);
    expect(tail).toBeGreaterThan(100);
  });

  it('refuse, by name, a form no row could make', () => {
    const { row, form, at } = sample(5, 0.99);
    const { values, ids, rest } = topParts(drawnParts(form).form);
    const top = values[0] as number;
    const tailToken = [...row.keys()].find((i) => ![...ids].includes(i) && Number.isFinite(row[i])) as number;
    const cases: [string, (f: Float32Array) => Float32Array, RegExp][] = [
      ['a floats short', (f) => f.slice(1), /floats where a drawn form of 32 tokens takes/],
      ['a total below the top token alone', (f) => f.fill(top - 1, at, at + 1), /total weight .* is impossible/],
      ['a total above every token at the top weight', (f) => f.fill(top + 2 * Math.log(2048), at, at + 1), /total weight/],
      ['a nucleus above the total', (f) => f.fill((f[at] as number) + 1, at + 1, at + 2), /nucleus weight .* is outside/],
      ['a drawn token out of the vocabulary', (f) => f.fill(2048, at + 2, at + 3), /drawn token 2048 is not one of/],
      ['a drawn id that is no integer', (f) => f.fill(3.5, at + 2, at + 3), /drawn token 3.5 is not one of/],
      [
        'a named token at another value',
        (f) => f.fill(ids[3] as number, at + 2, at + 3).fill((values[3] as number) + 0.5, at + 3),
        /value .* is not the one its form gives it/,
      ],
      ['a tail token above rest', (f) => f.fill(tailToken, at + 2, at + 3).fill(rest + 0.5, at + 3), /is not the one its form gives it/],
      ['a NaN total', (f) => f.fill(Number.NaN, at, at + 1), /total weight NaN/],
      ['a broken top form', (f) => f.fill(Number.NaN, 0, 1), /value 0 is not finite/],
    ];
    for (const [what, change, reason] of cases) expect(drawnFormProblem(change(form.slice()), K, 2048, 1), what).toMatch(reason);
    // A tail token at its own value, at or below rest, is a well-formed form (its value is the replica's claim).
    expect(
      drawnFormProblem(
        form
          .slice()
          .fill(tailToken, at + 2, at + 3)
          .fill(rest, at + 3),
        K,
        2048,
        1,
      ),
    ).toBeNull();
    // The boundary takes a drawn form's length (it is the length of a top form of k + 2).
    expect(parseLogits(form.buffer as ArrayBuffer, 2048)).not.toBeNull();
  });

  it('agree across rounding and with another drawn token; a moved weight or drawn value disagrees', () => {
    const { row, p, form, at } = sample(8, 0.97);
    const { values } = topParts(drawnParts(form).form);
    const tol = RELATIVE_TOLERANCE * Math.max(1, ...[...form.subarray(0, K), form[at - 1] as number, form[at] as number].map(Math.abs));
    expect(agreeDrawnForms(form, rounded(form))).toBe(true);
    expect(agreeDrawnForms(rounded(form), form)).toBe(true);
    // Another drawn token (an honest replica on the other side of a boundary) still agrees.
    const other = drawnFormOf(row, K, p, 0.2);
    expect(drawnParts(other).drawn).not.toBe(drawnParts(form).drawn);
    expect(agreeDrawnForms(form, other)).toBe(true);
    for (const [what, i, by] of [
      ['total weight', at, 2 * tol],
      ['nucleus weight', at + 1, -2 * tol],
      ['drawn value', at + 3, -2 * tol],
    ] as const) {
      const lie = form.slice();
      lie[i] = (lie[i] as number) + by;
      expect(agreeDrawnForms(lie, form), what).toBe(false);
      expect(agreeDrawnForms(form, lie), what).toBe(false);
    }
    expect(values.length).toBe(K);
    expect(agreeDrawnForms(form, form.slice(0, -1))).toBe(false);
    // The same both ways round, held to the smaller scale: at temperature 2 allT is the largest number and sets the
    // scale; a form whose allT is 0.9 of a tolerance higher (a larger scale) and whose nucleusT is 1.0005 tolerances
    // (of the first form) higher agrees with neither order. Held to the second argument's scale, it agreed one way.
    const hot = { ...p, temperature: 2 };
    const warm = drawnFormOf(row, K, hot, 0.5);
    const w = drawnParts(warm);
    const scaleOf = Math.max(1, ...[...topParts(w.form).values].map(Math.abs), Math.abs(topParts(w.form).logSumExp), Math.abs(w.allT));
    expect(scaleOf).toBe(Math.abs(w.allT));
    const tolW = RELATIVE_TOLERANCE * scaleOf;
    const wider = warm.slice();
    wider[at] = w.allT + 0.9 * tolW;
    wider[at + 1] = w.nucleusT + 1.0005 * tolW;
    expect(agreeDrawnForms(warm, wider)).toBe(false);
    expect(agreeDrawnForms(wider, warm)).toBe(false);
    wider[at + 1] = w.nucleusT + 0.999 * tolW;
    expect(agreeDrawnForms(warm, wider)).toBe(true);
    expect(agreeDrawnForms(wider, warm)).toBe(true);
  });

  it('a liar that claims another tail token is outvoted; without a majority for one token the draw fails, never guesses', () => {
    const random = seededRandom(21);
    const p = settings[0] as SamplingParams;
    let checked = 0;
    for (let trial = 0; trial < 200 && checked < 20; trial++) {
      const row = rowOf(random, 2048, 4);
      const u = randomAt(p.seed, trial);
      const honest = drawnFormOf(row, K, p, u);
      const { drawn } = drawnParts(honest);
      const { ids, rest } = topParts(drawnParts(honest).form);
      if ([...ids].includes(drawn)) continue; // a draw among the most likely tokens: decided by the values alone
      checked += 1;
      const planted = [...row.keys()].find((i) => i !== drawn && ![...ids].includes(i) && (row[i] as number) <= rest) as number;
      const liar = honest.slice();
      liar[liar.length - 2] = planted;
      liar[liar.length - 1] = rest;
      expect(drawnFormProblem(liar, K, 2048, 1)).toBeNull();
      // Through the vote: the liar first, then two honest replicas that round differently.
      const q = new Quorum(['liar', 'a', 'b'], agreeDrawnForms, { combine: medianOfDrawn(p, u) });
      q.add({ status: 'fulfilled', replica: 'liar', value: liar });
      q.add({ status: 'fulfilled', replica: 'a', value: honest });
      // The liar and one honest replica: no token has a majority of the draws yet.
      expect(q.state.kind === 'agreed' && drawFromDrawnForm(q.state.value, p, u)).toBeNull();
      q.add({ status: 'fulfilled', replica: 'b', value: rounded(honest) });
      expect(q.state.kind === 'agreed' && drawFromDrawnForm(q.state.value, p, u)).toBe(drawn);
      expect(q.state.kind === 'agreed' && q.state.settled).toBe(true);
    }
    expect(checked).toBe(20);
  });

  it('a liar that mixes one honest replica’s values with the other’s weights cannot move the draw a majority made', () => {
    // Two honest replicas a tenth of the tolerance apart (another backend's rounding), and a liar within half a
    // tolerance of both: its values half a tolerance up and weights half down, or the reverse. Each number's median
    // then comes from another replica, and a draw again from the median form is scaled by a mass no replica had.
    const row = rowOf(seededRandom(44), 2048, 1.5, 4);
    const p = settings[0] as SamplingParams;
    let moved = 0;
    for (let trial = 0; trial < 2000; trial++) {
      const u = randomAt(p.seed, trial);
      const honest = drawnFormOf(row, K, p, u);
      const other = mapLogitValues(honest, 2048, (v, _role, tol) => v + 0.1 * tol);
      for (const up of [true, false]) {
        const liar = mapLogitValues(honest, 2048, (v, role, tol) => ((role === 'weight') === up ? v + 0.5 * tol : v - 0.5 * tol));
        const q = new Quorum(['liar', 'a', 'b'], agreeDrawnForms, { combine: medianOfDrawn(p, u) });
        for (const [id, value] of [
          ['liar', liar],
          ['a', honest],
          ['b', other],
        ] as const)
          q.add({ status: 'fulfilled', replica: id, value });
        if (q.state.kind !== 'agreed') throw new Error(`trial ${trial}: no majority`);
        expect(q.state.agreeing.length).toBe(3);
        expect(drawFromDrawnForm(q.state.value, p, u), `trial ${trial}`).toBe(drawnParts(honest).drawn);
        // What the lie does to a draw again from that median form: it moves some draws (so this test can fail).
        const again = q.state.value.slice();
        again[again.length - 2] = -1;
        if (drawFromDrawnForm(again, p, u) !== drawnParts(honest).drawn) moved += 1;
      }
    }
    expect(moved).toBeGreaterThan(0);
  });

  it('a drawn token counts only where the form’s own values give it: a liar or two sybils naming another win nothing', () => {
    const { p, form } = sample(12, 0.6);
    const u = 0.6;
    const { values, ids } = topParts(drawnParts(form).form);
    const j = ids[0] === drawnParts(form).drawn ? 1 : 0;
    // Another of the form's own tokens named as drawn, at its named value: well formed, and agreeing.
    const naming = form.slice();
    naming[naming.length - 2] = ids[j] as number;
    naming[naming.length - 1] = values[j] as number;
    expect(drawnFormProblem(naming, K, 2048, p.temperature)).toBeNull();
    expect(agreeDrawnForms(naming, form) && agreeDrawnForms(form, naming)).toBe(true);
    expect(ownDraw(naming, p, u)).toBeNull();
    const mine = ownDraw(form, p, u);
    expect(mine).toBe(drawnParts(form).drawn);
    // At a boundary, within the float32 rounding of the form's weights, either neighbour's claim counts (an honest
    // replica drew on the whole row); a token two places away does not.
    const { allT } = drawnParts(form);
    const weights = [...values].map((v) => Math.exp(((v as number) - (values[0] as number)) / p.temperature));
    const mass = Math.exp((allT - (values[0] as number)) / p.temperature);
    const edge = (weights[0] as number) / mass;
    const named = (token: number) => {
      const f = form.slice();
      f[f.length - 2] = token;
      f[f.length - 1] = values[ids.indexOf(token)] as number;
      return f;
    };
    for (const x of [edge * (1 - 1e-7), edge * (1 + 1e-7)])
      for (const t of [ids[0], ids[1]] as number[]) expect(ownDraw(named(t), p, x), `u ${x}, token ${t}`).toBe(t);
    expect(ownDraw(named(ids[2] as number), p, edge)).toBeNull();
    expect(ownDraw(named(ids[1] as number), p, edge * (1 - 1e-3))).toBeNull();
    const vote = (forms: readonly (readonly [string, Float32Array])[], established?: (id: string) => boolean) => {
      const q = new Quorum(
        forms.map(([id]) => id),
        agreeDrawnForms,
        { combine: medianOfDrawn(p, u), ...(established ? { established } : {}) },
      );
      for (const [id, value] of forms) q.add({ status: 'fulfilled', replica: id, value });
      if (q.state.kind !== 'agreed') throw new Error('no agreement');
      return q.state.value;
    };
    // Two sybils naming another token beside an honest replica, with or without a record: theirs does not count,
    // no token has a majority, and the draw again from the voted values (the honest ones, which they copied) gives
    // the honest token where it lands among the agreed tokens, or the step fails by name.
    for (const established of [undefined, (id: string) => id === 'e']) {
      const value = vote(
        [
          ['n1', naming],
          ['e', form],
          ['n2', naming.slice()],
        ],
        established,
      );
      expect(drawnParts(value).drawn).toBe(-1);
      expect([drawnParts(form).drawn, null]).toContain(drawFromDrawnForm(value, p, u));
    }
    // One liar naming another token, with a record, beside two honest newcomers: their token is served.
    const honestPair = vote(
      [
        ['liar', naming],
        ['a', form],
        ['b', rounded(form)],
      ],
      (id) => id === 'liar',
    );
    expect(drawnParts(honestPair).drawn).toBe(drawnParts(form).drawn);
  });

  it('two newcomers whose weights move within the tolerance to draw their own token do not outvote a record: contested', () => {
    // A red-team helper's attack: copy the honest form, move allT and nucleusT by 0.98 of the tolerance (the mass
    // the draw is scaled by), and name the token the moved form draws. Each claim is its own values' draw.
    const random = seededRandom(5);
    let seen = 0;
    for (let trial = 0; trial < 400 && seen < 10; trial++) {
      const p = { ...(settings[trial % 3] as SamplingParams), temperature: 0.2 };
      const row = rowOf(random, 2048, 1.5, 12);
      const u = randomAt(p.seed, trial);
      const form = drawnFormOf(row, K, p, u);
      const moved = mapLogitValues(form, 2048, (v, role, tol) => (role === 'weight' ? v + (trial % 2 === 0 ? 0.98 : -0.98) * tol : v));
      moved[moved.length - 2] = -1;
      const theirs = drawFromDrawnForm(moved, p, u);
      if (theirs === null || theirs === drawnParts(form).drawn) continue;
      const { values, ids } = topParts(drawnParts(moved).form);
      moved[moved.length - 2] = theirs;
      moved[moved.length - 1] = values[ids.indexOf(theirs)] as number;
      if (drawnFormProblem(moved, K, 2048, p.temperature) !== null || !agreeDrawnForms(moved, form) || !agreeDrawnForms(form, moved))
        continue;
      seen += 1;
      const draws = [ownDraw(moved, p, u), ownDraw(form, p, u), ownDraw(moved.slice(), p, u)];
      expect(draws).toEqual([theirs, drawnParts(form).drawn, theirs]);
      expect(majorityDraw(draws, 2, [false, true, false])).toBe('contested');
      // Without the record the two would win (so the rule is what stops them).
      expect(majorityDraw(draws, 2)).toEqual({ token: theirs, at: [0, 2] });
      // Through the vote: the step's accepted form says contested, and no token is drawn from it.
      const q = new Quorum(['n1', 'e', 'n2'], agreeDrawnForms, { combine: medianOfDrawn(p, u), established: (id) => id === 'e' });
      for (const [id, value] of [
        ['n1', moved],
        ['e', form],
        ['n2', moved.slice()],
      ] as const)
        q.add({ status: 'fulfilled', replica: id, value });
      if (q.state.kind !== 'agreed') throw new Error('no agreement');
      expect(drawnParts(q.state.value).drawn).toBe(CONTESTED_DRAW);
      expect(drawFromDrawnForm(q.state.value, p, u)).toBeNull();
    }
    expect(seen).toBe(10);
  });

  it('an honest claim counts where tied values put top_p’s cut within a float32 rounding (a red team’s rows)', () => {
    // Ten most likely tokens tied on a grid, the rest 2–8 below, T = 0.1: the share summed to the cut meets top_p
    // exactly, and a total from the float32 allT tipped the cut by one token (216 of 1 200 honest claims refused).
    let checked = 0;
    for (let s = 0; s < 200; s++) {
      const random = seededRandom(1000 + s);
      const top = 5 + 20 * random();
      const row = Float32Array.from({ length: 2048 }, () => top - 2 - 6 * random());
      for (let i = 0; i < 10; i++) row[17 + 31 * i] = Math.round(top * 4) / 4;
      const p: SamplingParams = { temperature: 0.1, topK: 0, topP: 0.9, seed: 1 };
      for (const u of [0.1, 0.3, 0.55, 0.75, 0.95, 0.99]) {
        const form = drawnFormOf(row, K, p, u);
        expect(ownDraw(form, p, u), `row ${s}, u ${u}`).toBe(sampleToken(row, p, () => u));
        checked += 1;
      }
    }
    expect(checked).toBe(1200);
  });

  it('majorityDraw: the token `needed` draws name; newcomers never decide between records, nor does one win alone', () => {
    expect(majorityDraw([7, 9, 7], 2)).toEqual({ token: 7, at: [0, 2] });
    expect(majorityDraw([7, 9, 8], 2)).toBeNull();
    expect(majorityDraw([7, null, null], 2)).toBeNull();
    expect(majorityDraw([], 2)).toBeNull();
    // A refuted claim (null) stands nowhere: two newcomers win beside an established replica that claimed nothing.
    expect(majorityDraw([9, null, 9], 2, [false, true, false])).toEqual({ token: 9, at: [0, 2] });
    // Two newcomers against an established replica's other draw: contested (the step fails), not either's token.
    expect(majorityDraw([9, 7, 9], 2, [false, true, false])).toBe('contested');
    // An established replica and a newcomer against another established replica: contested too (before, the
    // newcomer decided between the two: a colluder's and its newcomer's token was served as verified).
    expect(majorityDraw([9, 7, 9], 2, [true, true, false])).toBe('contested');
    // With a strict majority of the established replicas in the group, or none standing elsewhere, the majority wins.
    expect(majorityDraw([9, 7, 9], 2, [true, false, true])).toEqual({ token: 9, at: [0, 2] });
    expect(majorityDraw([9, 7, 9], 2, [true, true, true])).toEqual({ token: 9, at: [0, 2] });
    expect(majorityDraw([9, 7, 9], 2, [true, false, false])).toEqual({ token: 9, at: [0, 2] });
    expect(majorityDraw([9, 7, 9], 2)).toEqual({ token: 9, at: [0, 2] });
    // Established replicas still to answer count: 2 of the 3 that drew, but of 4 in the vote, is no majority of them.
    expect(majorityDraw([9, 9, 7, 9], 3, [true, true, true, false])).toEqual({ token: 9, at: [0, 1, 3] });
    expect(majorityDraw([9, 9, 7, 9], 3, [true, true, true, false], 4)).toBe('contested');
    // At r = 5, three of five.
    expect(majorityDraw([1, 2, 1, 2, 1], 3)).toEqual({ token: 1, at: [0, 2, 4] });
    expect(majorityDraw([1, 2, 1, 2, 3], 3)).toBeNull();
  });

  it('are used where a temperature may draw any token, with no logit_bias and no penalties', () => {
    const t = (o: Partial<SamplingParams>): SamplingParams => ({ temperature: 1, topK: 0, topP: 1, seed: 0, ...o });
    expect(drawnLogitsFor(t({}), 49_152)).toBe(K);
    expect(drawnLogitsFor(t({ topP: 0.9 }), 2048)).toBe(K);
    expect(drawnLogitsFor(t({ topK: 1000 }), 49_152)).toBe(K);
    // A top_k: the form names 8 more (TOP_MARGIN); greedy is a top form; bias and penalties, whole rows; a
    // vocabulary too small, whole rows.
    expect(drawnLogitsFor(t({ topK: 40 }), 49_152)).toBe(48);
    expect(drawnLogitsFor(t({ topK: 10 }), 49_152)).toBe(K);
    expect(drawnLogitsFor(t({ topK: 248 }), 49_152)).toBe(256);
    expect(drawnLogitsFor(t({ topK: 249 }), 49_152)).toBe(K);
    expect(drawnLogitsFor(t({ temperature: 0 }), 49_152)).toBeNull();
    expect(topLogitsFor(t({ temperature: 0 }), 49_152)).toBe(K);
    expect(drawnLogitsFor(t({ logitBias: [[5, 1]] }), 49_152)).toBeNull();
    expect(drawnLogitsFor(t({ frequencyPenalty: 0.5 }), 49_152)).toBeNull();
    expect(drawnLogitsFor(t({ presencePenalty: 0.5 }), 49_152)).toBeNull();
    expect(drawnLogitsFor(t({}), 255)).toBeNull();
    expect(drawnFormLength(K) * 4).toBe(280);
  });

  it('one draw serves the mesh loop and the drawn form: the same token as the loop’s own draw, for the same settings only', () => {
    const row = rowOf(seededRandom(30), 2048, 1.5, 4);
    const sampling = settings[1] as SamplingParams;
    const open = { topLogits: K, drawLogits: { sampling, draws: 5 } };
    for (let step = 0; step < 40; step++) {
      const draw = drawOf(open, row, step);
      expect(draw?.token).toBe(sampleAt(row, sampling, 5 + step));
      // The form made with that draw is the form made without it.
      expect([...logitsAsSent(open, row, 1, step, 2048, step, draw)]).toEqual([...logitsAsSent(open, row, 1, step, 2048, step)]);
    }
    expect(drawOf({ topLogits: K }, row, 0)).toBeNull();
    const loop = { peers: [], sampling: { ...sampling }, steps: 10, draws: 5 };
    expect(sameDraw(loop, open.drawLogits)).toBe(true);
    expect(sameDraw({ ...loop, draws: 4 }, open.drawLogits)).toBe(false);
    expect(sameDraw({ ...loop, sampling: { ...sampling, seed: 9 } }, open.drawLogits)).toBe(false);
    expect(sameDraw({ ...loop, sampling: { ...sampling, topP: 1 } }, open.drawLogits)).toBe(false);
    expect(sameDraw(loop, undefined)).toBe(false);
  });
});
