import type { AuditCounts } from './audit.js';
import { clientKeyOf } from './identity.js';
import type { NoShowWindow } from './no-show-window.js';

/** How long a volunteer's record is remembered under its client key after it left (as a cluster keeps it in Redis). */
export const RECORD_MEMORY_MS = 24 * 3600 * 1000;
/** Records remembered at most: past it, the oldest go. */
export const MAX_REMEMBERED = 8192;

/**
 * A client's record: its outputs that agreed and disagreed with the majority (./audit.ts) and the sessions it missed
 * among its last ones (./no-show-window.ts). The objects themselves, shared by every open connection of the client
 * and counted into after its last connection left (late votes on its last steps).
 */
export interface ClientRecord {
  readonly counts: AuditCounts;
  readonly noShows: NoShowWindow;
}

interface Entry {
  readonly record: ClientRecord;
  readonly until: number;
}

/**
 * What one server remembers of the clients whose last connection left it, under their client keys (./identity.ts),
 * for RECORD_MEMORY_MS. Before, a volunteer's record went with its connection: a reload made an honest volunteer a
 * newcomer again, and a liar two disagreements short of eviction (./reputation.ts) got a clean record by connecting
 * again with its key, as often as it liked. A cluster of servers kept records in Redis under the client key
 * (../cluster/); a server alone now keeps them here, and a volunteer that comes back with its key resumes its
 * record, good or bad. The key is random, kept in the volunteer's browser and shown to nobody else. A client that
 * sends another key (or none) starts anew, as any new client does; the ban that follows an eviction is keyed on its
 * address too. While a client has a connection open, its record lives with it (Roster: its connections share one).
 */
export class RecordMemory {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Records remembered now (expired ones not yet swept included). */
  get size(): number {
    return this.entries.size;
  }

  /** The last connection of a client with these identity keys left with this record: kept under its client key. */
  remember(keys: readonly string[], record: ClientRecord): void {
    const key = clientKeyOf(keys);
    if (key === undefined) return;
    const now = this.now();
    this.entries.delete(key);
    this.entries.set(key, { record, until: now + RECORD_MEMORY_MS });
    this.bound(now);
  }

  /** The record a volunteer with these identity keys resumes (its client key's), if any: taken, so resumed once. */
  resume(keys: readonly string[]): ClientRecord | undefined {
    const key = clientKeyOf(keys);
    if (key === undefined) return undefined;
    const e = this.entries.get(key);
    if (e === undefined) return undefined;
    this.entries.delete(key);
    return e.until > this.now() ? e.record : undefined;
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
