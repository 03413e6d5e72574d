/** Sessions of another process tracked per process (to close them on its volunteers if it dies). */
const MAX_TRACKED_SESSIONS = 10_000;

/**
 * The sessions other processes opened on this process's volunteers: how many
 * each volunteer is in (its load, published with it), and which to close on
 * them when the process that opened them dies.
 */
export class RemoteSessions {
  /** Process → its sessions → our volunteers in each. */
  private readonly byProc = new Map<number, Map<number, Set<string>>>();
  /** Our volunteer → sessions of other processes it is in. */
  private readonly counts = new Map<string, number>();

  /** Sessions of other processes `volunteer` is in. */
  of(volunteer: string): number {
    return this.counts.get(volunteer) ?? 0;
  }

  opened(proc: number, sessionId: number, volunteer: string): void {
    let sessions = this.byProc.get(proc);
    if (sessions === undefined) {
      sessions = new Map();
      this.byProc.set(proc, sessions);
    }
    if (sessions.size >= MAX_TRACKED_SESSIONS) {
      const oldest = sessions.keys().next().value as number;
      for (const id of sessions.get(oldest) ?? []) this.count(id, -1);
      sessions.delete(oldest);
    }
    const ids = sessions.get(sessionId) ?? new Set<string>();
    if (!ids.has(volunteer)) this.count(volunteer, 1);
    ids.add(volunteer);
    sessions.set(sessionId, ids);
  }

  closed(proc: number, sessionId: number, volunteer: string): void {
    const sessions = this.byProc.get(proc);
    const ids = sessions?.get(sessionId);
    if (ids?.delete(volunteer) === true) this.count(volunteer, -1);
    if (ids?.size === 0) sessions?.delete(sessionId);
  }

  /** Process `proc` is gone: its sessions end; returns them with the volunteers to tell. */
  endAll(proc: number): [sessionId: number, volunteers: ReadonlySet<string>][] {
    const sessions = this.byProc.get(proc);
    this.byProc.delete(proc);
    if (sessions === undefined) return [];
    for (const ids of sessions.values()) for (const id of ids) this.count(id, -1);
    return [...sessions];
  }

  /** Our volunteer left: its count goes. */
  forget(volunteer: string): void {
    this.counts.delete(volunteer);
  }

  private count(volunteer: string, by: number): void {
    const n = (this.counts.get(volunteer) ?? 0) + by;
    if (n > 0) this.counts.set(volunteer, n);
    else this.counts.delete(volunteer);
  }
}
