/**
 * When two float outputs of the same computation "agree": different backends
 * (WebGPU vs WASM, one GPU vs another) round differently, so outputs are never
 * compared bit for bit.
 *
 * Rule: max|a − b| ≤ RELATIVE_TOLERANCE · max(1, min(max|a|, max|b|)): the same
 * both ways round, so which of two answers came first does not matter, and an
 * answer that inflates its own values only narrows the tolerance it is held to.
 *
 * Measured by e2e/stage-in-browser.spec.ts on austen-2m (3 stages, the three
 * golden prompts), SwiftShader WebGPU against WASM in Chromium 156: largest
 * differences 3.8e-4 / 7.8e-4 (hidden states after stages 0 and 1) and 1.5e-3
 * (logits), relative to the tensor's largest value 3.8e-5 / 7.6e-5 / 9.0e-5.
 * 1e-3 sits 11× above that spread (the test keeps it at least 5× above) and far
 * below any change that alters a token. The same holds for every weight
 * precision: with f16, q8 or q4 stage files (e2e/precision-in-browser.spec.ts)
 * the backends differ by 3.8e-5 / 7.6e-5–7.9e-5 / 8.5e-5–9.1e-5 relative, as
 * with f32, because the arithmetic stays float32 — so one tolerance serves all
 * (replicas of a stage always run the same precision: the manifest fixes it).
 * Real GPUs need it measured again.
 */
export const RELATIVE_TOLERANCE = 1e-3;

/** The largest absolute difference, or Infinity when lengths differ or a value is not finite. */
export function maxAbsDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Number.POSITIVE_INFINITY;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs((a[i] as number) - (b[i] as number));
    if (!Number.isFinite(d)) return Number.POSITIVE_INFINITY;
    if (d > m) m = d;
  }
  return m;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] as number));
  return m;
}

/** Whether `a` agrees with `b` under the rule above. */
export function agrees(a: ArrayLike<number>, b: ArrayLike<number>, relative = RELATIVE_TOLERANCE): boolean {
  return agreesByRows(a, b, 0, relative);
}

/**
 * `agrees`, and where `rowSize` is not 0, the same most likely entry (the first largest, as `argmax`) in each row
 * of `rowSize` values (rows of logits: the same token): one pass over both arrays, what the coordinator runs on
 * every replica's logits of every step (a 49 152-token row in 0.2–0.3 ms here, a third of three passes).
 * Lengths that differ, or that are not whole rows, never agree; neither do values that are not finite.
 */
export function agreesByRows(a: ArrayLike<number>, b: ArrayLike<number>, rowSize: number, relative = RELATIVE_TOLERANCE): boolean {
  if (a.length !== b.length) return false;
  const row = rowSize > 0 ? rowSize : a.length;
  if (a.length % Math.max(1, row) !== 0) return false;
  let worst = 0;
  let largestA = 0;
  let largestB = 0;
  for (let at = 0; at < a.length; at += row) {
    let bestA = at;
    let bestB = at;
    let topA = Number.NEGATIVE_INFINITY;
    let topB = Number.NEGATIVE_INFINITY;
    for (let i = at; i < at + row; i++) {
      const x = a[i] as number;
      const y = b[i] as number;
      const d = Math.abs(x - y);
      // NaN and ±Infinity in either: never agree (maxAbsDifference's Infinity).
      if (!(d <= Number.MAX_VALUE)) return false;
      if (d > worst) worst = d;
      if (Math.abs(x) > largestA) largestA = Math.abs(x);
      if (Math.abs(y) > largestB) largestB = Math.abs(y);
      if (x > topA) {
        topA = x;
        bestA = i;
      }
      if (y > topB) {
        topB = y;
        bestB = i;
      }
    }
    if (rowSize > 0 && bestA !== bestB) return false;
  }
  return worst <= relative * Math.max(1, Math.min(largestA, largestB));
}
