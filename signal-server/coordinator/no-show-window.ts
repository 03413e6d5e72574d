/**
 * A volunteer's record of showing up, over its last NO_SHOW_WINDOW sessions:
 * which of them it missed (did not join in time, or a majority of a stage
 * beside it could not reach it). Strikes fall out of the window as it serves,
 * so a volunteer kept open for hours is not evicted for three misses spread
 * over hundreds of sessions (a tab throttled once, a slow connection to a new
 * neighbour), while one that misses again and again is, as soon as before.
 */
export const NO_SHOW_WINDOW = 20;

/** One of a connection's own sessions: whether it missed it, and when that was recorded (Date.now()). */
export interface SessionShown {
  readonly sessionId: number;
  readonly missed: boolean;
  readonly at: number;
}

export class NoShowWindow {
  /**
   * Session id → missed; insertion order is the order the sessions came. Negative ids are sessions taken up from the
   * client's connections that left (prepend).
   */
  private readonly sessions = new Map<number, boolean>();
  /** Session id → when its entry was recorded (Date.now()), for those of its own. */
  private readonly at = new Map<number, number>();
  private missed = 0;
  /** Sessions taken up so far (their ids, negated). */
  private history = 0;

  /** Strikes among the last NO_SHOW_WINDOW sessions. */
  get count(): number {
    return this.missed;
  }

  /** It missed `sessionId` (once per session, however many ways): false where that session was counted already. */
  miss(sessionId: number): boolean {
    if (this.sessions.get(sessionId) === true) return false;
    if (this.sessions.has(sessionId)) this.sessions.delete(sessionId);
    this.sessions.set(sessionId, true);
    this.at.set(sessionId, Date.now());
    this.missed += 1;
    this.trim();
    return true;
  }

  /** It joined `sessionId` in time; a miss of that session recorded before or after stands. */
  showed(sessionId: number): void {
    if (this.sessions.has(sessionId)) return;
    this.sessions.set(sessionId, false);
    this.at.set(sessionId, Date.now());
    this.trim();
  }

  /**
   * This window's strikes (its own last NO_SHOW_WINDOW sessions), and those of `other` (the sessions its client's
   * other connections missed) that are not this window's and are among the last NO_SHOW_WINDOW sessions of the two
   * together. Sessions are ordered by their ids, which a server gives in increasing order: so `other`'s misses fall
   * out as the client's connections serve, and this window's own never do before it serves (counting only the
   * newest of the two together let a tab's own misses fall out as its sibling tabs served: a red-team find).
   */
  countWith(other: NoShowWindow | undefined): number {
    if (other === undefined) return this.count;
    const newest = new Set(
      this.union(other)
        .slice(-NO_SHOW_WINDOW)
        .map(([id]) => id),
    );
    let count = this.count;
    for (const [id, missed] of other.sessions) if (missed && !this.sessions.has(id) && newest.has(id)) count += 1;
    return count;
  }

  /** A window of this one's and `other`'s sessions together (as countWith counts them): the newest NO_SHOW_WINDOW. */
  mergedWith(other: NoShowWindow): NoShowWindow {
    const out = new NoShowWindow();
    for (const [id, missed] of this.union(other)) {
      if (missed) out.miss(id);
      else out.showed(id);
    }
    return out;
  }

  /** Its own sessions (not those taken up), oldest first: each with whether it was missed, and when that was recorded. */
  own(): SessionShown[] {
    return [...this.sessions]
      .filter(([id]) => id >= 0)
      .map(([sessionId, missed]) => ({ sessionId, missed, at: this.at.get(sessionId) ?? 0 }));
  }

  /**
   * Puts `older` (whether each of the sessions its client's connections that left had was missed, oldest first)
   * before its own, and keeps the newest NO_SHOW_WINDOW: a connection of a cluster's server takes up what its key's
   * last connections, on any server, missed and joined. They are history: never matched with a session of its own by
   * id (a server that restarts gives ids again), nor counted its own (own: a connection that took them up and left
   * must not write them again as newer than they are, or a tab that served nothing would age its key's misses out).
   */
  prepend(older: readonly boolean[]): void {
    const own = [...this.sessions];
    this.sessions.clear();
    this.missed = 0;
    for (const missed of older) this.put(-++this.history, missed);
    for (const [id, missed] of own) this.put(id, missed);
    this.trim();
  }

  private put(id: number, missed: boolean): void {
    this.sessions.set(id, missed);
    if (missed) this.missed += 1;
  }

  private union(other: NoShowWindow): [number, boolean][] {
    const all = new Map(this.sessions);
    for (const [id, missed] of other.sessions) all.set(id, missed || all.get(id) === true);
    return [...all].sort((a, b) => a[0] - b[0]);
  }

  private trim(): void {
    for (const [id, missed] of this.sessions) {
      if (this.sessions.size <= NO_SHOW_WINDOW) return;
      this.sessions.delete(id);
      this.at.delete(id);
      if (missed) this.missed -= 1;
    }
  }
}
