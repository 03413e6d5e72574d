import { describe, expect, it } from 'vitest';
import { MESH_AHEAD } from '../../shared/swarm/mesh-loop.js';
import { ReportAllowance, reportTarget } from './report-allowance.js';

describe('ReportAllowance: which step reports a socket budget does not count', () => {
  it('a replica owes one digest and one logits a step, in order, free', () => {
    const a = new ReportAllowance();
    for (let step = 0; step < 50; step++) {
      expect(a.admit('v1', 'digest', step, true, step)).toBe(true);
      expect(a.admit('v1', 'logits', step, true, step)).toBe(true);
      // Another replica's reports are its own.
      expect(a.admit('v2', 'digest', step, true, step)).toBe(true);
    }
  });

  it('a repeat, an earlier step, a step past the lead and a non-member are counted', () => {
    const a = new ReportAllowance();
    expect(a.admit('v1', 'digest', 3, true, 3)).toBe(true);
    expect(a.admit('v1', 'digest', 3, true, 3)).toBe(false);
    expect(a.admit('v1', 'digest', 2, true, 3)).toBe(false);
    expect(a.admit('v1', 'digest', 3 + MESH_AHEAD + 2, true, 3)).toBe(false);
    expect(a.admit('v1', 'digest', 3 + MESH_AHEAD + 1, true, 3)).toBe(true);
    expect(a.admit('v9', 'digest', 4, false, 3)).toBe(false);
    expect(a.admit('v1', 'digest', -1, true, 3)).toBe(false);
    expect(a.admit('v1', 'logits', 1.5, true, 3)).toBe(false);
  });

  it('free reports are bounded by the steps decided, however many are sent', () => {
    const a = new ReportAllowance();
    let free = 0;
    // 10 000 reports while the session decides steps 0..99: at most 100 + the lead are free.
    for (let i = 0; i < 10_000; i++) if (a.admit('v1', 'digest', i % 200, true, Math.floor(i / 100))) free++;
    expect(free).toBeLessThanOrEqual(100 + MESH_AHEAD + 1);
  });

  it('reads the session and step of a raw report without trusting it', () => {
    expect(reportTarget({ sessionId: 4, step: 7, digest: [] })).toEqual({ sessionId: 4, step: 7 });
    for (const bad of [
      null,
      3,
      'x',
      [],
      { sessionId: '4', step: 7 },
      { sessionId: 4 },
      { sessionId: 4, step: 1e300 },
      { sessionId: 0.5, step: 1 },
    ])
      expect(reportTarget(bad)).toBeNull();
  });
});
