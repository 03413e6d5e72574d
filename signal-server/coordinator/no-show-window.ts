/**
 * A volunteer's record of showing up, over its last NO_SHOW_WINDOW sessions:
 * which of them it missed (did not join in time, or a majority of a stage
 * beside it could not reach it). Strikes fall out of the window as it serves,
 * so a volunteer kept open for hours is not evicted for three misses spread
 * over hundreds of sessions (a tab throttled once, a slow connection to a new
 * neighbour), while one that misses again and again is, as soon as before.
 */
export const NO_SHOW_WINDOW = 20;

export class NoShowWindow {
  /** Session id → missed; insertion order is the order the sessions came. */
  private readonly sessions = new Map<number, boolean>();
  private missed = 0;

  /** Strikes among the last NO_SHOW_WINDOW sessions. */
  get count(): number {
    return this.missed;
  }

  /** It missed `sessionId` (once per session, however many ways): false where that session was counted already. */
  miss(sessionId: number): boolean {
    if (this.sessions.get(sessionId) === true) return false;
    if (this.sessions.has(sessionId)) this.sessions.delete(sessionId);
    this.sessions.set(sessionId, true);
    this.missed += 1;
    this.trim();
    return true;
  }

  /** It joined `sessionId` in time; a miss of that session recorded before or after stands. */
  showed(sessionId: number): void {
    if (this.sessions.has(sessionId)) return;
    this.sessions.set(sessionId, false);
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

  /** Its sessions, oldest first, each with whether it was missed. */
  entries(): [number, boolean][] {
    return [...this.sessions];
  }

  /**
   * Puts `older` (sessions its client's connections that left had, oldest first) before its own, a session in both
   * missed where either missed it, and keeps the newest NO_SHOW_WINDOW: a connection of a cluster's server takes up
   * the sessions its key's last connections, on any server, missed and joined.
   */
  prepend(older: Iterable<readonly [number, boolean]>): void {
    const own = new Map(this.sessions);
    const before = new Map<number, boolean>();
    for (const [id, missed] of older) {
      if (own.has(id)) own.set(id, missed || own.get(id) === true);
      else before.set(id, missed || before.get(id) === true);
    }
    this.sessions.clear();
    this.missed = 0;
    for (const [id, missed] of [...before, ...own]) {
      this.sessions.set(id, missed);
      if (missed) this.missed += 1;
    }
    this.trim();
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
      if (missed) this.missed -= 1;
    }
  }
}
