// SilentMembers' rules on their own, on a manual clock: which reports count as
// heard, and the limit a stage's pace sets. The session that uses it is tested
// in generation-clock.test.ts and, over the real protocol, in spare-attacks.test.ts.
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../testing/manual-clock.js';
import { SILENT_FLOOR_MS, SILENT_PACE, SilentMembers } from './silent-members.js';

const STEP_MS = 30_000;
const WINDOW = 64;

describe('SilentMembers', () => {
  it('hears a report of a step older than the kept votes only within a newcomer replay', async () => {
    const clock = new ManualClock();
    const m = new SilentMembers(clock, STEP_MS, WINDOW);
    // x was there from the start; y joined at step 200, replaying the 200 steps before.
    m.watch('x', 0);
    m.watch('y', 200, 200);
    m.computed(0, 1);
    m.computed(0, 1);
    await clock.advance(SILENT_FLOOR_MS);
    // Step 200 in flight: a report of step 100 is older than the kept votes. From y, its replay: heard.
    m.heard('x', 100, 200);
    m.heard('y', 100, 200);
    m.stepDecided(202, 2);
    expect(m.silentFor('x', 0)).toBe(SILENT_FLOOR_MS);
    expect(m.silentFor('y', 0)).toBeNull();
    // Within the kept votes, x is heard too.
    await clock.advance(1);
    m.heard('x', 150, 202);
    m.stepDecided(204, 2);
    expect(m.silentFor('x', 0)).toBeNull();
  });

  it("sets the limit from the stage's majority, between the floor and the step timeout", () => {
    const clock = new ManualClock();
    const m = new SilentMembers(clock, STEP_MS, WINDOW);
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
