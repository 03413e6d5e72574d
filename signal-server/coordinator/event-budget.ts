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

function checkBudget(what: string, o: EventBudgetOptions): void {
  if (!(o.ratePerS > 0 && o.burst >= 1 && o.maxDropped >= 0))
    throw new RangeError(`${what} needs ratePerS > 0, burst ≥ 1, maxDropped ≥ 0 (got ${JSON.stringify(o)})`);
}

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
    checkBudget('an event budget', options);
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

const MIB = 1024 * 1024;

/**
 * Bytes a socket may send, not counting the step reports it is owed (as for
 * SOCKET_EVENT_BUDGET). What else is large is a relayed frame batch (at most
 * MAX_FRAME_BATCH_BYTES: hidden states between a volunteer and a neighbour it
 * cannot reach over WebRTC, or the server's own replica): a 2 048-position
 * prompt of a model with hidden size 4 096 is 32 MiB of them, within the
 * burst; every other event is a few KiB at most (README's "Limits" has what
 * was measured).
 */
export const SOCKET_BYTE_BUDGET: EventBudgetOptions = { ratePerS: 16 * MIB, burst: 64 * MIB, maxDropped: 16 * MIB };

/**
 * A per-socket budget of inbound bytes: a token bucket (`ratePerS` bytes a
 * second, `burst` at once) charged for every packet as it arrives, before it
 * is decoded, so nothing a client sends escapes it (an event, an
 * acknowledgement, a binary attachment). The bytes of an owed step report are
 * given back once it is known to be one. While the bucket is empty an event is
 * dropped; once it is `maxDropped` bytes below empty the sender is abusive.
 * Pure: the clock is injected.
 */
export class ByteBudget {
  private balance: number;
  private last: number;
  /** Events dropped over the socket's life. */
  droppedEvents = 0;

  constructor(
    private readonly options: EventBudgetOptions,
    private readonly now: () => number = () => performance.now(),
  ) {
    checkBudget('a byte budget', options);
    this.balance = options.burst;
    this.last = now();
  }

  private refill(): void {
    const t = this.now();
    this.balance = Math.min(this.options.burst, this.balance + (Math.max(0, t - this.last) / 1000) * this.options.ratePerS);
    this.last = t;
  }

  /**
   * `bytes` read off the socket: abusive once the sender is maxDropped bytes past its budget. The balance goes no
   * lower than twice that: what the sender sends after it is cut off would only lengthen its address's wait.
   */
  arrived(bytes: number): 'ok' | 'abusive' {
    this.refill();
    this.balance = Math.max(-2 * this.options.maxDropped, this.balance - bytes);
    return this.balance < -this.options.maxDropped ? 'abusive' : 'ok';
  }

  /** Is the sender past its budget (a flood a moment ago, not yet refilled)? */
  over(): boolean {
    this.refill();
    return this.balance < 0;
  }

  /** An owed step report's bytes, given back (never past a full bucket). */
  refund(bytes: number): void {
    this.refill();
    this.balance = Math.min(this.options.burst, this.balance + bytes);
  }

  /** An event that is not an owed report: served while the socket is within its budget, else dropped. */
  admit(): BudgetVerdict {
    this.refill();
    if (this.balance >= 0) return 'serve';
    this.droppedEvents += 1;
    return this.balance < -this.options.maxDropped ? 'abusive' : 'drop';
  }
}

/** Byte budgets by key (a client address): kept after its sockets close, so a new connection starts where the last one left off. */
export class ByteBudgets {
  private readonly byKey = new Map<string, ByteBudget>();

  constructor(
    private readonly options: EventBudgetOptions,
    /** Most keys kept: beyond, the least recently used is dropped (it comes back full, which only forgives). */
    private readonly maxKeys = 10_000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** `key`'s budget, full on first use. */
  of(key: string): ByteBudget {
    let b = this.byKey.get(key);
    if (b === undefined) {
      b = new ByteBudget(this.options, this.now);
      if (this.byKey.size >= this.maxKeys) this.byKey.delete(this.byKey.keys().next().value as string);
    } else this.byKey.delete(key);
    // Moved to the end: the map's order is the order of last use.
    this.byKey.set(key, b);
    return b;
  }

  /** Keys kept now. */
  get size(): number {
    return this.byKey.size;
  }
}
