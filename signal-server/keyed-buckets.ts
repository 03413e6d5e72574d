/**
 * Token buckets by key (an API key, a client address): each holds `burst`
 * tokens, starts full and refills continuously at `perMinute`. Used for the
 * API's rate limit and for the challenges a client may make the server
 * compute. Bounded: beyond `maxKeys` the least recently used key is dropped
 * (it comes back with a full bucket, which only forgives, never blocks).
 * Pure: the clock is injected.
 */
export interface KeyedBucketsOptions {
  /** Tokens a key may spend at once (its bucket's size). */
  readonly burst: number;
  /** Tokens a key gets back a minute. */
  readonly perMinute: number;
  /** Most keys tracked at once. */
  readonly maxKeys?: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

const DEFAULT_MAX_KEYS = 10_000;
const EPSILON = 1e-9;

export class KeyedBuckets {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly o: KeyedBucketsOptions,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(o.burst >= 1 && o.perMinute > 0))
      throw new RangeError(`keyed buckets need burst ≥ 1 and perMinute > 0 (got ${JSON.stringify(o)})`);
  }

  /**
   * Takes `count` (default one) of `key`'s tokens: 0 when taken, else the milliseconds until they are there
   * (nothing taken; infinite for more than the bucket holds).
   */
  take(key: string, count = 1): number {
    const t = this.now();
    let b = this.buckets.get(key);
    if (b === undefined) {
      b = { tokens: this.o.burst, at: t };
      if (this.buckets.size >= (this.o.maxKeys ?? DEFAULT_MAX_KEYS)) this.buckets.delete(this.buckets.keys().next().value as string);
    } else {
      b.tokens = Math.min(this.o.burst, b.tokens + ((t - b.at) / 60_000) * this.o.perMinute);
      b.at = t;
      // Moved to the end: the map's order is the order of last use.
      this.buckets.delete(key);
    }
    this.buckets.set(key, b);
    // A hair under one is one: a refill timed to the millisecond falls short by float rounding only.
    if (b.tokens < count - EPSILON)
      return count > this.o.burst ? Number.POSITIVE_INFINITY : ((count - b.tokens) / this.o.perMinute) * 60_000;
    b.tokens = Math.max(0, b.tokens - count);
    return 0;
  }

  /** Keys tracked now. */
  get size(): number {
    return this.buckets.size;
  }
}
