import type { Clock, TimerHandle } from '../../shared/clock.js';
import type { NoShow } from './session-types.js';

/**
 * How long a newcomer of a running session may stay in the route without joining and be taken out of it again
 * (another repair's choice) without a strike: a page links its data channels within a few seconds even on a
 * loaded machine, and a silent newcomer whose stage then fails is taken out at the step's timeout, well after.
 */
export const NEWCOMER_GRACE_MS = 10_000;

/**
 * The newcomers of a running session (a repair's spares, a replacement) that have not joined it yet, each with
 * its join timeout: held to join as the route's first replicas are (SessionJoin). One that refuses, does not join
 * within the timeout, or is taken out of the route unjoined after the grace is judged a no-show (once); one taken
 * out sooner, or awaited still when the session ends, is not judged.
 */
export class NewcomerJoins {
  private readonly awaited = new Map<string, { readonly timer: TimerHandle; readonly since: number }>();

  constructor(
    private readonly clock: Clock,
    private readonly timeouts: { readonly joinMs: number; readonly stepMs: number },
    /** A newcomer did not take part: a no-show. */
    private readonly missed: (id: string, why: NoShow) => void,
    /** A newcomer joined in time. */
    private readonly showed: (id: string) => void,
  ) {}

  /** `id` was just brought into the running session. */
  expect(id: string): void {
    this.forget(id);
    const timer = this.clock.setTimeout(() => this.miss(id, 'absent'), this.timeouts.joinMs);
    this.awaited.set(id, { timer, since: this.clock.now() });
  }

  has(id: string): boolean {
    return this.awaited.has(id);
  }

  /** It joined: no longer awaited, and it showed up (where it was awaited). */
  joined(id: string): void {
    if (this.forget(id)) this.showed(id);
  }

  /** It refused the session, or is otherwise known not to take part: a no-show now (where it was awaited). */
  miss(id: string, why: NoShow): void {
    if (this.forget(id)) this.missed(id, why);
  }

  /**
   * It left the route unjoined (a swap, the server taking its stage): judged only after NEWCOMER_GRACE_MS, or the
   * step timeout where that is shorter (a step timeout under the grace would otherwise take a silent newcomer
   * out, step after step, unjudged).
   */
  takenOut(id: string): void {
    const a = this.awaited.get(id);
    if (a === undefined) return;
    if (this.clock.now() - a.since >= Math.min(NEWCOMER_GRACE_MS, this.timeouts.stepMs)) this.miss(id, 'absent');
    else this.forget(id);
  }

  /** No longer awaited, unjudged (excused, or the session ended); false where it was not awaited. */
  forget(id: string): boolean {
    const a = this.awaited.get(id);
    if (a === undefined) return false;
    this.clock.clearTimeout(a.timer);
    this.awaited.delete(id);
    return true;
  }

  /** The session ended: those still awaited are not judged (their timeout did not run out). */
  forgetAll(): void {
    for (const id of [...this.awaited.keys()]) this.forget(id);
  }
}
