/**
 * Which of a volunteer's step reports its socket's event budget does not
 * count (event-budget.ts). A replica owes its session one `step:digest` a step
 * (and, on the last stage, one `step:logits`): as many a second as the swarm
 * makes tokens, which a fast swarm takes past any fixed budget. Before, the
 * budget dropped them over 200 a second, and a dropped report stalled its
 * step until the 30 s step timeout: 8 concurrent requests through three
 * honest WASM tabs on this machine (austen-2m, ~190 tokens/s) stalled in the
 * second round (bench/batching-swarm.ts).
 *
 * A report is owed, and free, when its sender is a replica of the session it
 * names (live, or among the last 64 finished: replicas report what they
 * computed up to the end, and the mesh loop runs ahead of it), its step is at
 * most MESH_AHEAD + 1 after the step being decided (or the last one decided;
 * the coordinator holds reports that far), and it is later than every free
 * report of that kind the sender made in the session. So a session's free
 * reports per replica are bounded by its steps (plus the lead), whatever the
 * sender does: anything else (a repeat, a step far ahead, a session not its
 * own or long gone, a roll-back's re-report) spends from the budget as before.
 */
import { MESH_AHEAD } from '../../shared/swarm/mesh-loop.js';

export type ReportKind = 'digest' | 'logits';

/** The events whose reports may be owed, and their kinds. */
export const REPORT_EVENTS: ReadonlyMap<string, ReportKind> = new Map([
  ['step:digest', 'digest'],
  ['step:logits', 'logits'],
]);

/** One session's record of the free reports its replicas made. */
export class ReportAllowance {
  /** Per replica and kind, the latest step reported for free. */
  private readonly latest = new Map<string, number>();

  /**
   * True (and recorded) when this report is owed: `member` says whether the
   * sender is a replica of the session now, `current` is the step being
   * decided (−1 before the first).
   */
  admit(volunteer: string, kind: ReportKind, step: number, member: boolean, current: number): boolean {
    if (!member || !Number.isSafeInteger(step) || step < 0 || step > current + MESH_AHEAD + 1) return false;
    const key = `${kind} ${volunteer}`;
    if (step <= (this.latest.get(key) ?? -1)) return false;
    this.latest.set(key, step);
    return true;
  }
}

/** The session a raw session event names, read without trusting it (its handler validates the whole message). */
export function sessionTarget(raw: unknown): number | null {
  if (typeof raw !== 'object' || raw === null) return null;
  const { sessionId } = raw as { sessionId?: unknown };
  return typeof sessionId === 'number' && Number.isSafeInteger(sessionId) ? sessionId : null;
}

/** The session and step a raw report names, read without trusting it (its handler validates the whole message). */
export function reportTarget(raw: unknown): { sessionId: number; step: number } | null {
  const sessionId = sessionTarget(raw);
  const { step } = (raw ?? {}) as { step?: unknown };
  if (sessionId === null || typeof step !== 'number' || !Number.isSafeInteger(step)) return null;
  return { sessionId, step };
}
