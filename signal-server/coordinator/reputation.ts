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

/** Bans kept before the expired ones are swept out (then twice what is left, at least this). */
const BAN_SWEEP_AT = 1024;

/**
 * Client keys refused until a time (ms since the epoch). An expired ban is
 * dropped when its key comes back, and all of them whenever the list has
 * doubled since the last sweep: before, a ban whose key never came back (a
 * client that moves on to new addresses, each evicted once) stayed for good.
 */
export class BanList {
  private readonly until = new Map<string, number>();
  private sweepAt = BAN_SWEEP_AT;

  ban(key: string, now = Date.now()): void {
    this.banUntil(key, now + BAN_MS, now);
  }

  /** Refuses `key` until `untilMs` (ms since the epoch), or longer if it is banned longer already. */
  banUntil(key: string, untilMs: number, now = Date.now()): void {
    this.until.set(key, Math.max(untilMs, this.until.get(key) ?? 0));
    if (this.until.size < this.sweepAt) return;
    for (const [k, t] of this.until) if (t <= now) this.until.delete(k);
    this.sweepAt = Math.max(BAN_SWEEP_AT, 2 * this.until.size);
  }

  /** Bans held now, expired ones not yet swept included. */
  get size(): number {
    return this.until.size;
  }

  /** The bans in force at `now`: each key with when its ban ends (ms since the epoch). */
  inForce(now = Date.now()): [string, number][] {
    return [...this.until].filter(([, t]) => t > now);
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
