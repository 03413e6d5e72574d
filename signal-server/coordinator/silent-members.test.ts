// SilentMembers' rules on their own, on a manual clock: which reports start a
// member's time again, and the limit a stage's pace sets (which reports count
// at all, StepVotes decides). The session that uses it is tested
// in generation-clock.test.ts and, over the real protocol, in spare-attacks.test.ts.
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../testing/manual-clock.js';
import { SILENT_FLOOR_MS, SILENT_PACE, SilentMembers } from './silent-members.js';

const STEP_MS = 30_000;

describe('SilentMembers', () => {
  it('hears each step once, in order: a report sent again, or of an earlier step, does not start its time again', async () => {
    const clock = new ManualClock();
    const m = new SilentMembers(clock, STEP_MS);
    m.watch('x', 0);
    m.heard('x', 3, 3);
    await clock.advance(SILENT_FLOOR_MS);
    m.heard('x', 3, 6);
    m.heard('x', 2, 6);
    m.stepDecided(6, 2);
    expect(m.unheardFor('x')).toBe(SILENT_FLOOR_MS);
    expect(m.silentFor('x', 0)).toBe(`sent no results for ${SILENT_FLOOR_MS} ms (limit ${SILENT_FLOOR_MS} ms)`);
    // Not watched: never silent.
    expect(m.silentFor('y', 0)).toBeNull();
    expect(m.unheardFor('y')).toBeNull();
    // A later step is heard.
    m.heard('x', 4, 7);
    m.stepDecided(9, 2);
    expect(m.silentFor('x', 0)).toBeNull();
    expect(m.unheardFor('x')).toBe(0);
  });

  it('judges a member behind that is heard within the limit but reports fewer than one in SILENT_PACE of its stage steps', async () => {
    const clock = new ManualClock();
    const m = new SilentMembers(clock, STEP_MS);
    m.watch('x', 0);
    // 100 steps decided over twice the floor; x reports a new step every 4 s (heard each time): 2 of them.
    for (let step = 0; step < 100; step++) {
      await clock.advance((2 * SILENT_FLOOR_MS) / 100);
      if (step === 39 || step === 79) m.heard('x', step === 39 ? 0 : 1, step);
      m.stepDecided(step, 2);
    }
    expect(m.unheardFor('x')).toBeLessThan(SILENT_FLOOR_MS);
    expect(m.silentFor('x', 0)).toBe(
      `reported 2 of the 100 steps its stage decided in ${2 * SILENT_FLOOR_MS} ms (fewer than 1 in ${SILENT_PACE})`,
    );
  });

  it("sets the limit from the stage's majority, between the floor and the step timeout", () => {
    const clock = new ManualClock();
    const m = new SilentMembers(clock, STEP_MS);
    expect(m.limitMs(0)).toBe(SILENT_FLOOR_MS);
    // r = 3, a majority of 2: the second fastest time counts.
    for (const ms of [5, 900, 700]) m.computed(0, ms);
    m.computed(1, 20_000);
    m.stepDecided(0, 2);
    expect(m.limitMs(0)).toBe(SILENT_PACE * 700);
    // One report alone is not a majority's time: stage 1 keeps the floor.
    expect(m.limitMs(1)).toBe(SILENT_FLOOR_MS);
    // A slow step raises it for the rest of the session, up to the step timeout.
    for (const ms of [10_000, 10_000]) m.computed(0, ms);
    m.stepDecided(1, 2);
    expect(m.limitMs(0)).toBe(STEP_MS);
    m.computed(0, 1);
    m.computed(0, 1);
    m.stepDecided(2, 2);
    expect(m.limitMs(0)).toBe(STEP_MS);
  });
});
