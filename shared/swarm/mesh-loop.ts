/**
 * The mesh loop's pure parts: a last-stage replica samples its own logits and
 * sends the token to stage 0's replicas as a one-value frame; stage 0 takes a
 * token for a step once a majority of the route's last-stage replicas sent the
 * same one. The coordinator still verifies every step (see generation.ts).
 */
import { randomAt, type SamplingParams, sampleToken } from '../model/sampling.js';
import type { ActivationFrame } from '../protocol/frames.js';
import type { ReceivedReport } from '../protocol/messages.js';
import { fingerprint } from '../vote/fingerprint.js';
import { majority } from '../vote/quorum.js';

/**
 * How many steps stage 0 may compute on mesh tokens beyond the last step whose
 * token the coordinator verified: a lying last stage wastes at most this many
 * steps of every stage before the roll-back.
 */
export const MESH_AHEAD = 2;

/**
 * Step t's token as every party draws it: the logits' last row, the session's
 * sampler, and the stream's t-th number (randomAt), so a replica, the
 * coordinator after a roll-back and the reference runner agree. `generated`
 * (the completion before step t) matters only with penalties, which the mesh
 * loop never runs with (`usesHistory`): its last stage does not hold them.
 */
export function sampleAt(logits: ArrayLike<number>, sampling: SamplingParams, step: number, generated: readonly number[] = []): number {
  return sampleToken(logits, sampling, () => randomAt(sampling.seed, step), generated);
}

/** The frame that carries the token for `step` (computed from step − 1's logits) from a last-stage replica. */
export function tokenFrame(sessionId: number, step: number, stage: number, replica: number, token: number): ActivationFrame {
  return { sessionId, step, stage, replica, dims: [1], data: Float32Array.of(token) };
}

/** The token a frame carries, or a named reason it carries none (float32 holds every id below 2^24 exactly). */
export function tokenOf(f: ActivationFrame, vocabSize: number): number | string {
  const v = f.data[0];
  if (f.dims.length !== 1 || f.dims[0] !== 1 || f.data.length !== 1 || v === undefined) return `ERR_FRAME_SHAPE [${f.dims.join(', ')}]`;
  if (!Number.isInteger(v) || v < 0 || v >= vocabSize) return `ERR_BAD_TOKEN ${v}`;
  return v;
}

/** The fingerprint stage 0 reports for a token (the same as for its input of one token). */
export function tokenPrint(token: number): number[] {
  return fingerprint([token]);
}

/**
 * Stage 0's count of the last stage's tokens, per step: one token per sender
 * and step (the first; a second is ignored), a token taken once a majority of
 * the senders named agree.
 */
export class TokenVotes {
  private readonly votes = new Map<number, Map<string, number>>();

  constructor(private senders: readonly string[]) {}

  /** A replacement in the last stage: only the route's replicas count. */
  setSenders(senders: readonly string[]): void {
    this.senders = senders;
  }

  /** Whether `from` is the route's last-stage replica number `replica`. */
  named(from: string, replica: number): boolean {
    return this.senders[replica] === from;
  }

  /** Counts `from`'s token for `step`; the token a majority agrees on, or null while none does. */
  add(step: number, from: string, token: number): number | null {
    let m = this.votes.get(step);
    if (m === undefined) {
      m = new Map();
      this.votes.set(step, m);
    }
    if (!m.has(from)) m.set(from, token);
    const needed = majority(this.senders.length);
    const count = [...m].filter(([id, t]) => t === token && this.senders.includes(id)).length;
    return count >= needed ? token : null;
  }

  /** The senders heard for `step` so far. */
  heard(step: number): string[] {
    return [...(this.votes.get(step)?.keys() ?? [])];
  }

  /** What each sender sent for `step`: reported with stage 0's digest, so the coordinator can tell a liar. */
  reports(step: number): ReceivedReport[] {
    return [...(this.votes.get(step) ?? [])].map(([from, token]) => ({ from, digest: tokenPrint(token) }));
  }

  /** Forgets the steps before `step` (computed) or from `step` on (rolled back). */
  forget(step: number, which: 'before' | 'from'): void {
    for (const k of [...this.votes.keys()]) if (which === 'before' ? k < step : k >= step) this.votes.delete(k);
  }
}
