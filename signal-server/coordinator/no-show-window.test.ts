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

  it('takes up older sessions before its own (prepend), as history: never matched with its own by id, nor written again (own)', () => {
    const w = new NoShowWindow();
    const before = Date.now();
    w.showed(7000);
    w.miss(7001);
    // Kept by a cluster, oldest first: missed, joined, missed (one of them a session 7000 of a server since restarted).
    w.prepend([true, false, true]);
    expect(w.count).toBe(3);
    // Its own, with when each was recorded: the taken-up ones are not (a tab that took them up and left wrote them
    // again as its newest, and aged its key's misses out having served nothing: a red-team find).
    const own = w.own();
    expect(own.map(({ sessionId, missed }) => [sessionId, missed])).toEqual([
      [7000, false],
      [7001, true],
    ]);
    for (const x of own) expect(x.at).toBeGreaterThanOrEqual(before);
    // A session of its own with the id of a taken-up one (7000 again) is its own: joined, as it said.
    w.showed(7000);
    expect(w.count).toBe(3);
    // Its own sessions stay the newest: the oldest taken-up ones fall out first (the one missed among them here).
    const full = new NoShowWindow();
    full.miss(1);
    full.prepend(Array.from({ length: NO_SHOW_WINDOW }, (_, i) => i === 0));
    expect(full.count).toBe(1);
    expect(full.own().map((x) => x.sessionId)).toEqual([1]);
  });
});
