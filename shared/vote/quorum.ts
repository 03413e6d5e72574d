import { agrees, agreesByRows } from './tolerance.js';

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
      /** The accepted value: the first agreeing value, or what `combine` makes of every agreeing value so far. */
      readonly value: T;
      /**
       * Whether more answers can no longer move the value: there is no `combine`, or
       * a majority of identical values, or every replica has answered. A consumer
       * that must not be steered waits a little for an unsettled vote to settle.
       */
      readonly settled: boolean;
      /** Replicas whose value agreed with the winner, in arrival order. */
      readonly agreeing: readonly string[];
      /** Replicas whose value disagreed, or who answered with an error. */
      readonly disagreeing: readonly string[];
    }
  | { readonly kind: 'no-majority'; readonly clusters: readonly (readonly string[])[]; readonly failed: readonly string[] };

export type AgreeFn<T> = (a: T, b: T) => boolean;

export interface QuorumOptions<T> {
  /** Agreeing answers needed; default ⌊replicas/2⌋+1. The coordinator passes the majority of the configured redundancy. */
  readonly needed?: number;
  /** Makes the accepted value from every agreeing value (in arrival order); default: the first one. */
  readonly combine?: Combine<T>;
  /**
   * Replicas with an established record. When the vote has any, a group wins
   * only with a strict majority of those that answered or are still to answer
   * (establishedDecide): newcomers confirm, never decide between established replicas.
   */
  readonly established?: (replica: string) => boolean;
}

/**
 * Makes one value from agreeing values; `exact` says a majority of them were identical (nothing could move it).
 * `established` says, value by value, whether its replica has an established record (all false where the vote
 * has none): a combine that counts claims keeps newcomers from outvoting them (drawn-forms.ts, majorityDraw).
 */
export type Combine<T> = (
  values: readonly T[],
  needed: number,
  established?: readonly boolean[],
  /** The vote's established replicas that answered or are still to (at least those among `values`). */
  establishedInVote?: number,
) => { readonly value: T; readonly exact: boolean };

/** ⌊r/2⌋ + 1: the smallest strict majority of r replicas. */
export function majority(replicas: number): number {
  return Math.floor(replicas / 2) + 1;
}

/**
 * Whether answers that `inGroup` of the vote's `all` established replicas (those that answered, or are still to)
 * gave may decide it: only with a strict majority of them, so newcomers confirm and never decide, and a group of
 * newcomers alone decides only where there is no established replica. Before, a group with one established replica
 * won against another outside it: a colluder that had earned its record honestly, beside a colluding newcomer in the
 * minority's seat (which a lone newcomer always takes), served its text as verified in 7 requests of 12 at r = 3,
 * and the honest replica outvoted lost its own standing (a red-team find). Between established replicas that split
 * evenly the vote is contested: the server computes the stage (session-repair.ts), never a newcomer decides it.
 */
export function establishedDecide(inGroup: number, all: number): boolean {
  return all === 0 || inGroup >= majority(all);
}

/**
 * A tolerance-aware vote over the replicas of one step. The first group of
 * mutually agreeing values (each agrees with each) to reach a strict majority
 * wins; nobody waits for stragglers after that. When no group can reach it any
 * more, the step has no majority: an error, never a guess.
 *
 * Agreement within a tolerance is not transitive: a liar answering first at the
 * tolerance's edge agrees with one honest replica and not with another. So a
 * value is never grouped by its agreement with one first member; a group is a
 * clique of the agreement graph, and once a group has won, every later (or
 * earlier) answer that agrees with one of its members counts in it too. Honest
 * replicas all agree with each other, a winning group of a majority holds one,
 * so every honest answer ends in the winner: none is counted as disagreeing,
 * and the combined value is taken over all of them.
 */
export class Quorum<T> {
  private readonly needed: number;
  private readonly pending: Set<string>;
  /** The values answered, in arrival order, and which of them agree (`near[i]` holds the indices agreeing with i). */
  private readonly answers: { replica: string; value: T; near: Set<number> }[] = [];
  private readonly failed: string[] = [];
  private decided: QuorumState<T> = { kind: 'pending' };
  /** The winning clique (indices into `answers`), fixed once found. */
  private winner: number[] | null = null;
  /** What `combine` made of the winner's values, and of how many. */
  private made: { of: number; value: T; exact: boolean } | null = null;

  private readonly combine: Combine<T> | null;
  private readonly established: ((replica: string) => boolean) | null;
  private readonly outcomes = new Map<string, ReplicaOutcome<T>>();

  /** Every outcome so far, in arrival order (a vote replaced before its majority is judged by the step's decided one). */
  get outcomesSoFar(): readonly ReplicaOutcome<T>[] {
    return [...this.outcomes.values()];
  }

  /** What `replica` answered, if it has (a retry carries the answers of replicas that stay into the new vote). */
  outcome(replica: string): ReplicaOutcome<T> | undefined {
    return this.outcomes.get(replica);
  }

  constructor(
    replicas: readonly string[],
    private readonly agree: AgreeFn<T>,
    options: QuorumOptions<T> = {},
  ) {
    if (replicas.length === 0) throw new RangeError('a vote needs at least one replica');
    this.pending = new Set(replicas);
    if (this.pending.size !== replicas.length) throw new RangeError('replica ids must be distinct');
    this.needed = options.needed ?? majority(replicas.length);
    if (!Number.isInteger(this.needed) || this.needed < 1)
      throw new RangeError(`a vote needs at least one agreeing answer, not ${this.needed}`);
    this.combine = options.combine ?? null;
    const established = options.established;
    this.established = established !== undefined && replicas.some((r) => established(r)) ? established : null;
  }

  /** Agreeing answers this vote needs. */
  get threshold(): number {
    return this.needed;
  }

  get state(): QuorumState<T> {
    return this.decided;
  }

  /** Records one replica's outcome; outcomes from unknown or already-counted replicas are ignored (returns false). */
  add(outcome: ReplicaOutcome<T>): boolean {
    if (!this.pending.delete(outcome.replica)) return false;
    this.outcomes.set(outcome.replica, outcome);
    if (outcome.status !== 'fulfilled') {
      this.failed.push(outcome.replica);
    } else {
      const at = this.answers.length;
      const near = new Set<number>();
      // One comparison with each earlier answer (agreement is taken as symmetric).
      for (const [j, other] of this.answers.entries())
        if (this.agree(outcome.value, other.value)) {
          near.add(j);
          other.near.add(at);
        }
      this.answers.push({ replica: outcome.replica, value: outcome.value, near });
    }
    this.update();
    return true;
  }

  /** The established replicas in a group, outside it (answered), and still to answer (null: a group of none yet). */
  private establishedAround(group: readonly number[] | null): { inGroup: number; outside: number; pending: number } | null {
    const est = this.established;
    if (est === null) return null;
    const members = group ?? [];
    return {
      inGroup: members.filter((i) => est(this.replicaAt(i))).length,
      outside: this.answers.filter((a, i) => !members.includes(i) && est(a.replica)).length,
      pending: [...this.pending].filter(est).length,
    };
  }

  /** The vote's established replicas that answered with a value or are still to answer. */
  establishedInVote(): number {
    const e = this.establishedAround(null);
    return e === null ? 0 : e.outside + e.pending;
  }

  /** Whether a group may win: with a strict majority of the established replicas (establishedDecide). */
  private eligible(group: readonly number[]): boolean {
    const e = this.establishedAround(group);
    return e === null || establishedDecide(e.inGroup, e.inGroup + e.outside + e.pending);
  }

  /** Whether a group could still win once the pending replicas answer (null: a group of pending replicas only). */
  private possible(group: readonly number[] | null): boolean {
    const size = group?.length ?? 0;
    if (size + this.pending.size < this.needed) return false;
    const e = this.establishedAround(group);
    // At best every pending established replica joins it (one that fails lowers the bar by no more than that).
    return e === null || e.inGroup + e.pending + e.outside === 0 || e.inGroup + e.pending > e.outside;
  }

  private replicaAt(i: number): string {
    return (this.answers[i] as { replica: string }).replica;
  }

  /** The maximal groups of mutually agreeing answers (Bron–Kerbosch with a pivot), each in arrival order, by first member. */
  private cliques(): number[][] {
    const out: number[][] = [];
    const near = (i: number) => (this.answers[i] as { near: Set<number> }).near;
    const grow = (taken: number[], can: number[], done: number[]): void => {
      if (can.length === 0 && done.length === 0) {
        out.push([...taken].sort((a, b) => a - b));
        return;
      }
      const pivot = [...can, ...done].reduce((best, i) =>
        can.filter((c) => near(i).has(c)).length > can.filter((c) => near(best).has(c)).length ? i : best,
      );
      let rest = [...can];
      for (const v of can.filter((c) => !near(pivot).has(c))) {
        grow(
          [...taken, v],
          rest.filter((c) => near(v).has(c)),
          done.filter((c) => near(v).has(c)),
        );
        rest = rest.filter((c) => c !== v);
        done = [...done, v];
      }
    };
    if (this.answers.length > 0)
      grow(
        [],
        this.answers.map((_, i) => i),
        [],
      );
    return out.sort((a, b) => {
      for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return (a[i] as number) - (b[i] as number);
      return a.length - b.length;
    });
  }

  /** The winner's members: its clique and every answer that agrees with one of them, in arrival order. */
  private membersOf(clique: readonly number[]): number[] {
    return this.answers.map((_, i) => i).filter((i) => clique.includes(i) || clique.some((c) => this.answers[c]?.near.has(i)));
  }

  private update(): void {
    if (this.decided.kind === 'no-majority') return;
    const cliques = this.winner === null ? this.cliques() : [];
    if (this.winner === null) {
      // The largest eligible clique of a majority; of equal ones, the first to have formed.
      let best: number[] | null = null;
      for (const c of cliques) {
        if (c.length < this.needed || !this.eligible(c)) continue;
        const formed = (x: number[]) => x[x.length - 1] as number;
        if (best === null || c.length > best.length || (c.length === best.length && formed(c) < formed(best))) best = c;
      }
      this.winner = best;
    }
    const winner = this.winner;
    if (winner !== null) {
      const members = this.membersOf(winner);
      let value = (this.answers[winner[0] as number] as { value: T }).value;
      let settled = true;
      if (this.combine !== null) {
        // Made again only when the winner gained a member (an answer elsewhere moves nothing in it).
        if (this.made === null || this.made.of !== members.length) {
          const values = members.map((i) => (this.answers[i] as { value: T }).value);
          const est = this.established;
          const flags = members.map((i) => est?.(this.replicaAt(i)) === true);
          this.made = { of: members.length, ...this.combine(values, this.needed, flags, this.establishedInVote()) };
        }
        value = this.made.value;
        settled = this.made.exact || this.pending.size === 0;
      }
      this.decided = {
        kind: 'agreed',
        value,
        settled,
        agreeing: members.map((i) => this.replicaAt(i)),
        disagreeing: [
          ...this.answers
            .map((_, i) => i)
            .filter((i) => !members.includes(i))
            .map((i) => this.replicaAt(i)),
          ...this.failed,
        ],
      };
      return;
    }
    const hope = cliques.some((c) => this.possible(c)) || this.possible(null);
    if (!hope) {
      this.decided = { kind: 'no-majority', clusters: cliques.map((c) => c.map((i) => this.replicaAt(i))), failed: [...this.failed] };
    }
  }

  /**
   * Whether the vote is still open only for replicas `which` picks: a group of agreeing answers has the majority's
   * size already, and every replica still to answer is one of them (established replicas a decision waits on).
   */
  waitsOnlyOn(which: (replica: string) => boolean): boolean {
    if (this.decided.kind !== 'pending' || this.pending.size === 0 || ![...this.pending].every(which)) return false;
    return this.cliques().some((c) => c.length >= this.needed);
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

  /** Each replica's outcome in a line, for the operator's log when a vote fails: "a agreed, b rejected (ERR_X), c missing". */
  describe(): string {
    const state = this.decided;
    const parts = [...this.outcomes.values()].map((o) => {
      if (o.status === 'rejected') return `${o.replica} failed (${o.reason})`;
      if (o.status !== 'fulfilled') return `${o.replica} ${o.status}`;
      return `${o.replica} ${state.kind === 'agreed' && state.agreeing.includes(o.replica) ? 'agreed' : 'answered'}`;
    });
    for (const id of this.pending) parts.push(`${id} missing`);
    return `${state.kind}: ${parts.join(', ')}`;
  }

  /** Replicas that have not answered yet (late or missing once the step is over). */
  get missing(): readonly string[] {
    return [...this.pending];
  }
}

/**
 * The value a minority cannot move: when a majority (`needed`) of the agreeing
 * values are bit-identical (honest replicas on the same backend are), that
 * value; otherwise the element-wise median of all of them. A liar inside the
 * tolerance can then shift nothing (identical majority) or, with fewer than a
 * majority identical, no further than the honest values around it.
 */
export const medianOf: Combine<Float32Array> = (values, needed) => {
  const first = values[0];
  if (first === undefined) throw new RangeError('nothing to combine');
  const same = majorityIdentical(values, needed);
  if (same !== undefined) return { value: same, exact: true };
  return { value: elementwiseMedian(values), exact: false };
};

/** A value of which `needed` of `values` (itself among them) are bit-identical copies, if any; each pair compared once. */
export function majorityIdentical(values: readonly Float32Array[], needed: number): Float32Array | undefined {
  if (needed <= 1) return values[0];
  const copies = values.map(() => 1);
  for (let i = 0; i < values.length; i++)
    for (let j = i + 1; j < values.length; j++) {
      if (!identical(values[i] as Float32Array, values[j] as Float32Array)) continue;
      copies[i] = (copies[i] as number) + 1;
      copies[j] = (copies[j] as number) + 1;
      if ((copies[i] as number) >= needed) return values[i];
    }
  return undefined;
}

/**
 * The element-wise median of equally long arrays (of an even count, the mean of the middle two, in float64): two to
 * five replicas by comparisons, more by an insertion sort of each column. A sort call per element
 * took 8 ms for three rows of a 49 152-token vocabulary here; this takes under 1.
 */
export function elementwiseMedian(values: readonly Float32Array[]): Float32Array {
  const [a, b, c, d, e] = values as [Float32Array, ...(Float32Array | undefined)[]];
  const n = a.length;
  const out = new Float32Array(n);
  if (values.length === 1) out.set(a);
  else if (values.length === 2 && b !== undefined) for (let i = 0; i < n; i++) out[i] = ((a[i] as number) + (b[i] as number)) / 2;
  else if (values.length === 3 && b !== undefined && c !== undefined)
    for (let i = 0; i < n; i++) {
      const x = a[i] as number;
      const y = b[i] as number;
      const z = c[i] as number;
      // The middle of three: the third held between the smaller and the larger of the other two.
      out[i] = Math.max(Math.min(x, y), Math.min(Math.max(x, y), z));
    }
  else if (values.length === 4 && b !== undefined && c !== undefined && d !== undefined)
    for (let i = 0; i < n; i++) {
      const w = a[i] as number;
      const x = b[i] as number;
      const y = c[i] as number;
      const z = d[i] as number;
      // The middle two of four: the larger of the pairs' smaller values and the smaller of their larger ones.
      out[i] = (Math.max(Math.min(w, x), Math.min(y, z)) + Math.min(Math.max(w, x), Math.max(y, z))) / 2;
    }
  else if (values.length === 5 && b !== undefined && c !== undefined && d !== undefined && e !== undefined)
    for (let i = 0; i < n; i++) {
      const w = a[i] as number;
      const x = b[i] as number;
      const y = c[i] as number;
      const z = d[i] as number;
      const v = e[i] as number;
      // The middle of five: the middle of the fifth and the two inner values of the pairs (as for four).
      const lo = Math.max(Math.min(w, x), Math.min(y, z));
      const hi = Math.min(Math.max(w, x), Math.max(y, z));
      out[i] = Math.max(Math.min(lo, hi), Math.min(Math.max(lo, hi), v));
    }
  else {
    const k = values.length;
    const column = new Float64Array(k);
    const mid = k >> 1;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < k; j++) {
        const v = (values[j] as Float32Array)[i] as number;
        let at = j;
        for (; at > 0 && (column[at - 1] as number) > v; at--) column[at] = column[at - 1] as number;
        column[at] = v;
      }
      out[i] = k % 2 === 1 ? (column[mid] as number) : ((column[mid - 1] as number) + (column[mid] as number)) / 2;
    }
  }
  return out;
}

/** Whether two arrays hold the same values, bit for bit (but ±0). */
export function identical(a: Float32Array, b: Float32Array): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Agreement of two float tensors (hidden states) under the measured tolerance. */
export const agreeTensors: AgreeFn<Float32Array> = (a, b) => agrees(a, b);

/** Logits agree when within tolerance and their most likely token is the same. */
export const agreeLogits: AgreeFn<Float32Array> = (a, b) => agreesByRows(a, b, a.length);

/**
 * Logits of one or more rows of `vocabSize` (a scored step's positions) agree when within tolerance and every
 * row's most likely token is the same; rows of other counts never agree.
 */
export function agreeLogitRows(vocabSize: number): AgreeFn<Float32Array> {
  return (a, b) => agreesByRows(a, b, vocabSize);
}
