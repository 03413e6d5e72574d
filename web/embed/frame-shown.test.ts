import { describe, expect, it } from 'vitest';
import { HiddenClock } from './frame-shown.js';

/** Runs the clock over [shown, ms] spans in 250 ms ticks, as the frame does; the actions it asked for, with their time. */
function run(spans: readonly (readonly [boolean, number])[]): string[] {
  const clock = new HiddenClock(3_000);
  let paused = false;
  let t = 0;
  const acts: string[] = [];
  for (const [shown, ms] of spans)
    for (let k = 0; k < ms / 250; k++) {
      t += 250;
      const act = clock.tick(shown, 250, paused);
      if (act === 'pause') paused = true;
      if (act === 'resume') paused = false;
      if (act !== null) acts.push(`${act} at ${t}`);
    }
  return acts;
}

describe('HiddenClock', () => {
  it('pauses a frame hidden for 3 s, and resumes it once shown for 3 s on end', () => {
    expect(
      run([
        [true, 5_000],
        [false, 4_000],
        [true, 4_000],
      ]),
    ).toEqual(['pause at 8000', 'resume at 12000']);
  });

  it('counts hidden time across shows shorter than 3 s: a host page flashing the widget does not keep it computing', () => {
    // Shown 0.5 s in every 3 s (before, each show restarted the count: never paused).
    const flashing = Array.from(
      { length: 4 },
      () =>
        [
          [false, 2_500],
          [true, 500],
        ] as const,
    ).flat();
    expect(run(flashing)).toEqual(['pause at 3500']);
  });

  it('a show of 3 s on end forgets what was hidden before: a page that covers it a moment now and then keeps it', () => {
    const covered = Array.from(
      { length: 5 },
      () =>
        [
          [false, 2_000],
          [true, 3_000],
        ] as const,
    ).flat();
    expect(run(covered)).toEqual([]);
  });
});
