/**
 * A one-way network delay for benchmarks and tests (a WAN on one machine):
 * each message is sent `ms` after it was handed over, in the order it was
 * handed over. One timer for the whole line (the head's), so that a burst of
 * frames costs one timer, not one each, and order cannot depend on how a
 * runtime orders timers that fall due at the same millisecond.
 */

import { MAX_NET_DELAY_MS } from '../protocol/messages.js';

/** Messages held at most; beyond them a send is refused (the caller reports it), never queued without bound. */
export const MAX_DELAYED_MESSAGES = 65_536;

export class DelayLine {
  private readonly queue: { due: number; send: () => void }[] = [];
  private head = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;

  constructor(
    /** 0 sends at once, as without a delay line. */
    private ms = 0,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.setDelay(ms);
  }

  get delayMs(): number {
    return this.ms;
  }

  /** Messages handed over and not yet sent. */
  get pending(): number {
    return this.queue.length - this.head;
  }

  /** The delay for what is handed over from now on (what waits keeps its time: order is kept either way). */
  setDelay(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0 || ms > MAX_NET_DELAY_MS)
      throw new RangeError(`a network delay must be 0 to ${MAX_NET_DELAY_MS} ms, got ${ms}`);
    this.ms = ms;
  }

  /** Sends now (no delay and nothing waiting) or `ms` from now; false when refused (closed, or the line is full). */
  run(send: () => void): boolean {
    if (this.closed) return false;
    if (this.ms === 0 && this.pending === 0) {
      send();
      return true;
    }
    if (this.pending >= MAX_DELAYED_MESSAGES) return false;
    // Never due before the one ahead of it: a delay lowered meanwhile must not reorder.
    const last = this.queue[this.queue.length - 1];
    const due = Math.max(this.now() + this.ms, last === undefined || this.pending === 0 ? 0 : last.due);
    this.queue.push({ due, send });
    if (this.timer === null) this.arm();
    return true;
  }

  /** Drops what waits and refuses what comes (the connection is gone). */
  close(): void {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.queue.length = 0;
    this.head = 0;
  }

  private arm(): void {
    const next = this.queue[this.head];
    if (next === undefined) return;
    this.timer = setTimeout(() => this.fire(), Math.max(0, next.due - this.now()));
  }

  private fire(): void {
    this.timer = null;
    const t = this.now();
    // Everything due by now, in order (a timer may fire late under load: then several go at once).
    for (let m = this.queue[this.head]; m !== undefined && m.due <= t; m = this.queue[this.head]) {
      this.head += 1;
      m.send();
      if (this.closed) return;
    }
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    } else if (this.head > 1024) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    this.arm();
  }
}
