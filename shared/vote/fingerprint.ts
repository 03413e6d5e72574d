import { agrees, RELATIVE_TOLERANCE } from './tolerance.js';

/** Positions sampled from an output for its fingerprint. */
export const FINGERPRINT_POINTS = 32;

/**
 * A compact fingerprint of a float output: its values at evenly spaced
 * positions, then its L2 norm. Replicas that agree within the tolerance have
 * fingerprints that agree within it too, so the coordinator can tell from a few
 * numbers per step which replica disagreed with the majority.
 */
export function fingerprint(data: ArrayLike<number>, points = FINGERPRINT_POINTS): number[] {
  const n = data.length;
  const out: number[] = [];
  if (n === 0) return [0];
  const count = Math.min(points, n);
  for (let i = 0; i < count; i++) out.push(data[Math.floor((i * n) / count)] as number);
  let sq = 0;
  for (let i = 0; i < n; i++) sq += (data[i] as number) * (data[i] as number);
  out.push(Math.sqrt(sq));
  return out;
}

/**
 * Two fingerprints agree when their sampled values agree under the tolerance
 * (scaled by the values, not by the norm, which would loosen it) and their
 * norms agree relative to their size.
 */
export function agreeFingerprints(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length || a.length < 2) return false;
  const na = a[a.length - 1] as number;
  const nb = b[b.length - 1] as number;
  if (
    !Number.isFinite(na) ||
    !Number.isFinite(nb) ||
    Math.abs(na - nb) > RELATIVE_TOLERANCE * Math.max(1, Math.min(Math.abs(na), Math.abs(nb)))
  )
    return false;
  return agrees(a.slice(0, -1), b.slice(0, -1));
}
