import { describe, expect, it } from 'vitest';
import { NO_SHOW_WINDOW, NoShowWindow } from './no-show-window.js';

describe('NoShowWindow', () => {
  it('counts a session missed once, however many ways, and a miss after joining (unreached) still counts', () => {
    const w = new NoShowWindow();
    w.miss(1);
    w.miss(1);
    expect(w.count).toBe(1);
    // Joined session 2 in time, then a majority of a stage beside it said it could not reach it.
    w.showed(2);
    w.miss(2);
    expect(w.count).toBe(2);
    // A join reported after the miss does not take it back.
    w.miss(3);
    w.showed(3);
    expect(w.count).toBe(3);
  });

  it('forgets a miss once NO_SHOW_WINDOW later sessions came, and only then', () => {
    const w = new NoShowWindow();
    w.miss(0);
    for (let s = 1; s < NO_SHOW_WINDOW; s++) w.showed(s);
    expect(w.count).toBe(1);
    w.showed(NO_SHOW_WINDOW);
    expect(w.count).toBe(0);
  });

  it('three misses in a row count three; one in eleven never reaches three', () => {
    const row = new NoShowWindow();
    for (let s = 0; s < 3; s++) row.miss(s);
    expect(row.count).toBe(3);
    const spread = new NoShowWindow();
    let most = 0;
    for (let s = 0; s < 200; s++) {
      if (s % 11 === 0) spread.miss(s);
      else spread.showed(s);
      most = Math.max(most, spread.count);
    }
    expect(most).toBe(2);
  });

  it('takes up older sessions before its own (prepend): a session in both missed where either missed it, the newest NO_SHOW_WINDOW kept', () => {
    const w = new NoShowWindow();
    w.showed(7000);
    w.miss(7001);
    // Kept by a cluster, oldest first: 3 missed twice (two entries), 5 joined, 7000 missed by the one that left.
    w.prepend([
      [3, true],
      [5, false],
      [3, false],
      [7000, true],
    ]);
    expect(w.entries()).toEqual([
      [3, true],
      [5, false],
      [7000, true],
      [7001, true],
    ]);
    expect(w.count).toBe(3);
    // Its own sessions stay the newest: older ones fall out first (session ids of another server sort lower or higher).
    const own = new NoShowWindow();
    own.miss(1);
    own.prepend(Array.from({ length: NO_SHOW_WINDOW }, (_, i) => [9000 + i, i === 0] as const));
    expect(own.entries()).toHaveLength(NO_SHOW_WINDOW);
    expect(own.entries().at(-1)).toEqual([1, true]);
    expect(own.count).toBe(1);
  });
});
