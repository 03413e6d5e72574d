/**
 * Log-probabilities of the model's distribution (temperature 1, no top-p) at
 * one position, from the agreed logits the token was sampled from.
 */

/** OpenAI's largest `top_logprobs` (chat); completions allow up to 5. */
export const MAX_TOP_LOGPROBS = 20;
export const MAX_COMPLETION_LOGPROBS = 5;

/** What OpenAI reports for a token too unlikely to have a finite log-probability (JSON has no -Infinity). */
export const LOGPROB_FLOOR = -9999;

/**
 * log softmax in float64: x - max - log Σ exp(x - max). Non-finite logits count as impossible. Where the row's
 * log-sum-exp is given (a top form's row, whose tokens left out are −Infinity here), x − it.
 */
export function logSoftmax(logits: ArrayLike<number>, logSumExp?: number): Float64Array {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i] as number;
    if (Number.isFinite(v) && v > max) max = v;
  }
  const out = new Float64Array(logits.length);
  if (max === Number.NEGATIVE_INFINITY) return out.fill(Number.NEGATIVE_INFINITY);
  let sum = 0;
  if (logSumExp === undefined)
    for (let i = 0; i < logits.length; i++) {
      const v = logits[i] as number;
      if (Number.isFinite(v)) sum += Math.exp(v - max);
    }
  const shift = logSumExp ?? max + Math.log(sum);
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i] as number;
    out[i] = Number.isFinite(v) ? v - shift : Number.NEGATIVE_INFINITY;
  }
  return out;
}

/** The indices of the `k` largest values, largest first; ties go to the lower index (as argmax picks). */
export function topIndices(values: ArrayLike<number>, k: number): number[] {
  if (k <= 0) return [];
  const better = (a: number, b: number) => (values[a] as number) > (values[b] as number) || (values[a] === values[b] && a < b);
  // A small sorted list, insertion per element: k ≤ 20, so this is O(n·k) with no allocation per element.
  const top: number[] = [];
  for (let i = 0; i < values.length; i++) {
    if (top.length === k) {
      if (!better(i, top[k - 1] as number)) continue;
      top.pop();
    }
    let j = top.length;
    top.push(i);
    while (j > 0 && better(i, top[j - 1] as number)) {
      top[j] = top[j - 1] as number;
      j--;
    }
    top[j] = i;
  }
  return top;
}

/** One generated token's log-probability and the `k` most likely tokens at its position. */
export interface TokenLogprob {
  readonly token: number;
  readonly logprob: number;
  readonly top: readonly { readonly token: number; readonly logprob: number }[];
}

/** A finite number for JSON. */
export function finite(logprob: number): number {
  return Number.isFinite(logprob) ? logprob : LOGPROB_FLOOR;
}

/** The log-probability of `token` and the top `k` at the position whose logits are given (and log-sum-exp, logSoftmax). */
export function tokenLogprob(logits: ArrayLike<number>, token: number, k: number, logSumExp?: number): TokenLogprob {
  const lp = logSoftmax(logits, logSumExp);
  return {
    token,
    logprob: finite(lp[token] ?? Number.NEGATIVE_INFINITY),
    top: topIndices(lp, k).map((t) => ({ token: t, logprob: finite(lp[t] as number) })),
  };
}
