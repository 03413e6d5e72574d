import { MESH_AHEAD } from '../../shared/swarm/mesh-loop.js';
import type { ReportKind } from '../coordinator/report-allowance.js';

/** Sessions of another process tracked per process (to close them on its volunteers if it dies). */
const MAX_TRACKED_SESSIONS = 10_000;
/**
 * Sessions of other processes that closed on this process's volunteers, remembered (the newest) for their late
 * reports: a coordinator still takes what a replica computed up to a session's end (it keeps its last 64 finished).
 */
const MAX_CLOSED_SESSIONS = 1_024;
/** Sessions whose steps are remembered (as many as are tracked and closed lately), the oldest forgotten first. */
const MAX_STEPS_KNOWN = MAX_TRACKED_SESSIONS + MAX_CLOSED_SESSIONS;
/**
 * A process tells the processes of its sessions' members where each session stands every PROGRESS_EVERY steps
 * (Cluster.stepBegan): a report goes free only up to the step it said last, this many twice over, and the mesh
 * loop's lead (RemoteSessions.admitFree). An honest replica is at most the lead past the step being decided.
 */
export const PROGRESS_EVERY = 4;
/**
 * How long after it was opened a session of another process is taken to wait for our volunteer to join it, at most
 * (awaiting): 4 × the default join timeout. By then that process judged it or took it out (a close lost meanwhile
 * must not have an honest tab struck when it closes, idle, much later).
 */
export const AWAITED_FOR_MS = 120_000;
/** Free reports remembered (volunteer, session and kind → its latest free step), the oldest forgotten first. */
const MAX_FREE_REPORTS = 50_000;

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
  /**
   * "proc sessionId volunteer" of sessions that closed on our volunteers, oldest first, with the steps the session
   * had run when it closed there (its close said them; undefined from a process of before).
   */
  private readonly closedLately = new Map<string, number | undefined>();
  /** "proc sessionId volunteer kind" → the latest step reported for free, oldest first. */
  private readonly freeLatest = new Map<string, number>();
  /** "proc sessionId volunteer" whose join went free, oldest first (as many as free reports). */
  private readonly freeJoins = new Set<string>();
  /**
   * Our volunteer → the sessions of other processes opened on it that it has neither joined nor refused, nor been
   * judged for there ("proc sessionId" → the session and when it was opened): those that wait for it (awaiting).
   */
  private readonly unanswered = new Map<string, Map<string, { readonly sessionId: number; readonly at: number }>>();
  /** "proc sessionId" → the step its server last said the session began deciding (progressed), oldest first. */
  private readonly deciding = new Map<string, number>();
  /** "proc sessionId" → the steps its server said the session has (SessionOpen.steps), oldest first. */
  private readonly steps = new Map<string, number>();

  /** Is our volunteer in a session of another process, open or closed on it lately (its reports may still be judged)? */
  involves(volunteer: string): boolean {
    if (this.counts.has(volunteer)) return true;
    for (const key of this.closedLately.keys()) if (key.endsWith(` ${volunteer}`)) return true;
    return false;
  }

  /** Sessions of other processes `volunteer` is in. */
  of(volunteer: string): number {
    return this.counts.get(volunteer) ?? 0;
  }

  /**
   * `steps`: the steps the session has, as its server said them (SessionOpen.steps; undefined from an older one);
   * `at`: the step it is at, where the volunteer joins it midway (SessionOpen.replayTo: it replays the steps before,
   * each report owed; before, with no member of the session here and no progress said yet, only 11 went free).
   */
  opened(proc: number, sessionId: number, volunteer: string, steps?: number, at?: number): void {
    if (steps !== undefined) {
      const key = `${proc} ${sessionId}`;
      this.steps.delete(key);
      this.steps.set(key, steps);
      if (this.steps.size > MAX_STEPS_KNOWN) this.steps.delete(this.steps.keys().next().value as string);
    }
    let sessions = this.byProc.get(proc);
    if (sessions === undefined) {
      sessions = new Map();
      this.byProc.set(proc, sessions);
    }
    if (sessions.size >= MAX_TRACKED_SESSIONS) {
      const oldest = sessions.keys().next().value as number;
      for (const id of sessions.get(oldest) ?? []) {
        this.count(id, -1);
        this.answered(proc, oldest, id);
      }
      sessions.delete(oldest);
    }
    const ids = sessions.get(sessionId) ?? new Set<string>();
    if (!ids.has(volunteer)) {
      this.count(volunteer, 1);
      const waiting = this.unanswered.get(volunteer) ?? new Map<string, { readonly sessionId: number; readonly at: number }>();
      waiting.set(`${proc} ${sessionId}`, { sessionId, at: Date.now() });
      this.unanswered.set(volunteer, waiting);
    }
    ids.add(volunteer);
    sessions.set(sessionId, ids);
    if (at !== undefined) this.progressed(proc, sessionId, at);
  }

  /** `ran`: the steps the session had run when it closed on `volunteer` (SessionClose.steps). */
  closed(proc: number, sessionId: number, volunteer: string, ran?: number): void {
    const sessions = this.byProc.get(proc);
    const ids = sessions?.get(sessionId);
    this.answered(proc, sessionId, volunteer);
    if (ids?.delete(volunteer) === true) {
      this.count(volunteer, -1);
      this.closedLately.set(`${proc} ${sessionId} ${volunteer}`, ran);
      if (this.closedLately.size > MAX_CLOSED_SESSIONS) this.closedLately.delete(this.closedLately.keys().next().value as string);
    }
    if (ids?.size === 0) sessions?.delete(sessionId);
  }

  /**
   * Did process `proc` open session `sessionId` on `volunteer` (open now, or closed lately)? Only then is a report
   * of the volunteer about it that process's to hear: any other is a session id made up, answered here.
   */
  opensOn(proc: number, sessionId: number, volunteer: string): boolean {
    return this.byProc.get(proc)?.get(sessionId)?.has(volunteer) === true || this.closedLately.has(`${proc} ${sessionId} ${volunteer}`);
  }

  /**
   * Is this report of our volunteer owed to process `proc`'s session, and so free of its socket's event budget (as
   * report-allowance.ts makes an owed report on one server)? That process opened the session on it, and the step is
   * later than every free one of that kind it made there, and below the session's steps and the mesh loop's lead
   * (SessionOpen.steps; `maxSteps`, the model's positions and the lead, where the open said none), and once the
   * session closed on it, below the steps it had run and the lead (SessionClose.steps), and at most the lead and
   * 2 × PROGRESS_EVERY past the step that process last said the session began deciding (progressed; −1 before it
   * said one). So a session's free reports per replica and kind stay bounded by its steps, whatever the sender does,
   * and come no faster than the session decides them (before the open said them, by the model's positions: a
   * 2-token session let a replica send 1 000 reports free, 768 KiB each; before the close said them, by the steps
   * the open said: a session of 480 tokens ended after 3 let it send 934; before the process said where its session
   * stood, a replica of a live 400-token session sent all its reports at once, 298 MB through Redis in 8 s).
   */
  admitFree(proc: number, sessionId: number, volunteer: string, kind: ReportKind, step: number, maxSteps: number): boolean {
    const said = this.steps.get(`${proc} ${sessionId}`);
    const ran = this.closedLately.get(`${proc} ${sessionId} ${volunteer}`);
    let bound = said === undefined ? maxSteps : Math.min(maxSteps, said + MESH_AHEAD + 1);
    if (ran !== undefined) bound = Math.min(bound, ran + MESH_AHEAD + 1);
    bound = Math.min(bound, (this.deciding.get(`${proc} ${sessionId}`) ?? -1) + MESH_AHEAD + 2 + 2 * PROGRESS_EVERY);
    if (!Number.isSafeInteger(step) || step < 0 || step >= bound || !this.opensOn(proc, sessionId, volunteer)) return false;
    const key = `${proc} ${sessionId} ${volunteer} ${kind}`;
    const latest = this.freeLatest.get(key);
    if (latest !== undefined && step <= latest) return false;
    this.freeLatest.delete(key);
    this.freeLatest.set(key, step);
    if (this.freeLatest.size > MAX_FREE_REPORTS) this.freeLatest.delete(this.freeLatest.keys().next().value as string);
    return true;
  }

  /**
   * Is our volunteer's `session:joined` of process `proc`'s session owed, and so free of its socket's event budget
   * (as SessionJoin.admitFreeJoin makes it on one server)? That process opened the session on it, open now, and no join
   * of it went free before: once a session and volunteer.
   */
  admitFreeJoin(proc: number, sessionId: number, volunteer: string): boolean {
    if (this.byProc.get(proc)?.get(sessionId)?.has(volunteer) !== true) return false;
    const key = `${proc} ${sessionId} ${volunteer}`;
    if (this.freeJoins.has(key)) return false;
    this.freeJoins.add(key);
    if (this.freeJoins.size > MAX_FREE_REPORTS) this.freeJoins.delete(this.freeJoins.values().next().value as string);
    return true;
  }

  /**
   * Process `proc`'s session `sessionId` no longer waits for our volunteer to join it: it joined, refused it, was
   * judged a no-show there, or the session closed on it.
   */
  answered(proc: number, sessionId: number, volunteer: string): void {
    const waiting = this.unanswered.get(volunteer);
    waiting?.delete(`${proc} ${sessionId}`);
    if (waiting?.size === 0) this.unanswered.delete(volunteer);
  }

  /**
   * A session of another process opened on our volunteer, within the last AWAITED_FOR_MS, that waits for it to join
   * (unanswered), if any. One opened longer ago was given up there, or its close was lost (Redis away): not judged.
   */
  awaiting(volunteer: string, now = Date.now()): number | undefined {
    for (const { sessionId, at } of this.unanswered.get(volunteer)?.values() ?? []) if (now - at <= AWAITED_FOR_MS) return sessionId;
    return undefined;
  }

  /** Our volunteer was moved to another stage: it drops its sessions, and none of them waits for it any more. */
  dropped(volunteer: string): void {
    this.unanswered.delete(volunteer);
  }

  /** Process `proc` says its session `sessionId`, open on some of our volunteers, began deciding `step`. */
  progressed(proc: number, sessionId: number, step: number): void {
    if (this.byProc.get(proc)?.has(sessionId) !== true) return;
    const key = `${proc} ${sessionId}`;
    const before = this.deciding.get(key) ?? -1;
    this.deciding.delete(key);
    this.deciding.set(key, Math.max(before, step));
    if (this.deciding.size > MAX_STEPS_KNOWN) this.deciding.delete(this.deciding.keys().next().value as string);
  }

  /**
   * Process `proc` says these are all its sessions open on our volunteers now (with ours in each): any other it
   * opened here has closed there, its close lost (Redis away). Ends those; returns them with the volunteers to tell.
   */
  keepOnly(proc: number, open: ReadonlyMap<number, ReadonlySet<string>>): [sessionId: number, volunteers: string[]][] {
    const sessions = this.byProc.get(proc);
    const ended: [number, string[]][] = [];
    for (const [sessionId, ids] of [...(sessions ?? [])]) {
      const still = open.get(sessionId);
      const gone = [...ids].filter((id) => still?.has(id) !== true);
      for (const id of gone) this.closed(proc, sessionId, id);
      if (gone.length > 0) ended.push([sessionId, gone]);
    }
    return ended;
  }

  /** Process `proc` is gone: its sessions end; returns them with the volunteers to tell. */
  endAll(proc: number): [sessionId: number, volunteers: ReadonlySet<string>][] {
    const sessions = this.byProc.get(proc);
    this.byProc.delete(proc);
    if (sessions === undefined) return [];
    for (const [sessionId, ids] of sessions)
      for (const id of ids) {
        this.count(id, -1);
        this.answered(proc, sessionId, id);
      }
    return [...sessions];
  }

  /**
   * Our volunteer left: its count goes, what waited for it, and its place in the sessions it was in (their close never
   * reaches it now: before, each left its entry behind until its process had opened 10 000 more, a review's find).
   */
  forget(volunteer: string): void {
    if (this.counts.has(volunteer))
      for (const sessions of this.byProc.values())
        for (const [sessionId, ids] of sessions) if (ids.delete(volunteer) && ids.size === 0) sessions.delete(sessionId);
    this.counts.delete(volunteer);
    this.unanswered.delete(volunteer);
  }

  /** Sessions of other processes tracked on our volunteers (open, with at least one of ours in them). */
  get tracked(): number {
    let n = 0;
    for (const sessions of this.byProc.values()) n += sessions.size;
    return n;
  }

  private count(volunteer: string, by: number): void {
    const n = (this.counts.get(volunteer) ?? 0) + by;
    if (n > 0) this.counts.set(volunteer, n);
    else this.counts.delete(volunteer);
  }
}
