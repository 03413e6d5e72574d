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
});
