import type { AuditCounts } from './audit.js';

/**
 * Reputation from the audit, in the spirit of BOINC's validation: agreement with
 * the majority of the other replicas raises it, disagreement lowers it. The
 * score is a smoothed agreement rate, (agreed + 1) / (agreed + disagreed + 2),
 * so a newcomer starts at 0.5 and one slip does not ruin a long record.
 */
export function reputation(c: AuditCounts): number {
  return (c.agreed + 1) / (c.agreed + c.disagreed + 2);
}

/** Disagreements before a volunteer can be evicted: one stray result is not enough. */
export const EVICT_AFTER_DISAGREEMENTS = 3;
/** Below this score, with enough disagreements, a volunteer is evicted. */
export const EVICT_BELOW_REPUTATION = 0.4;
/** How long an evicted volunteer's client key is refused. */
export const BAN_MS = 10 * 60 * 1000;

export function shouldEvict(c: AuditCounts): boolean {
  return c.disagreed >= EVICT_AFTER_DISAGREEMENTS && reputation(c) < EVICT_BELOW_REPUTATION;
}

/** Client keys refused until a time (ms since the epoch). */
export class BanList {
  private readonly until = new Map<string, number>();

  ban(key: string, now = Date.now()): void {
    this.banUntil(key, now + BAN_MS);
  }

  /** Refuses `key` until `untilMs` (ms since the epoch), or longer if it is banned longer already. */
  banUntil(key: string, untilMs: number): void {
    this.until.set(key, Math.max(untilMs, this.until.get(key) ?? 0));
  }

  banned(key: string, now = Date.now()): boolean {
    const t = this.until.get(key);
    if (t === undefined) return false;
    if (t <= now) {
      this.until.delete(key);
      return false;
    }
    return true;
  }
}
