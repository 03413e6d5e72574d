import type { Quorum } from '../../shared/vote/quorum.js';

/** Per-volunteer evidence from the votes: how often its output agreed with the majority. */
export interface AuditCounts {
  agreed: number;
  disagreed: number;
}

/** Connections that left mid-session whose late classifications still count (each into the record it had), at most. */
export const DEPARTED_KEPT = 4096;

/**
 * Classifies each replica's report once its step's vote is decided, also for
 * reports that arrive after the token was accepted (stragglers). Agreement is
 * always with the majority of the others, never with a volunteer's own claim.
 *
 * A volunteer's counts are its record: the connections of one client (its client key) share one (`share`), and one
 * that leaves in the middle of a session keeps counting into it for what its last steps are judged after it went
 * (`forget`): a liar that lied and left before the honest reports came is counted all the same (before, its late
 * disagreement made a fresh record under its gone id, which nothing read: a red-team find). A classification of
 * anyone else (not `known`: gone, and not kept) counts nowhere.
 */
export class Audit {
  private readonly counts = new Map<string, AuditCounts>();
  /**
   * Connections that left, with the record their late classifications count into and their identity keys (oldest
   * first, DEPARTED_KEPT).
   */
  private readonly departed = new Map<string, { readonly counts: AuditCounts; readonly keys: readonly string[] }>();
  private readonly classified = new WeakMap<object, Set<string>>();

  /** `onChange` hears of every new classification, and which (the coordinator judges reputation there). */
  constructor(
    private readonly onChange: (volunteer: string, counts: AuditCounts, agreed: boolean, counted: boolean) => void = () => {},
    /** Whether a classification of `volunteer`, neither counted here yet nor gone mid-session, makes it a record. */
    private readonly known: (volunteer: string) => boolean = () => true,
  ) {}

  /** Call after each report added to `q`: classifies the replicas not yet counted. */
  observe<T>(q: Quorum<T>): void {
    const s = q.state;
    if (s.kind !== 'agreed') return;
    let seen = this.classified.get(q);
    if (seen === undefined) {
      seen = new Set();
      this.classified.set(q, seen);
    }
    for (const id of s.agreeing) {
      if (seen.has(id)) continue;
      seen.add(id);
      this.credit(id, true);
    }
    for (const id of s.disagreeing) {
      if (seen.has(id)) continue;
      seen.add(id);
      this.credit(id, false);
    }
  }

  /** Counts one classification of a volunteer's output (made here, or by another server of a cluster). */
  credit(volunteer: string, agreed: boolean): void {
    const c = this.kept(volunteer);
    if (c === undefined) return;
    if (agreed) c.agreed += 1;
    else c.disagreed += 1;
    this.onChange(volunteer, { ...c }, agreed, false);
  }

  /**
   * Another server of a cluster classified a volunteer of this one, and counted it into its client's record in
   * Redis: `sum`, that record after it. Its counts here are raised to it (never lowered, never counted again).
   */
  raise(volunteer: string, sum: AuditCounts, agreed: boolean): void {
    const c = this.kept(volunteer);
    if (c === undefined) return;
    c.agreed = Math.max(c.agreed, sum.agreed);
    c.disagreed = Math.max(c.disagreed, sum.disagreed);
    this.onChange(volunteer, { ...c }, agreed, true);
  }

  /** A volunteer's counts, kept where it left (in a session); undefined where it is gone and not kept. */
  private kept(volunteer: string): AuditCounts | undefined {
    // Gone, and not kept (it left outside a session, or long ago): before, a fresh record under its id, kept forever.
    return this.counts.get(volunteer) ?? this.departed.get(volunteer)?.counts ?? (this.known(volunteer) ? this.of(volunteer) : undefined);
  }

  /** Sets a volunteer's counts as the server that keeps its record says (a cluster), without judging it here. */
  set(volunteer: string, counts: AuditCounts): void {
    const c = this.of(volunteer);
    c.agreed = counts.agreed;
    c.disagreed = counts.disagreed;
  }

  /**
   * `volunteer` counts into `record` from now on: the record of its client (one its other connections count into,
   * or one it left with before: record-memory.ts). Returned, so that the caller can keep it.
   */
  share(volunteer: string, record: AuditCounts): AuditCounts {
    this.counts.set(volunteer, record);
    return record;
  }

  /** The record `volunteer` counts into (the object itself: shared by its client's connections). */
  recordOf(volunteer: string): AuditCounts {
    return this.of(volunteer);
  }

  private of(volunteer: string): AuditCounts {
    let c = this.counts.get(volunteer);
    if (c === undefined) {
      c = { agreed: 0, disagreed: 0 };
      this.counts.set(volunteer, c);
    }
    return c;
  }

  get(volunteer: string): AuditCounts {
    return { ...(this.counts.get(volunteer) ?? this.departed.get(volunteer)?.counts ?? { agreed: 0, disagreed: 0 }) };
  }

  /** The identity keys of `volunteer`, a connection that left (its late classifications still count); else undefined. */
  departedKeys(volunteer: string): readonly string[] | undefined {
    return this.departed.get(volunteer)?.keys;
  }

  /** Does a connection that left mid-session still count into `record` (its late classifications may come)? */
  awaits(record: AuditCounts): boolean {
    for (const d of this.departed.values()) if (d.counts === record) return true;
    return false;
  }

  /**
   * `volunteer` (with these identity keys) left: where it left in the middle of a session (`midSession`: it was in a
   * running session's route), what its last steps are judged after it went still counts into its record, for the
   * DEPARTED_KEPT last such departures. Only those: a stranger's hellos, each gone at once, cannot push a liar's
   * entry out before its late vote lands (a red-team find: 4 216 hellos from 136 addresses did in 7 s).
   */
  forget(volunteer: string, keys: readonly string[] = [], midSession = false): void {
    const c = this.counts.get(volunteer);
    this.counts.delete(volunteer);
    if (c === undefined || !midSession) return;
    this.departed.set(volunteer, { counts: c, keys });
    for (const id of this.departed.keys()) {
      if (this.departed.size <= DEPARTED_KEPT) break;
      this.departed.delete(id);
    }
  }
}
