import { describe, expect, it } from 'vitest';
import { KeyedBuckets } from './keyed-buckets.js';

describe('KeyedBuckets', () => {
  it('gives a key its burst, then says how long until the next token, and refills with time', () => {
    let t = 0;
    const b = new KeyedBuckets({ burst: 2, perMinute: 6 }, () => t);
    expect([b.take('a'), b.take('a')]).toEqual([0, 0]);
    expect(b.take('a')).toBeCloseTo(10_000, 6);
    expect(b.take('b')).toBe(0);
    t += 9_000;
    expect(b.take('a')).toBeCloseTo(1_000, 6);
    t += 1_000;
    expect(b.take('a')).toBe(0);
  });

  it('takes several tokens at once, or none, with the wait for all of them; more than the burst never', () => {
    let t = 0;
    const b = new KeyedBuckets({ burst: 3, perMinute: 6 }, () => t);
    expect(b.take('a', 2)).toBe(0);
    // One left: two more wait for one token's refill (10 s), and take nothing meanwhile.
    expect(b.take('a', 2)).toBeCloseTo(10_000, 6);
    t += 10_000;
    expect(b.take('a', 2)).toBe(0);
    expect(b.take('a', 4)).toBe(Number.POSITIVE_INFINITY);
    t += 60_000;
    expect(b.take('a', 3)).toBe(0);
  });

  it('tracks at most maxKeys keys, dropping the least recently used', () => {
    const b = new KeyedBuckets({ burst: 1, perMinute: 1, maxKeys: 3 }, () => 0);
    for (const k of ['a', 'b', 'c']) expect(b.take(k)).toBeGreaterThanOrEqual(0);
    expect(b.take('a')).toBeGreaterThan(0);
    // d drops b (a was used since); a keeps its empty bucket, b comes back full.
    b.take('d');
    expect(b.size).toBe(3);
    expect(b.take('a')).toBeGreaterThan(0);
    expect(b.take('b')).toBe(0);
  });
});
