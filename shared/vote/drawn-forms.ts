import { type Draw, drawToken, type SamplingParams } from '../model/sampling.js';
import { type Combine, elementwiseMedian, establishedDecide, majorityIdentical } from './quorum.js';
import { RELATIVE_TOLERANCE } from './tolerance.js';
import {
  agreedTokens,
  agreeTopLogits,
  expandTopLogits,
  MAX_TOP_LOGITS,
  MIN_TOP_LOGITS,
  medianOfTop,
  TOP_MARGIN,
  topFormFits,
  topLogitsLength,
  topLogitsOf,
  topLogitsProblem,
  topParts,
} from './top-logits.js';

/**
 * Drawn forms: the logits of a step whose draw may land on any token (a temperature with no top_k, the API's
 * default), without the whole row. The last stage knows the session's sampling and step t's number of the seeded
 * sampler (SessionOpen.drawLogits), as it does for the mesh loop, so each replica makes the draw on its own row and
 * sends the row's top form (top-logits.ts) and four floats more:
 *
 * - `allT`: top + T · ln(total), where total is the sum of every kept token's weight exp((logit − top) ÷ T);
 * - `nucleusT`: top + T · ln(mass), the same over the tokens top_p keeps (allT where top_p is 1);
 * - the drawn token's id and its value.
 *
 * The coordinator serves the token a majority of the agreeing replicas drew, with the median of its value where
 * the form leaves it out (its log-probability): a minority cannot move it. Only where no token has a majority
 * (honest replicas on either side of a boundary, or only some answered) it draws again from the accepted form with
 * the same number, from voted values alone (the weights are the row's, the total from `allT`, the same rule as
 * sampling.ts); where that lands beyond the agreed most likely tokens, the step fails by name. At a 49 152-token vocabulary a row is 196 KB a token and replica;
 * a drawn form of 32 tokens is 280 bytes.
 */
export const DRAWN_EXTRA = 4;

/** Floats of a drawn form of `k` tokens. */
export function drawnFormLength(k: number): number {
  return topLogitsLength(k) + DRAWN_EXTRA;
}

export interface DrawnParts {
  /** The top form (a view). */
  readonly form: Float32Array;
  readonly allT: number;
  readonly nucleusT: number;
  /** The token the replica drew (an accepted form: −1 where no majority drew one token). */
  readonly drawn: number;
  readonly drawnValue: number;
}

/** Views of a drawn form's parts. */
export function drawnParts(wire: Float32Array): DrawnParts {
  const at = wire.length - DRAWN_EXTRA;
  return {
    form: wire.subarray(0, at),
    allT: wire[at] as number,
    nucleusT: wire[at + 1] as number,
    drawn: wire[at + 2] as number,
    drawnValue: wire[at + 3] as number,
  };
}

/** A replica's drawn form of `row`: its top `k` tokens and its draw with `sampling` on the number `u` (or `made`, that draw). */
export function drawnFormOf(
  row: ArrayLike<number>,
  k: number,
  sampling: SamplingParams,
  u: number,
  made: Draw | null = null,
): Float32Array<ArrayBuffer> {
  const top = topLogitsOf(row, k);
  const d = made ?? drawToken(row, sampling, () => u);
  const out = new Float32Array(drawnFormLength(k));
  out.set(top);
  const at = top.length;
  out[at] = d.top + sampling.temperature * Math.log(d.total);
  out[at + 1] = d.top + sampling.temperature * Math.log(d.mass);
  out[at + 2] = d.token;
  out[at + 3] = row[d.token] as number;
  return out;
}

/**
 * Why `wire` is no drawn form of `k` tokens at `temperature`, or null where it is one: a top form, weights a row
 * could have (the nucleus no heavier than the whole, neither lighter than the most likely token alone nor heavier
 * than every token at the top's weight) and a drawn token of the vocabulary, at its named value where the form names
 * it, else no higher than `rest`.
 */
export function drawnFormProblem(wire: Float32Array, k: number, vocabSize: number, temperature: number): string | null {
  if (wire.length !== drawnFormLength(k)) return `${wire.length} floats where a drawn form of ${k} tokens takes ${drawnFormLength(k)}`;
  const { form, allT, nucleusT, drawn, drawnValue } = drawnParts(wire);
  const problem = topLogitsProblem(form, k, vocabSize);
  if (problem !== null) return problem;
  const { values, ids, rest } = topParts(form);
  const top = values[0] as number;
  const slack = RELATIVE_TOLERANCE * Math.max(1, Math.abs(top));
  const most = top + temperature * Math.log(vocabSize) + slack;
  if (!(allT >= top - slack && allT <= most)) return `total weight ${allT} is impossible for a largest value of ${top}`;
  if (!(nucleusT >= top - slack && nucleusT <= allT + slack)) return `nucleus weight ${nucleusT} is outside [${top}, ${allT}]`;
  if (!Number.isInteger(drawn) || drawn < 0 || drawn >= vocabSize)
    return `drawn token ${drawn} is not one of the vocabulary's ${vocabSize}`;
  const named = ids.indexOf(drawn);
  if (named >= 0 ? drawnValue !== values[named] : !(drawnValue <= rest))
    return `drawn token ${drawn}'s value ${drawnValue} is not the one its form gives it`;
  return null;
}

/**
 * Whether two drawn forms agree: their top forms agree (agreeTopLogits), their total and nucleus weights within the
 * same tolerance, and where both drew one token, its value too. Two that drew other tokens may still agree: honest
 * replicas that round differently may fall on either side of a boundary; the accepted form keeps only a token a
 * majority drew.
 */
export function agreeDrawnForms(a: Float32Array, b: Float32Array, relative = RELATIVE_TOLERANCE): boolean {
  if (a.length !== b.length) return false;
  const x = drawnParts(a);
  const y = drawnParts(b);
  if (!agreeTopLogits(x.form, y.form, relative)) return false;
  // The smaller of the two forms' scales: the same both ways round (tolerance.ts).
  const scale = (p: DrawnParts) => {
    const { values, logSumExp } = topParts(p.form);
    let largest = Math.max(1, Math.abs(logSumExp), Math.abs(p.allT));
    for (const v of values) largest = Math.max(largest, Math.abs(v));
    return largest;
  };
  const tol = relative * Math.min(scale(x), scale(y));
  const near = (p: number, q: number) => p === q || Math.abs(p - q) <= tol;
  return near(x.allT, y.allT) && near(x.nucleusT, y.nucleusT) && (x.drawn !== y.drawn || near(x.drawnValue, y.drawnValue));
}

/** The median of single numbers, by the vote's own element-wise median (as medianOfTop takes `rest`'s). */
const middle = (xs: readonly number[]): number => elementwiseMedian(xs.map((x) => Float32Array.of(x)))[0] as number;

/**
 * The drawn forms no minority can move, at the step's draw number `u`: a majority of bit-identical forms, or else the
 * top forms' median (medianOfTop), the weights' medians, and the token a majority (`needed`) of the forms drew with
 * its median value (none, −1, where no token has that many; CONTESTED_DRAW where only newcomers drew it and an
 * established replica drew another: majorityDraw). A form's drawn token counts only where its own values give it
 * with `u` (ownDraw): a replica cannot name a token its form does not draw, so one liar (established or not) that
 * names another token wins nothing and voids no honest majority.
 */
export function medianOfDrawn(p: SamplingParams, u: number): Combine<Float32Array> {
  return (forms, needed, established, establishedInVote) => {
    const first = forms[0];
    if (first === undefined) throw new RangeError('nothing to combine');
    const parts = forms.map(drawnParts);
    const won = majorityDraw(
      forms.map((f) => ownDraw(f, p, u)),
      needed,
      established,
      establishedInVote,
    );
    const same = majorityIdentical(forms, needed);
    // A bit-identical majority is taken whole where its draw is the counted majority's.
    if (same !== undefined && won !== null && won !== 'contested' && drawnParts(same).drawn === won.token)
      return { value: same, exact: true };
    const out = new Float32Array(first.length);
    out.set(
      medianOfTop(
        parts.map((x) => x.form),
        needed,
      ).value,
    );
    const at = first.length - DRAWN_EXTRA;
    out[at] = middle(parts.map((x) => x.allT));
    out[at + 1] = middle(parts.map((x) => x.nucleusT));
    out[at + 2] = won === null ? -1 : won === 'contested' ? CONTESTED_DRAW : won.token;
    out[at + 3] =
      won === null || won === 'contested' ? Number.NEGATIVE_INFINITY : middle(won.at.map((i) => parts[i]?.drawnValue as number));
    return { value: out, exact: false };
  };
}

/**
 * A form's drawn token where its own values give it with the number `u` (drawFromDrawnForm on the form alone), or
 * where they put the draw beyond the tokens it names and it names none of them (a tail token's place is not in the
 * form); else null, a claim its own values contradict, which counts for nothing. An honest replica's claim is its
 * draw on the whole row, and the form's weights are rounded to float32: a claim counts where the form's values give
 * it at any number within that rounding of `u` (CLAIM_SLACK float32 steps of the weights, relative, over T), with
 * top_p's cut within it too (a red-team helper had honest claims refused where tied values put the cut's share on
 * top_p), so an honest claim at a boundary is never refused.
 */
export function ownDraw(form: Float32Array, p: SamplingParams, u: number): number | null {
  const { drawn, allT, nucleusT } = drawnParts(form);
  const cleared = form.slice();
  cleared[cleared.length - DRAWN_EXTRA + 2] = -1;
  const slack = (CLAIM_SLACK * 2 ** -24 * Math.max(1, Math.abs(allT), Math.abs(nucleusT))) / p.temperature;
  // The number, and top_p's cut (a share of a float32 total), each within that rounding.
  const near = (x: number, most: number) => [x * (1 - slack), x, Math.min(x * (1 + slack), most)];
  const cuts = p.topP < 1 ? near(p.topP, 1) : [p.topP];
  const own = near(u, 1 - Number.EPSILON).flatMap((x) => cuts.map((topP) => drawFromDrawnForm(cleared, { ...p, topP }, x)));
  if (own.includes(drawn)) return drawn;
  if (own.every((t) => t !== null)) return null;
  return topParts(drawnParts(form).form).ids.includes(drawn) ? null : drawn;
}

/** How many float32 steps (relative) of a drawn form's weights a claim's draw number may be off by (ownDraw). */
export const CLAIM_SLACK = 16;

/** An accepted drawn form's token where newcomers' draws stood against an established replica's: the step fails. */
export const CONTESTED_DRAW = -2;

/**
 * The token that `needed` of the replicas' `draws` name (a null draw is none), with the indices of those that name
 * it; `'contested'` where such a token lacks a strict majority of the established replicas' draws (`established`,
 * index by index: establishedDecide); else null. Newcomers never decide between established replicas (quorum.ts),
 * and within the tolerance two colluding newcomers can move their values to draw a token of their choosing (a
 * helper had it served in 35–70 % of steps at temperatures 1 to 0.1); nor does an established replica win alone
 * (one liar among honest newcomers had its draw served). So a contested draw is decided by neither: the stage is
 * retried on other replicas, or the step fails by name.
 */
export function majorityDraw(
  draws: readonly (number | null)[],
  needed: number,
  established?: readonly boolean[],
  /** The vote's established replicas that answered or are still to (a review had a draw of 2 of 4 win as 2 of 3). */
  establishedInVote = 0,
): { readonly token: number; readonly at: readonly number[] } | 'contested' | null {
  const by = new Map<number, number[]>();
  draws.forEach((t, i) => {
    if (t !== null) by.set(t, [...(by.get(t) ?? []), i]);
  });
  const isEstablished = (i: number) => established?.[i] === true;
  // Those outside the draws (answered otherwise, or still to answer) and those whose draw counts: a refuted claim
  // (null) stands nowhere.
  const members = draws.filter((_, i) => isEstablished(i)).length;
  const counted = draws.filter((t, i) => t !== null && isEstablished(i)).length;
  const all = Math.max(0, establishedInVote - members) + counted;
  let contested = false;
  for (const [token, at] of by) {
    if (at.length < needed) continue;
    if (establishedDecide(at.filter(isEstablished).length, all)) return { token, at };
    contested = true;
  }
  return contested ? 'contested' : null;
}

/**
 * The coordinator's draw from an accepted drawn form with the number `u`: the token a majority of the agreeing
 * replicas drew, where one has a majority. Only where none has (honest replicas on either side of a boundary, or
 * only some answered) it draws again: sampling.ts's rule on the agreed most likely tokens (their weights, the total
 * from `allT`, top_p's cut where it falls among them); null where that lands beyond them.
 *
 * The majority's token comes first because a draw again from the median form is not theirs: each of its numbers is
 * a median on its own, so a liar within the tolerance of two honest replicas that round differently can have the
 * values of one and the weights of the other taken, and move the mass the draw is scaled by (a red-team helper had
 * 1 liar of 3 served another token, or a 503, in 2–3 % of steps at a tenth of the tolerance between the honest two).
 */
export function drawFromDrawnForm(wire: Float32Array, p: SamplingParams, u: number): number | null {
  const { form, allT, nucleusT, drawn } = drawnParts(wire);
  if (drawn >= 0) return drawn;
  if (drawn === CONTESTED_DRAW) return null;
  const { values, ids } = topParts(form);
  const n = agreedTokens(form);
  const t = p.temperature;
  const top = values[0] as number;
  const weights = Float64Array.from(values.subarray(0, n), (v) => Math.exp((v - top) / t));
  // top_k keeps the first topK: where they are all agreed, their total is summed here as the sampler sums it (not
  // from allT's float32), and top_p may cut before them; else the total is allT's.
  let cut: number | null = p.topK > 0 && p.topK <= n ? p.topK : null;
  let total = 0;
  if (cut === null) total = Math.exp((allT - top) / t);
  else for (let j = 0; j < cut; j++) total += weights[j] as number;
  if (p.topP < 1) {
    let acc = 0;
    for (let j = 0; j < (cut ?? n); j++) {
      acc += (weights[j] as number) / total;
      if (acc >= p.topP) {
        cut = j + 1;
        break;
      }
    }
  }
  let mass = 0;
  if (cut === null) mass = Math.exp((nucleusT - top) / t);
  else for (let j = 0; j < cut; j++) mass += weights[j] as number;
  let r = u * mass;
  for (let j = 0; j < (cut ?? n); j++) {
    r -= weights[j] as number;
    if (r < 0) return ids[j] as number;
  }
  return cut === null ? null : (ids[cut - 1] as number);
}

/** A whole row from an accepted drawn form: its top form's row (expandTopLogits) and the drawn token's value. */
export function expandDrawnForm(wire: Float32Array, vocabSize: number): Float32Array {
  const { form, drawn, drawnValue } = drawnParts(wire);
  const row = expandTopLogits(form, vocabSize);
  if (drawn >= 0 && row[drawn] === Number.NEGATIVE_INFINITY) row[drawn] = drawnValue;
  return row;
}

/**
 * The top form's size of a session's drawn forms, or null where they are not used: any temperature above 0 with no
 * logit_bias and no penalties (those move values the form does not carry), where the form is at most a quarter of a
 * row. 32 tokens, or top_k + TOP_MARGIN where that is larger and at most MAX_TOP_LOGITS (a larger top_k reads more
 * than a form holds: 32, the draw the majority's). A draw with top_k is then the majority's too, not the coordinator's
 * again from the median form, whose values a liar can pick between two honest replicas' (drawFromDrawnForm).
 */
export function drawnLogitsFor(p: SamplingParams, vocabSize: number): number | null {
  if ((p.logitBias?.length ?? 0) > 0 || (p.frequencyPenalty ?? 0) !== 0 || (p.presencePenalty ?? 0) !== 0) return null;
  if (!(p.temperature > 0)) return null;
  const k = p.topK > 0 && p.topK + TOP_MARGIN <= MAX_TOP_LOGITS ? Math.max(MIN_TOP_LOGITS, p.topK + TOP_MARGIN) : MIN_TOP_LOGITS;
  return topFormFits(k + DRAWN_EXTRA / 2, vocabSize) ? k : null;
}
