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
