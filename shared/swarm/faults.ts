import { seededRandom } from '../model/sampling.js';
import type { FaultKind } from '../protocol/faults.js';
import { RELATIVE_TOLERANCE } from '../vote/tolerance.js';

export { FAULT_KINDS, type FaultKind, isFaultKind } from '../protocol/faults.js';

/** What a faulty replica does to its outputs. The page handles crash, disconnect and gpu-lost itself. */
export interface FaultBehaviour {
  /** A changed output, or null to send nothing (silent). */
  output(step: number, data: Float32Array, isLogits: boolean): Float32Array | null;
  /** Delay before each step's compute, in ms (slow). */
  readonly delayMs: number;
  /** What is sent to the next stage when it differs from what is reported (equivocation); absent = the output. */
  readonly frames?: (step: number, data: Float32Array) => Float32Array;
  /** The token a last-stage replica sends stage 0 over the mesh loop for `step` instead of the one it sampled; absent = the sampled one. */
  readonly token?: (step: number, sampled: number) => number;
}

/** How far a `nudge` liar moves each value: inside the vote's tolerance, so it is always "in agreement". */
export const NUDGE_FRACTION_OF_TOLERANCE = 0.9;

/** Steps a `crash` or `disconnect` volunteer computes before it goes (a `gpu-lost` one before its device is lost). */
export const FAULT_AFTER_STEPS = 3;
/** The delay of a `slow` volunteer per step. */
export const SLOW_DELAY_MS = 1000;

export function faultBehaviour(kind: FaultKind, seed: number): FaultBehaviour {
  const random = seededRandom(seed);
  let previous: Float32Array | null = null;
  const honest: FaultBehaviour = { output: (_s, d) => d, delayMs: 0 };
  switch (kind) {
    case 'crash':
    case 'disconnect':
    case 'gpu-lost':
      return honest;
    case 'slow':
      return { ...honest, delayMs: SLOW_DELAY_MS };
    case 'silent':
      return { output: () => null, delayMs: 0 };
    case 'noise':
      return { output: (_s, d) => d.map((v) => v + (random() - 0.5)), delayMs: 0 };
    case 'nan':
      return { output: (_s, d) => d.map((v, i) => (i % 3 === 0 ? Number.NaN : v)), delayMs: 0 };
    case 'wrong-shape':
      // One value short: the frame's shape no longer fits the model.
      return { output: (_s, d) => d.slice(0, Math.max(1, d.length - 1)), delayMs: 0 };
    case 'stale':
      return {
        output: (_s, d) => {
          const out = previous !== null && previous.length === d.length ? previous : d.map((v) => -v);
          previous = d;
          return out;
        },
        delayMs: 0,
      };
    case 'wrong-token':
      // A last-stage liar: makes the runner-up the most likely token; other stages pass through.
      return {
        output: (_s, d, isLogits) => {
          if (!isLogits) return d;
          const out = d.slice();
          let best = 0;
          for (let i = 1; i < out.length; i++) if ((out[i] as number) > (out[best] as number)) best = i;
          out[best] = (out[best] as number) - 1000;
          return out;
        },
        delayMs: 0,
      };
    case 'nudge':
      // Inside the tolerance (so never outvoted), in a direction of its own choosing:
      // on the logits it lifts a seeded half of the vocabulary to steer sampling.
      return {
        output: (_s, d) => {
          let top = 1;
          for (const v of d) top = Math.max(top, Math.abs(v));
          const by = NUDGE_FRACTION_OF_TOLERANCE * RELATIVE_TOLERANCE * top;
          const sign = seededRandom(seed);
          return d.map((v) => v + (sign() < 0.5 ? by : -by));
        },
        delayMs: 0,
      };
    case 'equivocate': {
      // Reports its honest output to the coordinator, but sends the next stage other hidden states.
      return {
        output: (_s, d) => d,
        delayMs: 0,
        frames: (_s, d) => d.map((v, i) => (i % 2 === 0 ? -v : v * 1.5 + 0.25)),
      };
    }
    default: {
      const never: never = kind;
      throw new Error(`unknown fault ${String(never)}`);
    }
  }
}
