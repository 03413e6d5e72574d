// How often this side opens a new connection to one peer. Each connection
// costs signalling (an offer or answer and its ICE candidates), and every
// signalling message counts against this tab's own event budget on the
// server: a neighbour that closes its channels, or offers a new connection,
// again and again would otherwise make this tab spend its budget for it
// until the server cut it off (ERR_RATE_LIMITED). Pure: the clock is injected.

/** Why a connection to a peer waits: it asked for (or forced) too many too fast. Counted like a refused frame. */
export const ERR_PEER_CHURN = 'ERR_PEER_CHURN';

export interface ChurnGuardOptions {
  /** Connections to one peer opened at once (the bucket's size; it starts full). */
  readonly burst: number;
  /** After the burst, one more each this many ms. */
  readonly refillMs: number;
  /** Peers remembered (the oldest is forgotten first: a forgotten peer starts with a full bucket). */
  readonly maxPeers: number;
}

/**
 * A legitimate neighbour needs a new connection rarely: its first, and one
 * after each failure (at most MAX_REOPENS in a row); 4 at once covers that.
 * Then one each 2 s: at most 4 + t/2 connections to one peer in t seconds.
 */
export const PEER_CHURN_LIMIT: ChurnGuardOptions = { burst: 4, refillMs: 2_000, maxPeers: 64 };

interface Bucket {
  tokens: number;
  at: number;
}

export class ChurnGuard {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly options: ChurnGuardOptions = PEER_CHURN_LIMIT,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(options.burst >= 1 && options.refillMs > 0 && options.maxPeers >= 1)) {
      throw new RangeError(`a churn guard needs burst ≥ 1, refillMs > 0, maxPeers ≥ 1 (got ${JSON.stringify(options)})`);
    }
  }

  /** A new connection to `remote` now: true (and counted), or false (waitMs says how long until one is). */
  take(remote: string): boolean {
    const b = this.bucket(remote);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Ms until take(remote) would succeed (0: now). */
  waitMs(remote: string): number {
    const b = this.bucket(remote);
    return b.tokens >= 1 ? 0 : Math.ceil((1 - b.tokens) * this.options.refillMs);
  }

  private bucket(remote: string): Bucket {
    const t = this.now();
    let b = this.buckets.get(remote);
    if (b === undefined) b = { tokens: this.options.burst, at: t };
    else this.buckets.delete(remote); // re-inserted last: the map's order is the order of use
    b.tokens = Math.min(this.options.burst, b.tokens + Math.max(0, t - b.at) / this.options.refillMs);
    b.at = t;
    this.buckets.set(remote, b);
    if (this.buckets.size > this.options.maxPeers) this.buckets.delete(this.buckets.keys().next().value as string);
    return b;
  }
}
