// Test helper: a Clock whose time moves only when the test says so.
import type { Clock, TimerHandle } from '../shared/clock.js';

/** Timers one advance() may run at most: a timer that keeps setting itself is a bug to report, not to loop on. */
const MAX_TIMERS_PER_ADVANCE = 10_000;

interface Pending {
  readonly at: number;
  readonly order: number;
  readonly callback: () => void;
}

/** Lets every promise callback that is ready run (Node runs all microtasks before the next macrotask). */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

export class ManualClock implements Clock {
  private time = 0;
  private nextOrder = 1;
  private readonly timers = new Map<number, Pending>();

  now(): number {
    return this.time;
  }

  setTimeout(callback: () => void, ms: number): TimerHandle {
    const order = this.nextOrder++;
    this.timers.set(order, { at: this.time + Math.max(0, ms), order, callback });
    return order as unknown as TimerHandle;
  }

  clearTimeout(handle: TimerHandle): void {
    this.timers.delete(handle as unknown as number);
  }

  /** Timers set and neither fired nor cancelled. */
  get pending(): number {
    return this.timers.size;
  }

  /**
   * Moves time forward by `ms`, running each timer that falls due on the way
   * at its own time (the earliest first, ties in the order they were set),
   * and letting the promise callbacks it causes run before the next.
   */
  async advance(ms: number): Promise<void> {
    if (!(ms >= 0)) throw new RangeError(`advance by a duration ≥ 0, got ${ms}`);
    const end = this.time + ms;
    await settle();
    for (let ran = 0; ; ran++) {
      let next: Pending | undefined;
      for (const t of this.timers.values())
        if (t.at <= end && (next === undefined || t.at < next.at || (t.at === next.at && t.order < next.order))) next = t;
      if (next === undefined) break;
      if (ran >= MAX_TIMERS_PER_ADVANCE) throw new Error(`more than ${MAX_TIMERS_PER_ADVANCE} timers fell due in one advance of ${ms} ms`);
      this.timers.delete(next.order);
      this.time = next.at;
      next.callback();
      await settle();
    }
    this.time = end;
  }
}
