import { describe, expect, it } from 'vitest';
import { ManualClock } from './manual-clock.js';

describe('the manual clock', () => {
  it('runs due timers at their own time, earliest first, ties in the order set, and not before', async () => {
    const clock = new ManualClock();
    const ran: string[] = [];
    clock.setTimeout(() => ran.push(`b@${clock.now()}`), 20);
    clock.setTimeout(() => ran.push(`a@${clock.now()}`), 10);
    clock.setTimeout(() => ran.push(`c@${clock.now()}`), 20);
    await clock.advance(9);
    expect(ran).toEqual([]);
    expect(clock.now()).toBe(9);
    await clock.advance(11);
    expect(ran).toEqual(['a@10', 'b@20', 'c@20']);
    expect(clock.pending).toBe(0);
  });

  it('forgets a cleared timer, and runs one set by a timer within the same advance', async () => {
    const clock = new ManualClock();
    const ran: number[] = [];
    const h = clock.setTimeout(() => ran.push(-1), 5);
    clock.setTimeout(() => clock.setTimeout(() => ran.push(clock.now()), 5), 5);
    clock.clearTimeout(h);
    await clock.advance(10);
    expect(ran).toEqual([10]);
  });

  it('lets promise callbacks run after each timer', async () => {
    const clock = new ManualClock();
    const seen: number[] = [];
    const sleep = (ms: number) => new Promise<void>((r) => clock.setTimeout(r, ms));
    void (async () => {
      await sleep(5);
      seen.push(clock.now());
      await sleep(5);
      seen.push(clock.now());
    })();
    await clock.advance(10);
    expect(seen).toEqual([5, 10]);
  });

  it('refuses a timer that keeps setting itself', async () => {
    const clock = new ManualClock();
    const again = () => clock.setTimeout(again, 0);
    again();
    await expect(clock.advance(1)).rejects.toThrow('more than 10000 timers fell due in one advance of 1 ms');
  });
});
