import { describe, expect, it } from 'vitest';
import { DutyCycle, MIN_SHARE, parseShare } from './duty-cycle.js';

describe('DutyCycle', () => {
  it('keeps compute to the share of wall time', async () => {
    let t = 0;
    const d = new DutyCycle(0.25, () => t);
    const slept: number[] = [];
    const exec = d.wrap(
      {
        run: async () => {
          t += 10; // every run computes for 10 ms
          return {};
        },
      },
      async (ms) => {
        slept.push(ms);
        t += ms;
      },
    );
    for (let i = 0; i < 4; i++) await exec.run(0, {});
    // 10 ms of compute, then 30 ms idle before the next: 25 %.
    expect(slept).toEqual([30, 30, 30]);
    expect(t).toBe(4 * 10 + 3 * 30);
  });

  it('does not wait at a share of 1, nor when the time has passed anyway', () => {
    let t = 0;
    const full = new DutyCycle(1, () => t);
    full.ran(50);
    expect(full.waitMs()).toBe(0);
    const half = new DutyCycle(0.5, () => t);
    half.ran(20);
    expect(half.waitMs()).toBe(20);
    t += 25;
    expect(half.waitMs()).toBe(0);
  });

  it('refuses a share out of range', () => {
    expect(() => new DutyCycle(0)).toThrow(RangeError);
    expect(() => new DutyCycle(1.5)).toThrow(/share must be in/);
  });

  it('reads a share from a URL or data attribute, keeping to [MIN_SHARE, 1]', () => {
    expect(parseShare('0.25', 0.5)).toBe(0.25);
    expect(parseShare('1', 0.5)).toBe(1);
    expect(parseShare(String(MIN_SHARE), 0.5)).toBe(MIN_SHARE);
    // A number out of range is kept to the range: asking for less than the least is the least, never full speed.
    for (const low of ['0.01', '0', '-1']) expect(parseShare(low, 1), low).toBe(MIN_SHARE);
    for (const high of ['1.5', '7']) expect(parseShare(high, 0.5), high).toBe(1);
    for (const bad of [null, undefined, '', ' ', 'half', 'NaN', 'Infinity', '-Infinity'])
      expect(parseShare(bad, 0.5), String(bad)).toBe(0.5);
  });
});
