import type { AuditCounts } from './audit.js';
import type { NoShowWindow } from './no-show-window.js';
import { reputation } from './reputation.js';

/** How long a volunteer's record is remembered under its client key after it left (as a cluster keeps it in Redis). */
export const RECORD_MEMORY_MS = 24 * 3600 * 1000;
/** Records remembered at most: past it, the oldest go. */
export const MAX_REMEMBERED = 8192;

/** What a volunteer that comes back resumes: its votes' record and the sessions it missed among its last ones. */
export interface Remembered {
  readonly counts: AuditCounts;
  readonly noShows: NoShowWindow;
}

interface Entry extends Remembered {
  readonly until: number;
}

/** Worse: a lower reputation, or the same and more sessions missed. */
function worse(a: Remembered, b: Remembered): boolean {
  const ra = reputation(a.counts);
  const rb = reputation(b.counts);
  return ra < rb || (ra === rb && a.noShows.count > b.noShows.count);
}

/**
 * What one server remembers of the volunteers that left it, under their client keys (./identity.ts): their record
 * (agreements and disagreements with the majority, ./audit.ts) and the sessions they missed (./no-show-window.ts),
 * for RECORD_MEMORY_MS. Before, a volunteer's record went with its connection: a reload made an honest volunteer a
 * newcomer again, and a liar two disagreements short of eviction (./reputation.ts) got a clean record by connecting
 * again with its key, as often as it liked. A cluster of servers kept records in Redis under the client key
 * (../cluster/); a server alone now keeps them here, and a volunteer that comes back with its key resumes its
 * record, good or bad. The key is random, kept in the volunteer's browser and shown to nobody else. A client that
 * sends another key (or none) starts anew, as any new client does; the ban that follows an eviction is keyed on its
 * address too. Where two records meet under one key (two tabs of one browser), the worse is kept.
 */
export class RecordMemory {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Records remembered now (expired ones not yet swept included). */
  get size(): number {
    return this.entries.size;
  }

  /** A volunteer with these identity keys left with this record: kept under its client key, if it has one. */
  remember(keys: readonly string[], record: Remembered): void {
    const key = clientKeyOf(keys);
    if (key === undefined || (record.counts.agreed + record.counts.disagreed === 0 && record.noShows.count === 0)) return;
    const now = this.now();
    const before = this.live(key, now);
    if (before !== undefined && !worse(record, before)) return;
    this.entries.delete(key);
    this.entries.set(key, { counts: { ...record.counts }, noShows: record.noShows.copy(), until: now + RECORD_MEMORY_MS });
    this.bound(now);
  }

  /**
   * The record a volunteer with these identity keys starts with: its client key's, remembered (taken: resumed once),
   * or the worst record of the connections of its key still open (`alongside`, copied: two tabs of one browser are one
   * client), whichever is worse; undefined where there is neither. Before `alongside`, a liar kept a clean record by
   * opening its next connection before it closed the last (nothing was remembered yet when the new one said hello).
   */
  resume(keys: readonly string[], alongside: readonly Remembered[] = []): Remembered | undefined {
    const key = clientKeyOf(keys);
    if (key === undefined) return undefined;
    const remembered = this.live(key, this.now());
    if (remembered !== undefined) this.entries.delete(key);
    let found: Remembered | undefined = remembered;
    for (const r of alongside) if (found === undefined || worse(r, found)) found = r;
    return found === undefined ? undefined : { counts: { ...found.counts }, noShows: found.noShows.copy() };
  }

  private live(key: string, now: number): Entry | undefined {
    const e = this.entries.get(key);
    if (e === undefined) return undefined;
    if (e.until > now) return e;
    this.entries.delete(key);
    return undefined;
  }

  /**
   * Every record is kept as long, so the order they were remembered in (a key remembered again moves to the end) is
   * the order they expire in: the expired go from the front, then the oldest past MAX_REMEMBERED.
   */
  private bound(now: number): void {
    for (const [k, e] of this.entries) {
      if (e.until > now && this.entries.size <= MAX_REMEMBERED) return;
      this.entries.delete(k);
    }
  }
}

function clientKeyOf(keys: readonly string[]): string | undefined {
  return keys.find((k) => k.startsWith('key:'));
}
