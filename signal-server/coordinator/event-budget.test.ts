import { describe, expect, it } from 'vitest';
import { type BudgetVerdict, ByteBudget, ByteBudgets, EventBudget } from './event-budget.js';

const OPTS = { ratePerS: 100, burst: 200, maxDropped: 50 };

function clock(): { now: () => number; advance: (ms: number) => void } {
  let t = 0;
  return { now: () => t, advance: (ms) => (t += ms) };
}

function count(verdicts: BudgetVerdict[]): Record<BudgetVerdict, number> {
  const c = { serve: 0, drop: 0, abusive: 0 };
  for (const v of verdicts) c[v] += 1;
  return c;
}

describe('EventBudget', () => {
  it('serves a burst at once and the sustained rate for as long as it lasts', () => {
    const c = clock();
    const b = new EventBudget(OPTS, c.now);
    expect(count(Array.from({ length: 200 }, () => b.take()))).toEqual({ serve: 200, drop: 0, abusive: 0 });
    // Then one event every 10 ms (100/s) for a minute: every one served.
    const verdicts: BudgetVerdict[] = [];
    for (let i = 0; i < 6000; i++) {
      c.advance(10);
      verdicts.push(b.take());
    }
    expect(count(verdicts)).toEqual({ serve: 6000, drop: 0, abusive: 0 });
  });

  it('drops what is over the bucket, forgives an overshoot, and serves again as the bucket refills', () => {
    const c = clock();
    const b = new EventBudget(OPTS, c.now);
    const burst = Array.from({ length: 240 }, () => b.take());
    expect(count(burst)).toEqual({ serve: 200, drop: 40, abusive: 0 });
    expect(burst.indexOf('drop')).toBe(200);
    c.advance(1000); // 100 tokens back, and the 40 dropped are forgotten
    expect(count(Array.from({ length: 100 }, () => b.take()))).toEqual({ serve: 100, drop: 0, abusive: 0 });
    expect(b.take()).toBe('drop');
    expect(b.droppedTotal).toBe(41);
  });

  it('calls a flood abusive once it has dropped maxDropped events more than the rate forgives', () => {
    const c = clock();
    const b = new EventBudget(OPTS, c.now);
    // 20 000 events in 1.5 s (the measured attack): one every 75 µs.
    let first = -1;
    for (let i = 0; i < 20_000 && first < 0; i++) {
      c.advance(0.075);
      if (b.take() === 'abusive') first = i;
    }
    // The burst (200), what refilled meanwhile, then 51 dropped: about 265 events.
    expect(first).toBeGreaterThan(250);
    expect(first).toBeLessThan(280);
  });

  it('a sender just over the rate has its excess dropped without being called abusive', () => {
    const c = clock();
    const b = new EventBudget(OPTS, c.now);
    const verdicts: BudgetVerdict[] = [];
    for (let i = 0; i < 12_000; i++) {
      c.advance(5); // 200/s against 100/s allowed, for a minute
      verdicts.push(b.take());
    }
    const n = count(verdicts);
    expect(n.abusive).toBe(0);
    expect(n.serve).toBeGreaterThan(6000);
    expect(n.drop).toBeGreaterThan(5000);
  });

  it('refuses budgets that cannot work', () => {
    expect(() => new EventBudget({ ratePerS: 0, burst: 1, maxDropped: 0 })).toThrow(RangeError);
    expect(() => new EventBudget({ ratePerS: 1, burst: 0, maxDropped: 0 })).toThrow(RangeError);
  });
});

describe('ByteBudget', () => {
  const BYTES = { ratePerS: 1000, burst: 4000, maxDropped: 2000 };

  it('serves events while the bytes read are within the bucket, drops them past it, and serves again as it refills', () => {
    const c = clock();
    const b = new ByteBudget(BYTES, c.now);
    expect([b.arrived(1500), b.admit(), b.arrived(1500), b.admit(), b.arrived(1500), b.admit()]).toEqual([
      'ok',
      'serve',
      'ok',
      'serve',
      'ok',
      'drop',
    ]);
    expect(b.droppedEvents).toBe(1);
    c.advance(500); // 500 bytes back: level again
    expect(b.admit()).toBe('serve');
    c.advance(10_000); // never past a full bucket
    expect([b.arrived(4000), b.admit(), b.arrived(1), b.admit()]).toEqual(['ok', 'serve', 'ok', 'drop']);
  });

  it('calls the sender abusive as the bytes arrive, once they are maxDropped past the bucket, before any event is decoded', () => {
    const c = clock();
    const b = new ByteBudget(BYTES, c.now);
    const verdicts = Array.from({ length: 8 }, () => b.arrived(1000));
    // 4 000 in the bucket, 2 000 forgiven: the seventh kilobyte is one too many.
    expect(verdicts.indexOf('abusive')).toBe(6);
    expect(b.admit()).toBe('abusive');
  });

  it("gives back an owed report's bytes, never past a full bucket", () => {
    const c = clock();
    const b = new ByteBudget(BYTES, c.now);
    // A stream of owed reports far over the rate: each one's bytes given back as it is known to be owed.
    for (let i = 0; i < 100; i++) {
      expect(b.arrived(3000)).toBe('ok');
      b.refund(3000);
    }
    expect(b.admit()).toBe('serve');
    // A refund of more than was read leaves the bucket full, no more: 4 000 then 1 over.
    b.refund(1_000_000);
    expect([b.arrived(4000), b.admit(), b.arrived(1), b.admit()]).toEqual(['ok', 'serve', 'ok', 'drop']);
  });

  it('refuses budgets that cannot work', () => {
    expect(() => new ByteBudget({ ratePerS: 0, burst: 1, maxDropped: 0 })).toThrow(RangeError);
    expect(() => new ByteBudget({ ratePerS: 1, burst: 0, maxDropped: 0 })).toThrow(RangeError);
  });
});

describe('ByteBudgets', () => {
  it("one budget a key, kept for the key's next socket; the least recently used key is dropped beyond the most kept", () => {
    const c = clock();
    const budgets = new ByteBudgets({ ratePerS: 1000, burst: 4000, maxDropped: 2000 }, 2, c.now);
    expect(budgets.of('a').arrived(7000)).toBe('abusive');
    // The same key again (a new connection): the same budget, still over, also once it is no longer abusive.
    expect(budgets.of('a').over()).toBe(true);
    c.advance(2500);
    expect(budgets.of('a').over()).toBe(true);
    c.advance(600);
    expect(budgets.of('a').over()).toBe(false);
    expect(budgets.of('b').over()).toBe(false);
    expect(budgets.size).toBe(2);
    // 'a' was used before 'b': a third key drops 'a', which comes back full.
    budgets.of('c');
    expect(budgets.size).toBe(2);
    budgets.of('a').arrived(4000);
    expect(budgets.of('a').over()).toBe(false);
  });
});
