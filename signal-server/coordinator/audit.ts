import type { Quorum } from '../../shared/vote/quorum.js';

/** Per-volunteer evidence from the votes: how often its output agreed with the majority. */
export interface AuditCounts {
  agreed: number;
  disagreed: number;
}

/**
 * Classifies each replica's report once its step's vote is decided, also for
 * reports that arrive after the token was accepted (stragglers). Agreement is
 * always with the majority of the others, never with a volunteer's own claim.
 */
export class Audit {
  private readonly counts = new Map<string, AuditCounts>();
  private readonly classified = new WeakMap<object, Set<string>>();

  /** `onChange` hears of every new classification, and which (the coordinator judges reputation there). */
  constructor(private readonly onChange: (volunteer: string, counts: AuditCounts, agreed: boolean) => void = () => {}) {}

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
    const c = this.of(volunteer);
    if (agreed) c.agreed += 1;
    else c.disagreed += 1;
    this.onChange(volunteer, this.get(volunteer), agreed);
  }

  /** Sets a volunteer's counts as the server that keeps its record says (a cluster), without judging it here. */
  set(volunteer: string, counts: AuditCounts): void {
    this.counts.set(volunteer, { agreed: counts.agreed, disagreed: counts.disagreed });
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
    return { ...(this.counts.get(volunteer) ?? { agreed: 0, disagreed: 0 }) };
  }

  forget(volunteer: string): void {
    this.counts.delete(volunteer);
  }
}
