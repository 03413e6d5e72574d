// The names of the faults a volunteer may announce (test and demo servers
// only): part of the protocol, so that shared/protocol needs nothing from
// shared/swarm, which implements them (faults.ts there).

/**
 * Ways a volunteer can misbehave, injected on purpose in tests and demos.
 * A production server refuses volunteers that announce one.
 */
export const FAULT_KINDS = [
  'crash',
  'disconnect',
  'slow',
  'silent',
  'noise',
  'wrong-shape',
  'nan',
  'stale',
  'wrong-token',
  'nudge',
  'equivocate',
  /** A WebGPU volunteer whose GPU device is lost (destroyed through the real API) after FAULT_AFTER_STEPS steps. */
  'gpu-lost',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export function isFaultKind(v: unknown): v is FaultKind {
  return typeof v === 'string' && (FAULT_KINDS as readonly string[]).includes(v);
}
