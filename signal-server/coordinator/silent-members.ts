import type { Clock } from '../../shared/clock.js';

/** Below this a member's silence is never judged: a page's garbage collection, a slow network hop, a busy main thread. */
export const SILENT_FLOOR_MS = 5_000;
/** A member is silent after this many times the longest step its stage's majority took in the session. */
export const SILENT_PACE = 8;
/** Steps decided without it, at least, before a member is silent: the session itself is moving. */
export const SILENT_MIN_STEPS = 2;

/**
 * What a member's silence in one session leaves for its next (`carry`, then `watch`): how long it was unheard up
 * to the session's last decided step and how far that step is past the one in flight when it was last heard (as
 * SILENT_MIN_STEPS counts), and its window's span, steps decided and steps reported. A member is judged over its sessions one after another, not each alone: one that
 * joined sessions shorter than its limit and computed nothing was never judged, however many it joined. Being
 * heard in a session leaves nothing of the first part (`carry`).
 */
export interface SilenceCarry {
  readonly unheardMs: number;
  readonly unheardSteps: number;
  readonly window: { readonly ms: number; readonly decided: number; readonly reported: number };
}

const NOTHING_CARRIED: SilenceCarry = { unheardMs: 0, unheardSteps: 0, window: { ms: 0, decided: 0, reported: 0 } };

/**
 * What a member's record keeps (Member.silence, `current`) once a session that read `before` at its start leaves
 * `after`. A replica holds several sessions at once: where another ended since this one began (`current` is not
 * `before`), the last to end must not wipe what the others left (one where it was heard, beside seven where it
 * was silent): its time unheard is the longer, and its window takes this session's steps on top of the others'.
 * Null (judged here, or struck in another since): it starts again from nothing.
 */
export function carriedOn(current: SilenceCarry | null, before: SilenceCarry | null, after: SilenceCarry | null): SilenceCarry | null {
  if (current === before || after === null) return after;
  if (current === null) return null;
  const b = before?.window ?? NOTHING_CARRIED.window;
  const a = after.window;
  // This session decided nothing (it failed at once): what it gives back is what it read, stale since another ended.
  const unheard = before?.unheardMs ?? 0;
  if (after.unheardMs === unheard && a.ms === b.ms && a.decided === b.decided && a.reported === b.reported) return current;
  // Its window passed (and a new one began) in this session: what this session added is the new one.
  const rolled = a.ms < b.ms || a.decided < b.decided || a.reported < b.reported;
  const added = rolled ? a : { ms: a.ms - b.ms, decided: a.decided - b.decided, reported: a.reported - b.reported };
  return {
    unheardMs: Math.max(current.unheardMs, after.unheardMs),
    unheardSteps: Math.max(current.unheardSteps, after.unheardSteps),
    window: {
      ms: current.window.ms + added.ms,
      decided: current.window.decided + added.decided,
      reported: current.window.reported + added.reported,
    },
  };
}

/**
 * The members of a running session that send no results. A replica that joins a session and then computes
 * nothing keeps its place in a stage's vote for nothing: with r = 3 one more fault in that stage leaves it
 * without a majority, and once a majority agrees nobody waits for it, so it costs nothing and was never seen.
 *
 * A member is heard when it reports a step it had not reported before, as a digest that agrees with its
 * stage's majority (StepVotes checks it): one of the step in flight, once in the agreeing group, or one of a
 * decided step that agrees with that step's agreed output (a late replica, a newcomer's replay). Not heard:
 * noise (the audit evicts only after several disagreements, and a record would buy many), logits
 * (audited nowhere: noise of the right size would do), a failure (any client can send one), a report sent
 * again, `session:joined` again. One not heard for its stage's limit while SILENT_MIN_STEPS steps or more
 * were decided is silent. The limit follows the stage's pace: SILENT_PACE times the longest step (a long
 * prompt's first) that the stage's majority took so far in the session (the compute time its `needed`-th
 * fastest replica reported, each claim capped by the time the step could have taken: with a majority honest,
 * no liar moves it beyond an honest replica's), at least SILENT_FLOOR_MS and at most the step timeout. An
 * honest replica slower than the others reports late, and is heard each time however far behind; but one that
 * reports fewer than one in SILENT_PACE of the steps its stage decides (over twice the limit) is behind, and
 * judged as silent: a replica SILENT_PACE times slower than its stage's majority does next to nothing for it.
 */
export class SilentMembers {
  private readonly last = new Map<
    string,
    {
      at: number;
      step: number;
      reported: number;
      /** Where its current window began (twice the limit long): the time, the last step decided then, the step it had reported. */
      base: { at: number; decided: number; reported: number };
      /** When it was watched, and what its sessions before left (given back where nothing was decided since). */
      watched: { at: number; carried: SilenceCarry };
      /** Whether it was heard in this session. */
      heard: boolean;
    }
  >();
  /** Per member, what its sessions before left when this session first watched it (null: nothing), for `carriedOn`. */
  private readonly from = new Map<string, SilenceCarry | null>();
  /** Per stage, the longest of its majority's compute times over the decided steps. */
  private readonly pace: number[] = [];
  /** Per stage, the compute times its replicas reported for the step in flight (one each). */
  private times: number[][] = [];
  private decided = { at: 0, step: -1 };

  constructor(
    private readonly clock: Clock,
    private readonly stepMs: number,
  ) {}

  /**
   * Watches `id` from now, at step `step`: the session begins, a newcomer joined, or an excuse ended. `carried`:
   * what its sessions before left (`carry`), counted as if this session had begun with it.
   */
  watch(id: string, step: number, carried?: SilenceCarry): void {
    if (!this.from.has(id)) this.from.set(id, carried ?? null);
    if (carried === undefined) carried = NOTHING_CARRIED;
    const reported = this.last.get(id)?.reported ?? -1;
    const at = this.clock.now();
    const w = carried.window;
    this.last.set(id, {
      at: at - carried.unheardMs,
      step: step - carried.unheardSteps,
      reported,
      base: { at: at - w.ms, decided: this.decided.step - w.decided, reported: reported - w.reported },
      watched: { at, carried },
      // An excuse ending does not undo its being heard in this session.
      heard: this.last.get(id)?.heard ?? false,
    });
  }

  /**
   * What `id`'s silence leaves for its next session, as of the last decided step (null where it is not watched):
   * its time unheard and window, which its next session's `watch` goes on from. `stage`: its stage, whose pace sets
   * the grace of a member not heard in the session (below).
   */
  carry(id: string, stage: number): SilenceCarry | null {
    const l = this.last.get(id);
    if (l === undefined) return null;
    // Nothing decided since it was watched: this session adds nothing, and takes nothing away.
    if (this.decided.step < 0 || this.decided.at < l.watched.at) return l.watched.carried;
    const d = this.decided;
    // Not heard in a session that ended within SILENT_PACE times its stage's pace of its watch: an honest replica
    // up to SILENT_PACE times slower than its stage (which a session's own limit allows) reports its first step
    // only after that, and the session closes without its reports (every session of one or two tokens does so for
    // the slowest replica of a stage). It is told from a silent one only after that: such a session adds nothing.
    // So a member silent only in sessions that short is not judged (it holds a place in them; it changes nothing).
    const grace = SILENT_PACE * (this.pace[stage] ?? 0);
    if (!l.heard && d.at - l.watched.at <= grace) return l.watched.carried;
    // Heard in this session: at its end it may be computing the step in flight, as an honest replica slower than its
    // stage is; that tail (under the limit, or it was judged) does not carry, or its next session's first report,
    // as late, would find it unheard for both. Its window carries, and judges it behind where it reports too few.
    return {
      unheardMs: l.heard ? 0 : Math.max(0, d.at - l.at - grace),
      unheardSteps: l.heard ? 0 : Math.max(0, d.step - l.step),
      window: {
        ms: Math.max(0, d.at - l.base.at),
        decided: Math.max(0, d.step - l.base.decided),
        reported: Math.max(0, l.reported - l.base.reported),
      },
    };
  }

  /**
   * `id` reported `step` (`current`: the step in flight), a report its caller checked (the step in flight's,
   * or agreeing with a decided step's): heard, where that step is one it had not reported.
   */
  heard(id: string, step: number, current: number): void {
    const l = this.last.get(id);
    if (l === undefined || step <= l.reported) return;
    this.last.set(id, { ...l, at: this.clock.now(), step: current, reported: step, heard: true });
  }

  /** What `id`'s sessions before left when this session first watched it (null: nothing, or not watched). */
  carriedFrom(id: string): SilenceCarry | null {
    return this.from.get(id) ?? null;
  }

  /** How long `id` was unheard up to the last decided step (ms), or null where it is not watched. */
  unheardFor(id: string): number | null {
    const l = this.last.get(id);
    return l === undefined ? null : this.decided.at - l.at;
  }

  /** No longer judged (it left the route). */
  forget(id: string): void {
    this.last.delete(id);
  }

  /** A replica of `stage` reported computing the step in flight in `ms` (its first report of that step). */
  computed(stage: number, ms: number): void {
    this.times[stage] = [...(this.times[stage] ?? []), ms];
  }

  /** `step` was decided by majorities of `needed` replicas: the stages' pace takes their compute times. */
  stepDecided(step: number, needed: number): void {
    for (const [stage, times] of this.times.entries()) {
      const ms = (times ?? []).sort((x, y) => x - y)[needed - 1];
      if (ms !== undefined && Number.isFinite(ms)) this.pace[stage] = Math.max(this.pace[stage] ?? 0, ms);
    }
    this.times = [];
    this.decided = { at: this.clock.now(), step };
  }

  /** How long a member of `stage` may stay unheard while steps are decided. */
  limitMs(stage: number): number {
    return Math.min(this.stepMs, Math.max(SILENT_FLOOR_MS, SILENT_PACE * (this.pace[stage] ?? 0)));
  }

  /**
   * Whether `id` of `stage` was silent up to the last decided step: how (for the log), or null. Silent: unheard
   * for the limit, or behind: over a window of twice the limit, it reported fewer than one in SILENT_PACE of the
   * steps its stage decided (a "slow replica" that computes one step per limit is heard each time, and does next
   * to nothing). Twice: a member starved by a sender that stalls is excused once that sender is unheard for the
   * limit (generation.ts), which restarts its window; one that was fed for half of it kept up. A window that
   * passes starts the next.
   */
  silentFor(id: string, stage: number): string | null {
    const l = this.last.get(id);
    if (l === undefined) return null;
    const limit = this.limitMs(stage);
    const ms = this.decided.at - l.at;
    if (this.decided.step - l.step >= SILENT_MIN_STEPS && ms >= limit)
      return `sent no results for ${Math.round(ms)} ms (limit ${Math.round(limit)} ms)`;
    const span = this.decided.at - l.base.at;
    if (span < 2 * limit) return null;
    const decided = this.decided.step - l.base.decided;
    const reported = l.reported - l.base.reported;
    if (decided >= SILENT_MIN_STEPS && reported * SILENT_PACE < decided)
      return `reported ${reported} of the ${decided} steps its stage decided in ${Math.round(span)} ms (fewer than 1 in ${SILENT_PACE})`;
    l.base = { at: this.decided.at, decided: this.decided.step, reported: l.reported };
    return null;
  }
}
