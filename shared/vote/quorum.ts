import { agrees } from './tolerance.js';

/** How one replica's answer to a step ended (fed straight into the vote). */
export type ReplicaOutcome<T> =
  | { readonly status: 'fulfilled'; readonly replica: string; readonly value: T }
  | { readonly status: 'rejected'; readonly replica: string; readonly reason: string }
  | { readonly status: 'timeout'; readonly replica: string }
  | { readonly status: 'disconnected'; readonly replica: string };

/** The state of a vote after each arrival. */
export type QuorumState<T> =
  | { readonly kind: 'pending' }
  | {
      readonly kind: 'agreed';
      readonly value: T;
      /** Replicas whose value agreed with the winner, in arrival order. */
      readonly agreeing: readonly string[];
      /** Replicas whose value disagreed, or who answered with an error. */
      readonly disagreeing: readonly string[];
    }
  | { readonly kind: 'no-majority'; readonly clusters: readonly (readonly string[])[]; readonly failed: readonly string[] };

export type AgreeFn<T> = (a: T, b: T) => boolean;

/** ⌊r/2⌋ + 1: the smallest strict majority of r replicas. */
export function majority(replicas: number): number {
  return Math.floor(replicas / 2) + 1;
}

/**
 * A tolerance-aware vote over the replicas of one step. The first group of
 * mutually agreeing values to reach a strict majority wins; nobody waits for
 * stragglers after that. When no group can reach it any more, the step has
 * no majority: an error, never a guess.
 */
export class Quorum<T> {
  private readonly needed: number;
  private readonly pending: Set<string>;
  /** Groups of agreeing values; each compared through its first member. */
  private readonly clusters: { value: T; members: string[] }[] = [];
  private readonly failed: string[] = [];
  private decided: QuorumState<T> = { kind: 'pending' };
  private winner: { value: T; members: string[] } | null = null;

  constructor(
    replicas: readonly string[],
    private readonly agree: AgreeFn<T>,
  ) {
    if (replicas.length === 0) throw new RangeError('a vote needs at least one replica');
    this.pending = new Set(replicas);
    if (this.pending.size !== replicas.length) throw new RangeError('replica ids must be distinct');
    this.needed = majority(replicas.length);
  }

  get state(): QuorumState<T> {
    return this.decided;
  }

  /** Records one replica's outcome; outcomes from unknown or already-counted replicas are ignored (returns false). */
  add(outcome: ReplicaOutcome<T>): boolean {
    if (!this.pending.delete(outcome.replica)) return false;
    if (outcome.status !== 'fulfilled') {
      this.failed.push(outcome.replica);
    } else {
      const home = this.clusters.find((c) => this.agree(outcome.value, c.value));
      if (home === undefined) this.clusters.push({ value: outcome.value, members: [outcome.replica] });
      else home.members.push(outcome.replica);
    }
    this.update();
    return true;
  }

  private update(): void {
    if (this.decided.kind === 'no-majority') return;
    this.winner ??= this.clusters.find((c) => c.members.length >= this.needed) ?? null;
    const winner = this.winner;
    if (winner !== null) {
      this.decided = {
        kind: 'agreed',
        value: winner.value,
        agreeing: [...winner.members],
        disagreeing: [...this.clusters.filter((c) => c !== winner).flatMap((c) => c.members), ...this.failed],
      };
      return;
    }
    const best = Math.max(0, ...this.clusters.map((c) => c.members.length));
    if (best + this.pending.size < this.needed) {
      this.decided = { kind: 'no-majority', clusters: this.clusters.map((c) => [...c.members]), failed: [...this.failed] };
    }
  }

  /**
   * Puts `replacement` in the place of `replica` when that one has not
   * answered yet (it left): the newcomer's answer then counts in its place.
   */
  substitute(replica: string, replacement: string): boolean {
    if (!this.pending.delete(replica)) return false;
    this.pending.add(replacement);
    return true;
  }

  /** Replicas that have not answered yet (late or missing once the step is over). */
  get missing(): readonly string[] {
    return [...this.pending];
  }
}

/** Agreement of two float tensors (hidden states) under the measured tolerance. */
export const agreeTensors: AgreeFn<Float32Array> = (a, b) => agrees(a, b);

function argmaxOf(a: Float32Array): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if ((a[i] as number) > (a[best] as number)) best = i;
  return best;
}

/** Logits agree when within tolerance and their most likely token is the same. */
export const agreeLogits: AgreeFn<Float32Array> = (a, b) => agrees(a, b) && argmaxOf(a) === argmaxOf(b);
