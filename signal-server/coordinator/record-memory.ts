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

interface Entry<T> {
  readonly value: T;
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
  private readonly entries = new Map<string, Entry<ClientRecord>>();
  /**
   * Per client key, the sessions missed by its connections that left while another of the key stayed open (a tab
   * closed beside another): kept for the key, not handed to one connection, and judged with each of its connections'
   * own (`missedBy`), and merged into the record remembered when its last connection leaves. Before, each new tab
   * started with a clean window beside a sibling kept open, so a client could close a tab two strikes short of
   * eviction and open another, as often as it liked, each strike a join timeout wasted; without a sibling the record
   * remembered carried them already.
   */
  private readonly missed = new Map<string, Entry<NoShowWindow>>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Records remembered now (expired ones not yet swept included). */
  get size(): number {
    return this.entries.size;
  }

  /** Windows of missed sessions kept now for clients with a connection open (expired ones not yet swept included). */
  get missedSize(): number {
    return this.missed.size;
  }

  /**
   * The last connection of a client with these identity keys left with this record: kept under its client key, its
   * sessions missed merged with those its connections that left before it missed (`keepMissed`).
   */
  remember(keys: readonly string[], record: ClientRecord): void {
    const key = clientKeyOf(keys);
    if (key === undefined) return;
    const before = this.take(this.missed, key);
    this.put(this.entries, key, before === undefined ? record : { ...record, noShows: record.noShows.mergedWith(before) });
  }

  /** The record a volunteer with these identity keys resumes (its client key's), if any: taken, so resumed once. */
  resume(keys: readonly string[]): ClientRecord | undefined {
    return this.take(this.entries, clientKeyOf(keys));
  }

  /**
   * A connection with these identity keys left, another of its key still open, with its sessions in `window`: kept
   * where it missed any, and merged where the key has misses kept (its sessions served push older misses out).
   */
  keepMissed(keys: readonly string[], window: NoShowWindow): void {
    const key = clientKeyOf(keys);
    if (key === undefined || (window.count === 0 && !this.keepsMissed(keys))) return;
    const before = this.take(this.missed, key);
    this.put(this.missed, key, before === undefined ? window : window.mergedWith(before));
  }

  /** Whether sessions missed by connections of this client key that left beside another are kept (`keepMissed`). */
  keepsMissed(keys: readonly string[]): boolean {
    return this.keptMissed(keys) !== undefined;
  }

  /** A connection with these identity keys joined session `sessionId`: it counts in the key's kept window too. */
  showed(keys: readonly string[], sessionId: number): void {
    this.keptMissed(keys)?.showed(sessionId);
  }

  /**
   * The strikes a connection of this client is judged on: those of its own window (`own`) and of its client's
   * connections that left beside it, together, among the last sessions (NoShowWindow.countWith).
   */
  missedBy(keys: readonly string[], own: NoShowWindow): number {
    return own.countWith(this.keptMissed(keys));
  }

  /** The window kept for the client key among these identity keys (`keepMissed`), unless it has expired. */
  private keptMissed(keys: readonly string[]): NoShowWindow | undefined {
    const key = clientKeyOf(keys);
    const e = key === undefined ? undefined : this.missed.get(key);
    return e !== undefined && e.until > this.now() ? e.value : undefined;
  }

  private put<T>(map: Map<string, Entry<T>>, key: string, value: T): void {
    const now = this.now();
    map.delete(key);
    map.set(key, { value, until: now + RECORD_MEMORY_MS });
    // Every entry is kept as long, so the order they were put in (a key put again moves to the end) is the order they
    // expire in: the expired go from the front, then the oldest past MAX_REMEMBERED.
    for (const [k, e] of map) {
      if (e.until > now && map.size <= MAX_REMEMBERED) return;
      map.delete(k);
    }
  }

  private take<T>(map: Map<string, Entry<T>>, key: string | undefined): T | undefined {
    if (key === undefined) return undefined;
    const e = map.get(key);
    if (e === undefined) return undefined;
    map.delete(key);
    return e.until > this.now() ? e.value : undefined;
  }
}
