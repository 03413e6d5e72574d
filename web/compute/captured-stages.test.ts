// What CapturedExecutor refuses before it touches a runtime or a GPU (the
// captured path itself runs in Chromium on WebGPU: e2e/graph-capture.spec.ts;
// Node here has no WebGPU). The stages are tiny-gqa-bias's, built for real.
import { describe, expect, it } from 'vitest';
import { tinyStagesForFile } from '../../signal-server/testing/tiny-stages.js';
import { CapturedExecutor } from './captured-stages.js';

const stages = tinyStagesForFile('webswarm-captured-');
/** Never reached: every call below is refused first. */
const noRuntime = undefined as never;
const noDevice = async () => null;

describe('CapturedExecutor refuses, by name, what it cannot capture', () => {
  it('the plain graph form', async () => {
    const { manifest } = stages();
    expect(manifest.graph).toBe('plain');
    await expect(CapturedExecutor.create(noRuntime, [], manifest, noDevice)).rejects.toMatchObject({
      code: 'ERR_SESSION_CREATE',
      message: expect.stringMatching(/fused graph form only, not plain/),
    });
  });

  it('rows and positions out of range', async () => {
    const fused = { ...stages().manifest, graph: 'fused' as const };
    const max = fused.model.maxPositions;
    for (const slots of [0, 65, 1.5, Number.NaN])
      await expect(CapturedExecutor.create(noRuntime, [], fused, noDevice, { slots })).rejects.toThrow(
        /slots must be an integer in 1\.\.64/,
      );
    for (const positions of [1, max + 1, 2.5])
      await expect(CapturedExecutor.create(noRuntime, [], fused, noDevice, { positions })).rejects.toThrow(
        new RegExp(`positions must be an integer in 2\\.\\.${max}`),
      );
  });
});
