/**
 * Time as the code that waits sees it: injected, so that a test can drive
 * timeouts and measure durations without waiting real seconds (trystero's mock
 * timers, tldraw's syncFuzz). Production code takes REAL_CLOCK by default.
 */

declare const timerBrand: unique symbol;

/** A pending timer of one Clock: only that clock's clearTimeout understands it. */
export type TimerHandle = { readonly [timerBrand]: true };

export interface Clock {
  /** Milliseconds from an arbitrary origin; never decreases. */
  now(): number;
  /** Calls `callback` once, `ms` from now. */
  setTimeout(callback: () => void, ms: number): TimerHandle;
  /** Cancels a timer that has not fired yet; a fired or cancelled one is ignored. */
  clearTimeout(handle: TimerHandle): void;
}

/** The platform's clock: performance.now and the global timers. */
export const REAL_CLOCK: Clock = {
  now: () => performance.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms) as unknown as TimerHandle,
  clearTimeout: (handle) => clearTimeout(handle as unknown as ReturnType<typeof setTimeout>),
};
