import type { SamplingParams } from '../model/sampling.js';
import { type Combine, elementwiseMedian, majorityIdentical } from './quorum.js';
import { RELATIVE_TOLERANCE } from './tolerance.js';

/**
 * The most likely tokens of a row of logits, what a last-stage replica sends
 * the coordinator instead of the whole row where the session's draw reads
 * nothing else (SessionOpen.topLogits): greedy, or top_k ≤ k, with no
 * logit_bias and no penalties. At a 49 152-token vocabulary a row is 196 KB a
 * token and replica; k = 32 of them are 264 bytes.
 *
 * On the wire, float32 × (2k + 2): the k largest values (largest first, ties by
 * the lower id, as argmax and the sampler order them), their k token ids, then
 * `rest` (the largest value of the tokens left out) and the row's log-sum-exp
 * (log Σ exp over every token: log-probabilities need it). Ids below 2^24 are
 * exact in float32.
 */
export interface TopLogits {
  readonly values: Float32Array;
  readonly ids: Float32Array;
  readonly rest: number;
  readonly logSumExp: number;
}

/** Fewest tokens a top form carries: more than OpenAI's 20 top_logprobs, and enough for the vote to compare. */
export const MIN_TOP_LOGITS = 32;
/**
 * Tokens a form names beyond the top_k its draw reads: honest replicas that round differently may name other tokens
 * about the k-th place, and the accepted form keeps only tokens a majority names (medianOfTop), so the draw's own
 * tokens stand clear of that edge.
 */
export const TOP_MARGIN = 8;
/** Most tokens a top form carries: sessions with a larger top_k (past this less TOP_MARGIN) send whole rows. */
export const MAX_TOP_LOGITS = 256;

/** Floats of the top form of `k` tokens. */
export function topLogitsLength(k: number): number {
  return 2 * k + 2;
}

/** The `k` of a top form of `length` floats, or null where no k in [1, MAX_TOP_LOGITS] has that length. */
export function topCountOf(length: number): number | null {
  const k = (length - 2) / 2;
  return Number.isInteger(k) && k >= 1 && k <= MAX_TOP_LOGITS ? k : null;
}

/** Views of a top form's parts (no copy). */
export function topParts(wire: Float32Array): TopLogits {
  const k = (wire.length - 2) / 2;
  return { values: wire.subarray(0, k), ids: wire.subarray(k, 2 * k), rest: wire[2 * k] as number, logSumExp: wire[2 * k + 1] as number };
}

/** Each token a form names, to its value. */
function valuesById(p: TopLogits): Map<number, number> {
  const out = new Map<number, number>();
  for (let j = 0; j < p.ids.length; j++) out.set(p.ids[j] as number, p.values[j] as number);
  return out;
}

/**
 * The top form of `row`'s `k` most likely tokens (a replica's side). NaN is no token; a row with NaN gets a NaN
 * log-sum-exp, which the coordinator refuses, as it refuses a whole row that is not finite.
 */
export function topLogitsOf(row: ArrayLike<number>, k: number): Float32Array<ArrayBuffer> {
  const n = row.length;
  if (k < 1 || k >= n) throw new RangeError(`a top form of ${k} tokens needs a vocabulary above ${k}, not ${n}`);
  // A min-heap of the k best ids so far (its root the worst of them): better = larger value, then lower id.
  const better = (a: number, b: number) => (row[a] as number) > (row[b] as number) || (row[a] === row[b] && a < b);
  const heap: number[] = [];
  const down = () => {
    let at = 0;
    for (;;) {
      const l = 2 * at + 1;
      const r = l + 1;
      let worst = at;
      if (l < k && better(heap[worst] as number, heap[l] as number)) worst = l;
      if (r < k && better(heap[worst] as number, heap[r] as number)) worst = r;
      if (worst === at) return;
      [heap[at], heap[worst]] = [heap[worst] as number, heap[at] as number];
      at = worst;
    }
  };
  let nan = false;
  // The largest value left out: every value refused or pushed out of the heap.
  let rest = Number.NEGATIVE_INFINITY;
  let floor = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < n; i++) {
    const v = row[i] as number;
    if (heap.length === k) {
      // Most values stop here. A tie with the root loses: its id is lower than this one's.
      if (!(v > floor)) {
        if (Number.isNaN(v)) nan = true;
        else if (v > rest) rest = v;
        continue;
      }
      const out = row[heap[0] as number] as number;
      if (out > rest) rest = out;
      heap[0] = i;
      down();
      floor = row[heap[0] as number] as number;
    } else if (Number.isNaN(v)) nan = true;
    else {
      heap.push(i);
      for (let at = heap.length - 1; at > 0; ) {
        const up = (at - 1) >> 1;
        if (!better(heap[up] as number, heap[at] as number)) break;
        [heap[up], heap[at]] = [heap[at] as number, heap[up] as number];
        at = up;
      }
      if (heap.length === k) floor = row[heap[0] as number] as number;
    }
  }
  const ids = heap.sort((a, b) => (better(a, b) ? -1 : 1));
  const max = ids.length > 0 ? (row[ids[0] as number] as number) : Number.NEGATIVE_INFINITY;
  let sum = 0;
  if (Number.isFinite(max)) for (let i = 0; i < n; i++) sum += Math.exp((row[i] as number) - max);
  const out = new Float32Array(topLogitsLength(k));
  ids.forEach((id, j) => {
    out[j] = row[id] as number;
    out[k + j] = id;
  });
  out[2 * k] = rest;
  out[2 * k + 1] = nan || !Number.isFinite(max) ? Number.NaN : max + Math.log(sum);
  return out;
}

/**
 * Why `wire` is no top form of `k` tokens of a `vocabSize` vocabulary, or null where it is one: the coordinator's
 * check of every replica's message before it counts (a replica that breaks the form is refused by name).
 */
export function topLogitsProblem(wire: Float32Array, k: number, vocabSize: number): string | null {
  if (wire.length !== topLogitsLength(k)) return `${wire.length} floats where the top ${k} tokens take ${topLogitsLength(k)}`;
  const { values, ids, rest, logSumExp } = topParts(wire);
  const seen = new Set<number>();
  for (let j = 0; j < k; j++) {
    const v = values[j] as number;
    const id = ids[j] as number;
    if (!Number.isFinite(v)) return `value ${j} is not finite`;
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) return `token id ${id} is not one of the vocabulary's ${vocabSize}`;
    if (seen.has(id)) return `token ${id} is named twice`;
    seen.add(id);
    if (j > 0) {
      const before = values[j - 1] as number;
      if (v > before || (v === before && id < (ids[j - 1] as number))) return `the tokens are not in order at ${j}`;
    }
  }
  const lowest = values[k - 1] as number;
  if (!(rest <= lowest || rest === Number.NEGATIVE_INFINITY)) return `rest ${rest} is above the top tokens' lowest ${lowest}`;
  const top = values[0] as number;
  // log Σ exp lies between the largest value and it plus log(vocabulary) (a float32 rounding's slack above).
  const slack = RELATIVE_TOLERANCE * Math.max(1, Math.abs(top));
  if (!Number.isFinite(logSumExp) || logSumExp < top || logSumExp > top + Math.log(vocabSize) + slack)
    return `log-sum-exp ${logSumExp} is impossible for a largest value of ${top} and ${vocabSize} tokens`;
  return null;
}

/** The tolerance against a form (tolerance.ts's rule, scaled by the largest magnitude it holds, its log-sum-exp's too). */
/** The tolerance two forms are held to: the smaller of their own (tolerance.ts's rule, the same both ways round). */
function pairTolerance(x: TopLogits, y: TopLogits, relative: number): number {
  return Math.min(formTolerance(x, relative), formTolerance(y, relative));
}

function formTolerance(y: TopLogits, relative: number): number {
  let largest = Math.max(1, Math.abs(y.logSumExp));
  for (const v of y.values) largest = Math.max(largest, Math.abs(v));
  return relative * largest;
}

/**
 * Whether two top forms agree as two whole rows would (tolerance.ts): the same most likely token, each token's
 * value within the tolerance where both name it, and where only one does, no further above the other's `rest`
 * than the tolerance (the other left it out, so it stood no higher than that); `rest` and the log-sum-exp within
 * the tolerance too. Honest replicas that differ by rounding may name other tokens near the k-th place; a
 * replica that moves a token's value, hides a likely token or changes the row's mass does not agree.
 */
export function agreeTopLogits(a: Float32Array, b: Float32Array, relative = RELATIVE_TOLERANCE): boolean {
  if (a.length !== b.length) return false;
  const x = topParts(a);
  const y = topParts(b);
  if (x.ids[0] !== y.ids[0]) return false;
  const tol = pairTolerance(x, y, relative);
  const near = (p: number, q: number) => p === q || Math.abs(p - q) <= tol;
  if (!near(x.rest, y.rest) || !near(x.logSumExp, y.logSumExp)) return false;
  const inY = valuesById(y);
  const inX = new Set<number>();
  for (let j = 0; j < x.ids.length; j++) {
    const id = x.ids[j] as number;
    const v = x.values[j] as number;
    inX.add(id);
    const w = inY.get(id);
    if (w === undefined ? v > y.rest + tol : !near(v, w)) return false;
  }
  for (let j = 0; j < y.ids.length; j++) if (!inX.has(y.ids[j] as number) && (y.values[j] as number) > x.rest + tol) return false;
  return true;
}

/**
 * The top form no minority can move (as medianOf for whole rows): a majority of bit-identical forms, or else the
 * median of each token's value over the agreeing forms, a form that left the token out counting its `rest` (it
 * stood no higher), the k largest of those kept, of the tokens a majority (`needed`) of them name; the median
 * `rest` and log-sum-exp.
 */
export const medianOfTop: Combine<Float32Array> = (forms, needed) => {
  const first = forms[0];
  if (first === undefined) throw new RangeError('nothing to combine');
  const same = majorityIdentical(forms, needed);
  if (same !== undefined) return { value: same, exact: true };
  const parts = forms.map(topParts);
  const k = first.length / 2 - 1;
  // Only tokens that `needed` of the forms name: a form says of a token it leaves out only that it stood no higher
  // than its `rest`, so a token one liar names (a tail token planted at the edge of the tolerance) is never served.
  const named = new Map<number, number>();
  for (const p of parts) for (const id of p.ids) named.set(id, (named.get(id) ?? 0) + 1);
  const union = [...named.keys()].filter((id) => (named.get(id) as number) >= Math.min(needed, parts.length));
  const columns = parts.map((p) => {
    const at = valuesById(p);
    return Float32Array.from(union, (id) => at.get(id) ?? p.rest);
  });
  const median = elementwiseMedian(columns);
  const order = union
    .map((_, j) => j)
    .sort((i, j) => (median[j] as number) - (median[i] as number) || (union[i] as number) - (union[j] as number));
  const rests = elementwiseMedian(parts.map((p) => Float32Array.of(p.rest)))[0] as number;
  const lse = elementwiseMedian(parts.map((p) => Float32Array.of(p.logSumExp)))[0] as number;
  const out = new Float32Array(first.length);
  // Fewer than k named by enough forms: the places left repeat the last (the row they make has only the agreed
  // tokens; agreedTokens counts them, and a draw that needs more fails by name).
  for (let j = 0; j < k; j++) {
    const at = order[Math.min(j, order.length - 1)] as number;
    out[j] = median[at] as number;
    out[k + j] = union[at] as number;
  }
  out[2 * k] = Math.min(
    out[k - 1] as number,
    Math.max(rests, order.length > k ? (median[order[k] as number] as number) : Number.NEGATIVE_INFINITY),
  );
  out[2 * k + 1] = lse;
  return { value: out, exact: false };
};

/** How many distinct tokens a form names (an accepted form may repeat its last where fewer were agreed: medianOfTop). */
export function agreedTokens(wire: Float32Array): number {
  return new Set(topParts(wire).ids).size;
}

/**
 * A whole row from a top form, the tokens left out at −Infinity: greedy and top_k ≤ k draw from it exactly what
 * they draw from the row it came from (sampling.ts reads only the most likely tokens, ties by the lower id).
 */
export function expandTopLogits(wire: Float32Array, vocabSize: number): Float32Array {
  const { values, ids } = topParts(wire);
  const row = new Float32Array(vocabSize).fill(Number.NEGATIVE_INFINITY);
  ids.forEach((id, j) => {
    row[id] = values[j] as number;
  });
  return row;
}

/**
 * The top form's size a session's draw needs, or null where it reads more than the most likely tokens (a
 * temperature with no top_k or one above MAX_TOP_LOGITS, logit_bias, penalties) or the vocabulary is too small
 * for a top form to save anything. At a temperature the coordinator asks for drawn forms first (drawn-forms.ts:
 * the majority's draw is served); a plain top form is then only greedy's, or where a drawn form would not fit.
 */
export function topLogitsFor(p: SamplingParams, vocabSize: number): number | null {
  if ((p.logitBias?.length ?? 0) > 0 || (p.frequencyPenalty ?? 0) !== 0 || (p.presencePenalty ?? 0) !== 0) return null;
  if (p.temperature !== 0 && (p.topK <= 0 || p.topK + TOP_MARGIN > MAX_TOP_LOGITS)) return null;
  const k = Math.max(MIN_TOP_LOGITS, p.temperature === 0 ? 0 : p.topK + TOP_MARGIN);
  return topFormFits(k, vocabSize) ? k : null;
}

/**
 * Whether a top form of `k` tokens is used with a `vocabSize` vocabulary: where it is at most a quarter of a row (a
 * 2 048-token vocabulary: k = 32, 66 floats, up to k = 255). Never as long as a row, so never mistaken for one.
 */
export function topFormFits(k: number, vocabSize: number): boolean {
  return topLogitsLength(k) * 4 <= vocabSize;
}

/**
 * A scored prompt's rows (completions' `echo` with `logprobs`): each row's log-probability is of a token the prompt
 * gives, which may stand anywhere in the row. Where the last stage knows the prompt (SessionOpen.scoreTokens), each
 * row goes as its top form of SCORED_TOP tokens followed by the value of the token it scores: 2 × 32 + 3 floats a
 * row (268 bytes) where a 49 152-token row is 196 KB, so that a step may carry up to MAX_SCORED_FORM_ROWS rows at
 * any vocabulary (4 whole rows fit a message at 49 152).
 */
export const SCORED_TOP = MIN_TOP_LOGITS;
/** Most rows a step of scored forms carries: as many as whole rows at a 2 048-token vocabulary. */
export const MAX_SCORED_FORM_ROWS = 96;
/** The most bytes of logits a scored step's graph makes before its forms are (in the replica's worker): 96 rows of 65 536. */
export const SCORED_OUTPUT_BYTES = 24 * 1024 * 1024;

/**
 * Rows a step of scored forms may carry at `vocabSize`: MAX_SCORED_FORM_ROWS, fewer where the graph's rows of
 * logits would pass SCORED_OUTPUT_BYTES (49 152 tokens: 96; 128 256: 49), at least 1.
 */
export function scoredFormRows(vocabSize: number): number {
  return Math.max(1, Math.min(MAX_SCORED_FORM_ROWS, Math.floor(SCORED_OUTPUT_BYTES / (4 * vocabSize))));
}

/** Whether a scored prompt's rows go as scored forms at `vocabSize` (where a form is at most a quarter of a row). */
export function scoredFormsFit(vocabSize: number): boolean {
  return topFormFits(SCORED_TOP, vocabSize);
}

/** Floats of one scored row's form. */
export const SCORED_ROW_LENGTH = topLogitsLength(SCORED_TOP) + 1;

/** The scored forms of `rows.length / vocabSize` rows, row r scoring `targets[r]` (a replica's side). */
export function scoredFormsOf(rows: Float32Array, vocabSize: number, targets: readonly number[]): Float32Array<ArrayBuffer> {
  const out = new Float32Array(targets.length * SCORED_ROW_LENGTH);
  targets.forEach((target, r) => {
    const row = rows.subarray(r * vocabSize, (r + 1) * vocabSize);
    out.set(topLogitsOf(row, SCORED_TOP), r * SCORED_ROW_LENGTH);
    out[(r + 1) * SCORED_ROW_LENGTH - 1] = row[target] ?? Number.NaN;
  });
  return out;
}

/** Row r's top form and the value of the token it scores (views, no copy). */
function scoredRow(wire: Float32Array, r: number): { form: Float32Array; target: number } {
  const at = r * SCORED_ROW_LENGTH;
  return { form: wire.subarray(at, at + SCORED_ROW_LENGTH - 1), target: wire[at + SCORED_ROW_LENGTH - 1] as number };
}

/**
 * Why `wire` is not the scored forms of rows scoring `targets` (row by row), or null where it is: each row a top
 * form (topLogitsProblem), and its scored token's value the form's where the form names the token, else no higher
 * than its `rest`.
 */
export function scoredFormsProblem(wire: Float32Array, targets: readonly number[], vocabSize: number): string | null {
  if (wire.length !== targets.length * SCORED_ROW_LENGTH)
    return `${wire.length} floats where ${targets.length} scored rows take ${targets.length * SCORED_ROW_LENGTH}`;
  for (const [r, token] of targets.entries()) {
    const { form, target } = scoredRow(wire, r);
    const problem = topLogitsProblem(form, SCORED_TOP, vocabSize);
    if (problem !== null) return `row ${r}: ${problem}`;
    const { ids, values, rest } = topParts(form);
    const named = ids.indexOf(token);
    if (named >= 0 ? target !== values[named] : !(target <= rest))
      return `row ${r}: token ${token}'s value ${target} is not what the row's form says of it`;
  }
  return null;
}

/** Scored forms agree where every row's top forms agree (agreeTopLogits) and its scored token's values are within the same tolerance. */
export function agreeScoredForms(a: Float32Array, b: Float32Array, relative = RELATIVE_TOLERANCE): boolean {
  if (a.length !== b.length || a.length % SCORED_ROW_LENGTH !== 0) return false;
  for (let r = 0; r < a.length / SCORED_ROW_LENGTH; r++) {
    const x = scoredRow(a, r);
    const y = scoredRow(b, r);
    if (!agreeTopLogits(x.form, y.form, relative)) return false;
    if (x.target !== y.target && !(Math.abs(x.target - y.target) <= pairTolerance(topParts(x.form), topParts(y.form), relative)))
      return false;
  }
  return true;
}

/** Scored forms no minority can move: a bit-identical majority, or row by row medianOfTop and the median scored value. */
export const medianOfScored: Combine<Float32Array> = (all, needed) => {
  const first = all[0];
  if (first === undefined) throw new RangeError('nothing to combine');
  const same = majorityIdentical(all, needed);
  if (same !== undefined) return { value: same, exact: true };
  const out = new Float32Array(first.length);
  for (let r = 0; r < first.length / SCORED_ROW_LENGTH; r++) {
    const rows = all.map((w) => scoredRow(w, r));
    out.set(
      medianOfTop(
        rows.map((x) => x.form),
        needed,
      ).value,
      r * SCORED_ROW_LENGTH,
    );
    out[(r + 1) * SCORED_ROW_LENGTH - 1] = elementwiseMedian(rows.map((x) => Float32Array.of(x.target)))[0] as number;
  }
  return { value: out, exact: false };
};

/**
 * Row r of accepted scored forms as a row of the vocabulary (the tokens it names, and the scored one, the rest
 * −Infinity) and its log-sum-exp: what log-probabilities are taken from.
 */
export function expandScoredRow(
  wire: Float32Array,
  r: number,
  target: number,
  vocabSize: number,
): { row: Float32Array; logSumExp: number } {
  const { form, target: value } = scoredRow(wire, r);
  const row = expandTopLogits(form, vocabSize);
  if (row[target] === Number.NEGATIVE_INFINITY) row[target] = value;
  return { row, logSumExp: topParts(form).logSumExp };
}
