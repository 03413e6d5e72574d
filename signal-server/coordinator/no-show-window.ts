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

  /** Takes in `other`'s sessions (another connection's of the same client), each counted once, in their order. */
  absorb(other: NoShowWindow): void {
    for (const [id, missed] of other.sessions) {
      if (missed) this.miss(id);
      else this.showed(id);
    }
  }

  private trim(): void {
    for (const [id, missed] of this.sessions) {
      if (this.sessions.size <= NO_SHOW_WINDOW) return;
      this.sessions.delete(id);
      if (missed) this.missed -= 1;
    }
  }
}
