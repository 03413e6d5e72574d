// SilentMembers' rules on their own, on a manual clock: which reports start a
// member's time again, and the limit a stage's pace sets (which reports count
// at all, StepVotes decides). The session that uses it is tested
// in generation-clock.test.ts and, over the real protocol, in spare-attacks.test.ts.
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../testing/manual-clock.js';
import { carriedOn, SILENT_FLOOR_MS, SILENT_PACE, type SilenceCarry, SilentMembers } from './silent-members.js';

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

  describe('over sessions one after another (carry, then watch)', () => {
    /** One session of `steps` steps a `stepMs` apart; `hears` the steps x reports. What it leaves, and how x was judged at each step. */
    async function session(carried: SilenceCarry | null, steps: number, stepMs: number, hears: (step: number) => boolean = () => false) {
      const clock = new ManualClock();
      await clock.advance(1_000_000); // another session's clock: only durations carry
      const m = new SilentMembers(clock, STEP_MS);
      m.watch('x', 0, carried ?? undefined);
      const judged: (string | null)[] = [];
      for (let step = 0; step < steps; step++) {
        await clock.advance(stepMs);
        if (hears(step)) m.heard('x', step, step);
        m.stepDecided(step, 2);
        judged.push(m.silentFor('x', 0));
      }
      return { left: m.carry('x', 0), judged };
    }

    it('adds up the time a member is unheard in sessions shorter than the limit, and judges it once that reaches the limit', async () => {
      // Each session 10 steps of 200 ms: 2 s, under the 5 s floor; alone, none judges it.
      const one = await session(null, 10, 200);
      expect(one.judged.every((j) => j === null)).toBe(true);
      // unheardSteps: how far the last decided step (9) is past the step in flight when it was watched (0).
      expect(one.left).toEqual({ unheardMs: 2_000, unheardSteps: 9, window: { ms: 2_000, decided: 10, reported: 0 } });
      const two = await session(one.left, 10, 200);
      expect(two.judged.every((j) => j === null)).toBe(true);
      expect(two.left?.unheardMs).toBe(4_000);
      // The third reaches 5 s at its fifth step (2 × 2 s + 5 × 200 ms), and judges it there.
      const three = await session(two.left, 10, 200);
      expect(three.judged.slice(0, 4).every((j) => j === null)).toBe(true);
      expect(three.judged[4]).toBe(`sent no results for ${SILENT_FLOOR_MS} ms (limit ${SILENT_FLOOR_MS} ms)`);
    });

    it('starts again from nothing once the member is heard, and carries nothing from a session where nothing was decided', async () => {
      const one = await session(null, 10, 200);
      // Heard at the last step of the next: its time unheard is that step's, 0 ms up to the last decided step.
      const two = await session(one.left, 10, 200, (step) => step === 9);
      expect(two.left).toMatchObject({ unheardMs: 0, unheardSteps: 0 });
      const idle = await session(one.left, 0, 200);
      expect(idle.left).toEqual(one.left);
      // Not watched: nothing to carry.
      expect(new SilentMembers(new ManualClock(), STEP_MS).carry('x', 0)).toBeNull();
    });

    it('judges behind a member heard once a session that reports fewer than one in SILENT_PACE of the steps, over sessions', async () => {
      // Step 0 of each session only, of 10: heard each time (under a second unheard), but behind.
      let carried: SilenceCarry | null = null;
      const judged: (string | null)[] = [];
      for (let k = 0; k < 8 && !judged.some((j) => j !== null); k++) {
        const s = await session(carried, 10, 200, (step) => step === 0);
        // Heard in it: its 1.8 s unheard since (it may be computing, as a slow honest replica is) does not carry.
        expect(s.left?.unheardMs).toBe(0);
        judged.push(...s.judged);
        carried = s.left;
      }
      const verdict = judged.find((j) => j !== null);
      // Over twice the floor (10 s: five sessions), 5 of 50 steps reported.
      expect(verdict).toBe(`reported 5 of the 50 steps its stage decided in ${2 * SILENT_FLOOR_MS} ms (fewer than 1 in ${SILENT_PACE})`);
      // A member that reports every step is never judged, and leaves nothing unheard.
      let honest: SilenceCarry | null = null;
      for (let k = 0; k < 8; k++) {
        const s = await session(honest, 10, 200, () => true);
        expect(s.judged.every((j) => j === null)).toBe(true);
        honest = s.left;
      }
      expect(honest?.unheardMs).toBe(0);
    });

    it('merges what sessions held at once leave: the longer time unheard, the windows added; one after another, the last', () => {
      const c = (unheardMs: number, ms: number, decided: number, reported: number): SilenceCarry => ({
        unheardMs,
        unheardSteps: unheardMs / 100,
        window: { ms, decided, reported },
      });
      const before = c(1_000, 1_000, 10, 2);
      // One after another: the record is what this session read, and takes what it leaves.
      expect(carriedOn(before, before, c(0, 3_000, 30, 22))).toEqual(c(0, 3_000, 30, 22));
      // Beside another that left silence (3 s unheard, 20 steps on top): a session that heard it wipes neither.
      const other = c(3_000, 3_000, 30, 2);
      expect(carriedOn(other, before, c(0, 3_000, 30, 22))).toEqual(c(3_000, 5_000, 50, 22));
      // Its window passed in this session: what it added is the new window.
      expect(carriedOn(other, before, c(0, 500, 5, 5))).toEqual(c(3_000, 3_500, 35, 7));
      // This one decided nothing (it gives back what it read): the record stays, not the stale time unheard it read.
      const heard = c(0, 4_000, 40, 12);
      expect(carriedOn(heard, before, before)).toBe(heard);
      expect(carriedOn(heard, null, c(0, 0, 0, 0))).toBe(heard);
      // Judged here, or struck in another since: nothing.
      expect(carriedOn(other, before, null)).toBeNull();
      expect(carriedOn(null, before, c(0, 3_000, 30, 22))).toBeNull();
    });
  });
});
