// The churn guard's bucket on an injected clock: a burst of connections to
// one peer, then one each refillMs; peers apart; the oldest peer forgotten.
import { describe, expect, it } from 'vitest';
import { ChurnGuard, PEER_CHURN_LIMIT } from './churn-guard.js';

describe('ChurnGuard', () => {
  it('allows the burst at once, then one each refillMs, and says how long until the next', () => {
    let t = 0;
    const g = new ChurnGuard({ burst: 3, refillMs: 1_000, maxPeers: 8 }, () => t);
    expect([g.take('p'), g.take('p'), g.take('p'), g.take('p')]).toEqual([true, true, true, false]);
    expect(g.waitMs('p')).toBe(1_000);
    t = 600;
    expect(g.take('p')).toBe(false);
    expect(g.waitMs('p')).toBe(400);
    t = 1_000;
    expect([g.take('p'), g.take('p')]).toEqual([true, false]);
    // Another peer has its own bucket; a long pause refills to the burst, no more.
    expect(g.take('q')).toBe(true);
    t = 100_000;
    expect([g.take('p'), g.take('p'), g.take('p'), g.take('p')]).toEqual([true, true, true, false]);
  });

  it('remembers at most maxPeers: the one used longest ago starts over with a full bucket', () => {
    const g = new ChurnGuard({ burst: 1, refillMs: 1_000, maxPeers: 2 }, () => 0);
    expect([g.take('a'), g.take('b'), g.take('a')]).toEqual([true, true, false]);
    expect(g.take('c')).toBe(true); // b is forgotten, a stays (used last)
    expect([g.take('a'), g.take('b')]).toEqual([false, true]);
  });

  it('refuses settings that would let no connection through', () => {
    expect(() => new ChurnGuard({ ...PEER_CHURN_LIMIT, burst: 0 })).toThrow(RangeError);
    expect(() => new ChurnGuard({ ...PEER_CHURN_LIMIT, refillMs: 0 })).toThrow(RangeError);
  });
});
