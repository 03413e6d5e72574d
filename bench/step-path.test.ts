import { describe, expect, it } from 'vitest';
import type { TraceEntry, TracePhase } from '../web/volunteer/step-trace.js';
import { coordinatorRows, meshStepRows, type TracedRun } from './step-path.js';

/** Three tabs' stamps for steps 1–4 of a mesh loop on a known clock: every leg's length is set here. */
function syntheticRun(): TracedRun {
  const tabs: TraceEntry[][] = [[], [], []];
  const stamp = (stage: number, step: number, phase: TracePhase, t: number, runMs?: number) =>
    tabs[stage]?.push(runMs === undefined ? { session: 1, step, phase, t } : { session: 1, step, phase, t, runMs });
  const tokenAt = new Map<number, number>();
  // The coordinator's tokens for steps −1..1 came before step 1's mesh token; the one for step 1 (k − MESH_AHEAD at k = 3) comes late.
  stamp(0, 0, 'input', 0);
  for (let k = 1; k <= 4; k++) {
    const base = 10 * k;
    stamp(0, k, 'recv', base);
    if (k === 1) stamp(0, 1, 'input', base + 22); // step 3 (recv at 30) waits for it until 32
    const wait = k === 3 ? 2 : 0;
    let t = base + wait + 0.1;
    for (let s = 0; s < 3; s++) {
      if (s > 0) {
        stamp(s, k, 'recv', t);
        t += 0.1;
      }
      stamp(s, k, 'run-start', t);
      t += 1;
      stamp(s, k, 'run-end', t, 0.9);
      t += 0.05;
      // The last stage's token frame for k + 1 leaves first; its logits of step k are stamped after (ignored).
      stamp(s, s === 2 ? k + 1 : k, 'sent', t);
      if (s === 2) {
        stamp(2, k, 'logits', t + 0.5);
        tokenAt.set(k, t + 2);
      }
      t += 0.4;
    }
  }
  stamp(0, 5, 'recv', 50);
  return { tabs: tabs.map((entries, stage) => ({ stage, entries })), tokenAt };
}

const byName = (rows: string[][], prefix: string) => rows.find((r) => r[0]?.startsWith(prefix));

describe('meshStepRows', () => {
  it('splits each step into legs that add up to it, the hops beside their floor, and stage 0’s wait for the coordinator apart', () => {
    const rows = meshStepRows([syntheticRun()], 3, (_from, to) => (to === 0 ? 0.2 : 0.3));
    const whole = byName(rows, 'whole step');
    expect(whole?.[1]).toBe('10.000');
    const legs = rows.filter((r) => r !== whole).reduce((sum, r) => sum + Number(r[1]), 0);
    expect(legs).toBeCloseTo(10, 2);
    // One step of four waited 2 ms: a mean of 0.5.
    expect(byName(rows, "stage 0: waiting for the coordinator's token")?.[1]).toBe('0.500');
    expect(byName(rows, 'stage 0: arrival → compute otherwise')?.[1]).toBe('0.100');
    expect(byName(rows, 'hop 0 → 1')?.slice(1)).toEqual(['0.400', '4 %', '0.400', '0.300']);
    expect(byName(rows, 'hop 1 → 2')?.[1]).toBe('0.400');
    expect(byName(rows, 'stage 2: session.run')?.[1]).toBe('0.900');
    expect(byName(rows, 'stage 2: around session.run')?.[1]).toBe('0.100');
    // The last stage's step ends with its token frame, not its logits stamped later.
    expect(byName(rows, 'stage 2: compute → sent')?.[1]).toBe('0.050');
    expect(byName(rows, 'hop 2 → 0')?.[4]).toBe('0.200');
  });

  it('refuses a run without a trace per stage', () => {
    const run = syntheticRun();
    expect(() => meshStepRows([{ ...run, tabs: run.tabs.slice(1) }], 3, () => 0)).toThrow(/a trace per stage/);
  });
});

describe('coordinatorRows', () => {
  it('times the coordinator from the last stage’s compute end, through its page’s socket, to the next token', () => {
    const rows = coordinatorRows([syntheticRun()], 3);
    // Compute end → the token frame 0.05, its logits handed 0.5 later, accepted 2 after the frame.
    expect(rows[0]?.[1]).toBe('2.050');
    expect(rows[1]?.[1]).toBe('0.550');
    expect(rows[2]?.[1]).toBe('1.500');
    // Between tokens: steps 2–4, 10 ms apart but for step 3's 2 ms wait (12, then 8).
    expect(rows[4]?.[2]).toBe('10.000');
  });
});
