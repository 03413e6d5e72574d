import { describe, expect, it } from 'vitest';
import { DelayLine, MAX_DELAYED_MESSAGES } from './delay-line.js';

/** Real timers: the line is what a bench's WAN runs on. Bounds are generous (2 busy cores). */
describe('DelayLine', () => {
  it('sends at once without a delay', () => {
    const got: number[] = [];
    const line = new DelayLine(0);
    for (let i = 0; i < 5; i++) expect(line.run(() => got.push(i))).toBe(true);
    expect(got).toEqual([0, 1, 2, 3, 4]);
  });

  it('sends each message no earlier than the delay after it was handed over, in order, bursts included', async () => {
    const line = new DelayLine(40);
    const sent: { i: number; at: number; late: number }[] = [];
    const handed: number[] = [];
    let i = 0;
    // Three bursts of 200, 15 ms apart: 600 messages, one timer at a time.
    for (let burst = 0; burst < 3; burst++) {
      for (let k = 0; k < 200; k++, i++) {
        const n = i;
        handed[n] = performance.now();
        line.run(() => sent.push({ i: n, at: performance.now(), late: performance.now() - (handed[n] as number) }));
      }
      await new Promise((r) => setTimeout(r, 15));
    }
    await expect.poll(() => sent.length, { timeout: 10_000 }).toBe(600);
    expect(sent.map((s) => s.i)).toEqual(Array.from({ length: 600 }, (_, n) => n));
    for (const s of sent) {
      expect(s.late, `message ${s.i}`).toBeGreaterThanOrEqual(40 - 1); // timers may round to the millisecond
      expect(s.late, `message ${s.i}`).toBeLessThan(40 + 5_000);
    }
    expect(line.pending).toBe(0);
  });

  it('keeps order when the delay is lowered with messages waiting', async () => {
    const line = new DelayLine(200);
    const got: string[] = [];
    line.run(() => got.push('slow'));
    line.setDelay(0);
    // Not sent at once: it would overtake the one waiting.
    line.run(() => got.push('fast'));
    expect(got).toEqual([]);
    await expect.poll(() => got.length, { timeout: 10_000 }).toBe(2);
    expect(got).toEqual(['slow', 'fast']);
  });

  it('refuses bad delays by name, and sends nothing after close', async () => {
    expect(() => new DelayLine(-1)).toThrow(/network delay must be 0 to/);
    expect(() => new DelayLine(Number.NaN)).toThrow(RangeError);
    expect(() => new DelayLine(10_001)).toThrow(RangeError);
    const line = new DelayLine(10);
    let n = 0;
    line.run(() => n++);
    line.close();
    expect(line.run(() => n++)).toBe(false);
    await new Promise((r) => setTimeout(r, 60));
    expect(n).toBe(0);
  });

  it('holds a bounded number of messages', () => {
    const line = new DelayLine(10_000);
    for (let i = 0; i < MAX_DELAYED_MESSAGES; i++) line.run(() => {});
    expect(line.run(() => {})).toBe(false);
    line.close();
  });
});
