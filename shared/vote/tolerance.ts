/**
 * When two float outputs of the same computation "agree": different backends
 * (WebGPU vs WASM, one GPU vs another) round differently, so outputs are never
 * compared bit for bit.
 *
 * Rule: max|a − b| ≤ RELATIVE_TOLERANCE · max(1, max|b|).
 *
 * Measured by e2e/stage-in-browser.spec.ts on austen-2m (3 stages, the golden
 * prompts), SwiftShader WebGPU against WASM in Chromium: see the figures it
 * prints and the README. 1e-3 sits well above that spread and far below any
 * change that alters a token.
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
  return maxAbsDifference(a, b) <= relative * Math.max(1, maxAbs(b));
}
