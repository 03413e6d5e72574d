// npm start's progress line: ready per stage against the redundancy, and what
// is still awaited (tabs to join, stages to load).
import { describe, expect, it } from 'vitest';
import type { SwarmReadiness } from '../shared/swarm/readiness.js';
import { progressLine } from './start-progress.js';

const readiness = (stages: [number, number][], volunteers: number): SwarmReadiness => ({
  stages: stages.map(([ready, loading]) => ({ ready, loading, routable: ready })),
  volunteers,
  ready: stages.reduce((n, [r]) => n + r, 0),
  redundancy: 3,
  canAnswer: stages.every(([r]) => r >= 3),
  fallback: 'off',
});

describe('progressLine', () => {
  const o = { expected: 9, redundancy: 3, elapsedMs: 35_400 };

  it('shows ready per stage and waits first for tabs to join, then for stages to load', () => {
    expect(
      progressLine(
        readiness(
          [
            [0, 1],
            [0, 0],
            [0, 0],
          ],
          1,
        ),
        o,
      ),
    ).toBe('[35 s] ready per stage 0/3 · 0/3 · 0/3 (0 of 9): waiting for 8 tabs to open and join and 1 tab to load their stage');
    expect(
      progressLine(
        readiness(
          [
            [2, 1],
            [3, 0],
            [0, 3],
          ],
          9,
        ),
        o,
      ),
    ).toBe('[35 s] ready per stage 2/3 · 3/3 · 0/3 (5 of 9): waiting for 4 tabs to load their stage');
    expect(
      progressLine(
        readiness(
          [
            [3, 0],
            [3, 0],
            [3, 0],
          ],
          9,
        ),
        o,
      ),
    ).toBe('[35 s] ready per stage 3/3 · 3/3 · 3/3 (9 of 9): all ready');
  });

  it('says so when the server serves no model (no stages)', () => {
    expect(progressLine(readiness([], 0), { ...o, expected: 1 })).toBe(
      '[35 s] ready per stage — (0 of 1): waiting for 1 tab to open and join',
    );
  });
});
