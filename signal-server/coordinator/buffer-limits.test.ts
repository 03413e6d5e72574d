// Stages sized to what a volunteer can bind: the planner and the assignment
// refuse a volunteer a stage whose largest buffer is over its adapter's limit,
// and the WASM rule (a stage's need within wasm32's 4 GiB).
import { describe, expect, it } from 'vitest';
import { bufferLimitBytes, GIB, offeredBytes, WEBGPU_DEFAULT_MAX_BINDING_BYTES } from '../../shared/protocol/capacity.js';
import { type ModelSizes, type PlannedVolunteer, planPartition, rangeLargestBuffer } from './partition-planner.js';
import { assignStages, canHold } from './stage-assignment.js';

const MB = 1_000_000;
/** 12 layers of 10 MB whose largest buffer is 4 MB; an embedding and a head of 20 MB, each one buffer. */
const SIZES: ModelSizes = {
  layerBytes: new Array(12).fill(10 * MB),
  firstBytes: 20 * MB,
  lastBytes: 20 * MB,
  layerLargestBytes: new Array(12).fill(4 * MB),
  firstLargestBytes: 20 * MB,
  lastLargestBytes: 20 * MB,
};
const BIG = 10_000 * MB;

function vols(n: number, prefix: string, bufferLimitBytes: number | null): PlannedVolunteer[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `${prefix}${i}`,
    memoryBytes: BIG,
    bufferLimitBytes,
    msPerLayer: null,
    stage: -1,
    client: `${prefix}${i}`,
  }));
}

function ok(p: ReturnType<typeof planPartition>) {
  if (!p.ok) throw new Error(p.reason);
  return p;
}

describe('buffer limits in the plan', () => {
  it('never gives a volunteer a stage whose largest buffer is over its limit: adapters too narrow for any stage are idle', () => {
    // 3 volunteers that bind 25 MB, 3 that bind 8 MB, r = 3: two stages would put the embedding or the head on the
    // narrow ones, so the whole model is one stage, the wide ones' (the planner cannot serve 2 stages).
    const wide = vols(3, 'w', 25 * MB);
    const narrow = vols(3, 'n', 8 * MB);
    const p = ok(planPartition({ sizes: SIZES, volunteers: [...narrow, ...wide], redundancy: 3, current: null }));
    expect(p.ranges.length).toBe(1);
    for (const v of wide) expect(p.stageOf.get(v.id)).toBe(0);
    expect([...p.idle].sort()).toEqual(['n0', 'n1', 'n2']);
    // Without limits (a planner that ignored them, as before) the same six make two stages.
    const blind = ok(
      planPartition({
        sizes: { layerBytes: SIZES.layerBytes, firstBytes: SIZES.firstBytes, lastBytes: SIZES.lastBytes },
        volunteers: [...narrow, ...wide],
        redundancy: 3,
        current: null,
      }),
    );
    expect(blind.ranges.length).toBe(2);
  });

  it('with enough wide adapters the narrow ones hold the middle stage of three', () => {
    const wide = vols(6, 'w', 25 * MB);
    const narrow = vols(3, 'n', 8 * MB);
    const p = ok(planPartition({ sizes: SIZES, volunteers: [...narrow, ...wide], redundancy: 3, current: null }));
    expect(p.ranges.length).toBe(3);
    expect(p.idle).toEqual([]);
    for (const v of narrow) expect(p.stageOf.get(v.id)).toBe(1);
    for (const v of wide) expect([0, 2]).toContain(p.stageOf.get(v.id));
    for (const v of [...wide, ...narrow]) {
      const range = p.ranges[p.stageOf.get(v.id) as number] as { start: number; end: number };
      expect(rangeLargestBuffer(SIZES, range)).toBeLessThanOrEqual(v.bufferLimitBytes as number);
    }
  });

  it('refuses with the reason when no volunteer can bind a one-layer stage', () => {
    const p = planPartition({ sizes: SIZES, volunteers: vols(3, 't', 2 * MB), redundancy: 3, current: null });
    expect(p.ok).toBe(false);
    if (!p.ok) expect(p.reason).toContain('a buffer of 20000000 bytes, which 0 of them can bind');
  });

  it('the assignment is a matching: memory and buffer limits that are not nested still find the one way that serves', () => {
    // Stage 0: small total, one big buffer; stage 1: big total, small buffers. A has memory but a narrow adapter,
    // B a wide adapter and little memory: only A on 1 and B on 0 serves, whatever they prefer.
    const stages = [
      { index: 0, needBytes: 10, largestBufferBytes: 10 },
      { index: 1, needBytes: 100, largestBufferBytes: 1 },
    ];
    const a = { id: 'A', memoryBytes: 100, bufferLimitBytes: 5 };
    const b = { id: 'B', memoryBytes: 10, bufferLimitBytes: 50 };
    expect(canHold(a, stages[0] as (typeof stages)[number])).toBe(false);
    const got = assignStages(stages, [a, b], 1, new Map([['B', 1]]));
    expect(got?.stageOf).toEqual(
      new Map([
        ['B', 0],
        ['A', 1],
      ]),
    );
    expect(assignStages(stages, [a, { ...b, bufferLimitBytes: 5 }], 1, new Map())).toBeNull();
  });
});

describe('capacity reports as limits', () => {
  it('WebGPU: the smaller of maxBufferSize and maxStorageBufferBindingSize; not reported, WebGPU guaranteed defaults; WASM: none', () => {
    expect(bufferLimitBytes('webgpu', { deviceMemoryGiB: 8, maxBufferBytes: 4 * GIB, maxStorageBindingBytes: 2 * GIB - 4 })).toBe(
      2 * GIB - 4,
    );
    expect(bufferLimitBytes('webgpu', null)).toBe(WEBGPU_DEFAULT_MAX_BINDING_BYTES);
    expect(bufferLimitBytes('wasm', { deviceMemoryGiB: 8, maxBufferBytes: 1, maxStorageBindingBytes: 1 })).toBeNull();
  });

  it('WASM rule: a stage whose weights × 1.5 pass 4 GiB is never a WASM volunteer’s, whatever memory it claims', () => {
    const huge = { deviceMemoryGiB: 64, maxBufferBytes: null, maxStorageBindingBytes: null };
    const stage = { index: 0, needBytes: Math.ceil(3 * GIB * 1.5) };
    expect(canHold({ id: 'w', memoryBytes: offeredBytes('wasm', huge), bufferLimitBytes: bufferLimitBytes('wasm', huge) }, stage)).toBe(
      false,
    );
    expect(canHold({ id: 'g', memoryBytes: offeredBytes('webgpu', huge), bufferLimitBytes: null }, stage)).toBe(true);
    // 2.5 GiB of weights (3.75 GiB with headroom) fits.
    expect(canHold({ id: 'w', memoryBytes: offeredBytes('wasm', huge) }, { index: 0, needBytes: Math.ceil(2.5 * GIB * 1.5) })).toBe(true);
  });
});
