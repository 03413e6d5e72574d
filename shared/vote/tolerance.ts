/**
 * When two float outputs of the same computation "agree": different backends
 * (WebGPU vs WASM, one GPU vs another) round differently, so outputs are never
 * compared bit for bit.
 *
 * Rule: max|a − b| ≤ RELATIVE_TOLERANCE · max(1, max|b|).
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
  return maxAbsDifference(a, b) <= relative * Math.max(1, maxAbs(b));
}
