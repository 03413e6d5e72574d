// How many sessions a volunteer's captured stage holds (capture-plan.ts), and
// the page parameter that asks for capture: pure arithmetic over the manifest.
import { describe, expect, it } from 'vitest';
import type { StageManifest } from '../../shared/model/manifest.js';
import { tinyStagesForFile } from '../../signal-server/testing/tiny-stages.js';
import { CAPTURE_ROW_WAIT_MS, CAPTURE_ROWS_BUDGET_BYTES, parseCaptureParam, planCapture } from './capture-plan.js';

const stages = tinyStagesForFile('webswarm-capture-plan-');
const fused = (): StageManifest => ({ ...stages().manifest, graph: 'fused' });

describe('planCapture', () => {
  it('a row a session and one for challenges, as many as asked, at most 16 sessions', () => {
    const m = fused();
    expect(planCapture(m, 0, 2 ** 30, 3)).toEqual({
      ok: true,
      sessions: 3,
      options: { slots: 4, reservedRows: 1, rowWaitMs: CAPTURE_ROW_WAIT_MS },
    });
    expect(planCapture(m, 1, 2 ** 30, null)).toMatchObject({ ok: true, sessions: 16, options: { slots: 17 } });
  });

  it("fewer where the adapter's largest buffer or the rows' budget does not hold them", () => {
    const m = fused();
    const { numKvHeads, maxPositions, headDim } = m.model;
    const row = numKvHeads * maxPositions * headDim * 4;
    // A buffer of 5 rows: 4 sessions and the challenge's row.
    expect(planCapture(m, 0, 5 * row + 1, null)).toMatchObject({ ok: true, sessions: 4, options: { slots: 5 } });
    // A model whose context is long enough that the budget holds 3 rows of this stage's layers.
    const entry = m.stages[0];
    if (entry === undefined) throw new Error('no stage 0');
    const layers = entry.layers.end - entry.layers.start;
    const long = {
      ...m,
      model: { ...m.model, maxPositions: Math.floor(CAPTURE_ROWS_BUDGET_BYTES / (3 * 2 * layers * numKvHeads * headDim * 4)) },
    };
    expect(planCapture(long, 0, 2 ** 40, null)).toMatchObject({ ok: true, sessions: 2, options: { slots: 3 } });
  });

  it('not at all, with the reason, where two rows do not fit, the form is plain, the stage is absent or the count is wrong', () => {
    const m = fused();
    const row = m.model.numKvHeads * m.model.maxPositions * m.model.headDim * 4;
    expect(planCapture(m, 0, 2 * row - 1, null)).toMatchObject({ ok: false, why: expect.stringMatching(/cannot hold two rows/) });
    expect(planCapture(stages().manifest, 0, 2 ** 30, null)).toEqual({
      ok: false,
      why: 'graph capture runs the fused graph form only, not plain',
    });
    expect(planCapture(m, 99, 2 ** 30, null)).toMatchObject({ ok: false, why: 'the manifest has no stage 99' });
    for (const wanted of [0, 17, 1.5]) expect(planCapture(m, 0, 2 ** 30, wanted)).toMatchObject({ ok: false });
  });
});

describe('parseCaptureParam', () => {
  it('off, on, or a number of sessions; anything else named', () => {
    expect(parseCaptureParam(null)).toBeUndefined();
    expect(parseCaptureParam('off')).toBeUndefined();
    expect(parseCaptureParam('on')).toBeNull();
    expect(parseCaptureParam('4')).toBe(4);
    expect(parseCaptureParam('16')).toBe(16);
    for (const bad of ['0', '17', '2.5', 'yes', '', '-1', '1e1'])
      expect(() => parseCaptureParam(bad)).toThrow(/must be on, off or a number of sessions in 1\.\.16/);
  });
});
