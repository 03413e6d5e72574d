import { argmax } from '../shared/model/sampling.js';
import { DRAWN_EXTRA, drawnFormLength } from '../shared/vote/drawn-forms.js';
import { maxAbs, RELATIVE_TOLERANCE } from '../shared/vote/tolerance.js';
import { MIN_TOP_LOGITS, SCORED_ROW_LENGTH } from '../shared/vote/top-logits.js';

/**
 * What a value of logits as sent stands for: a row's (or form's) most likely value, another token's, a form's `rest`,
 * its log-sum-exp, or a drawn form's weights (drawn-forms.ts).
 */
export type LogitRole = 'top' | 'value' | 'rest' | 'logSumExp' | 'weight';

/**
 * For a test's hostile or rounding replica: every value of the logits a last-stage replica sends through `f`, token
 * ids left as they are, whatever form they come in: whole rows of `vocab`, scored forms, a drawn form of
 * `drawnTokens` tokens (its length is a top form's of 2 more: a test says which it asked for), or a top form. `tol` is the vote's tolerance for that row or form (a whole tensor's for
 * rows). `f` is called for each value alone, so a token a form names twice (a drawn or scored token among its top
 * ones) gets the same value both times; an `f` that keeps the order of the values keeps the form well formed.
 */
export function mapLogitValues(
  all: Float32Array,
  vocab: number,
  f: (v: number, role: LogitRole, tol: number) => number,
  drawnTokens = MIN_TOP_LOGITS,
): Float32Array {
  const out = all.slice();
  if (out.length % vocab === 0) {
    const tol = RELATIVE_TOLERANCE * Math.max(1, maxAbs(out));
    for (let at = 0; at < out.length; at += vocab) {
      const row = out.subarray(at, at + vocab);
      const top = argmax(row);
      for (let i = 0; i < vocab; i++) row[i] = f(row[i] as number, i === top ? 'top' : 'value', tol);
    }
    return out;
  }
  if (out.length % SCORED_ROW_LENGTH === 0) {
    for (let at = 0; at < out.length; at += SCORED_ROW_LENGTH) {
      const form = out.subarray(at, at + SCORED_ROW_LENGTH);
      const scored = form[SCORED_ROW_LENGTH - 1] as number;
      const tol = mapTopForm(form.subarray(0, SCORED_ROW_LENGTH - 1), f);
      form[SCORED_ROW_LENGTH - 1] = f(scored, scored === all[at] ? 'top' : 'value', tol);
    }
    return out;
  }
  if (out.length === drawnFormLength(drawnTokens)) {
    const at = out.length - DRAWN_EXTRA;
    const tol = mapTopForm(out.subarray(0, at), f);
    out[at] = f(out[at] as number, 'weight', tol);
    out[at + 1] = f(out[at + 1] as number, 'weight', tol);
    out[at + 3] = f(out[at + 3] as number, out[at + 2] === out[drawnTokens] ? 'top' : 'value', tol);
    return out;
  }
  mapTopForm(out, f);
  return out;
}

/** A top form's values (`rest` and log-sum-exp too) through `f`, in place; returns the form's tolerance. */
function mapTopForm(form: Float32Array, f: (v: number, role: LogitRole, tol: number) => number): number {
  const k = (form.length - 2) / 2;
  const tol = RELATIVE_TOLERANCE * Math.max(1, ...[...form.subarray(0, k), form[2 * k + 1] as number].map(Math.abs));
  for (let j = 0; j < k; j++) form[j] = f(form[j] as number, j === 0 ? 'top' : 'value', tol);
  form[2 * k] = f(form[2 * k] as number, 'rest', tol);
  form[2 * k + 1] = f(form[2 * k + 1] as number, 'logSumExp', tol);
  return tol;
}

/** The vote's tolerance for a whole row (tolerance.ts, against itself). */
export function rowTolerance(row: Float32Array): number {
  return RELATIVE_TOLERANCE * Math.max(1, maxAbs(row));
}

/**
 * A test liar's whole row: its `raised` most likely tokens `by` tolerances up, every other token as far down (within
 * the tolerance of the row for `by` < 1, the same most likely token): the median with honest rows takes, token by
 * token, the higher or the lower honest value, and the liar's own draw moves.
 */
export function liftMostLikely(row: Float32Array, raised: number, by: number): Float32Array {
  const tol = rowTolerance(row);
  const order = [...row.keys()].sort((a, b) => (row[b] as number) - (row[a] as number));
  const up = new Set(order.slice(0, raised));
  return row.map((v, i) => (up.has(i) ? v + by * tol : v - by * tol));
}
