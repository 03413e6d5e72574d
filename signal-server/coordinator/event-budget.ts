/**
 * A per-socket budget of inbound events: a token bucket (`ratePerS` sustained,
 * `burst` at once) and a count of what was dropped over it, which leaks at the
 * same rate. An event within the bucket is served; one over it is dropped;
 * when the dropped count passes `maxDropped` the sender is abusive (a flood,
 * not a burst) and the caller disconnects it. Pure: the clock is injected.
 */
export interface EventBudgetOptions {
  /** Events a second a socket may send for as long as it likes. */
  readonly ratePerS: number;
  /** Events it may send at once (the bucket's size; it starts full). */
  readonly burst: number;
  /** Dropped events (leaking at ratePerS) beyond which the socket is abusive. */
  readonly maxDropped: number;
}

export type BudgetVerdict = 'serve' | 'drop' | 'abusive';

/**
 * What a volunteer needs, measured and reasoned in README's "Limits": per step
 * and session a step:digest (plus step:logits on the last stage), and bursts of
 * signalling (SDP + ICE candidates for each new neighbour) when sessions open.
 */
export const SOCKET_EVENT_BUDGET: EventBudgetOptions = { ratePerS: 200, burst: 400, maxDropped: 200 };

export class EventBudget {
  private tokens: number;
  private dropped = 0;
  private last: number;
  /** Events dropped over the socket's life. */
  droppedTotal = 0;

  constructor(
    private readonly options: EventBudgetOptions,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(options.ratePerS > 0 && options.burst >= 1 && options.maxDropped >= 0)) {
      throw new RangeError(`an event budget needs ratePerS > 0, burst ≥ 1, maxDropped ≥ 0 (got ${JSON.stringify(options)})`);
    }
    this.tokens = options.burst;
    this.last = now();
  }

  /** One inbound event: serve it, drop it, or give up on the sender. */
  take(): BudgetVerdict {
    const t = this.now();
    const refill = (Math.max(0, t - this.last) / 1000) * this.options.ratePerS;
    this.last = t;
    this.tokens = Math.min(this.options.burst, this.tokens + refill);
    this.dropped = Math.max(0, this.dropped - refill);
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 'serve';
    }
    this.dropped += 1;
    this.droppedTotal += 1;
    return this.dropped > this.options.maxDropped ? 'abusive' : 'drop';
  }
}
