import { describe, expect, it } from 'vitest';
import { type ModelSizes, needBytes, type PlannedVolunteer, planPartition, rangeBytes } from './partition-planner.js';
import { assignStages } from './stage-assignment.js';

const MB = 1_000_000;
/** 12 layers of 10 MB, a 20 MB embedding and a 20 MB head. */
const SIZES: ModelSizes = { layerBytes: new Array(12).fill(10 * MB), firstBytes: 20 * MB, lastBytes: 20 * MB };
const BIG = 10_000 * MB;

function vols(n: number, memoryBytes = BIG, msPerLayer: number | null = null, stage = -1, prefix = 'v'): PlannedVolunteer[] {
  return Array.from({ length: n }, (_, i) => ({ id: `${prefix}${i}`, memoryBytes, msPerLayer, stage, client: `${prefix}${i}` }));
}

function ok(p: ReturnType<typeof planPartition>) {
  if (!p.ok) throw new Error(p.reason);
  return p;
}

/** Every stage has at least r volunteers, each of which offers what the stage needs. */
function expectServes(p: ReturnType<typeof ok>, volunteers: readonly PlannedVolunteer[], r: number): void {
  const mem = new Map(volunteers.map((v) => [v.id, v.memoryBytes]));
  const count = p.ranges.map(() => 0);
  for (const [id, s] of p.stageOf) {
    expect(mem.get(id) as number).toBeGreaterThanOrEqual(needBytes(rangeBytes(SIZES, p.ranges[s] as { start: number; end: number })));
    count[s] = (count[s] as number) + 1;
  }
  for (const c of count) expect(c).toBeGreaterThanOrEqual(r);
  expect(p.ranges[0]?.start).toBe(0);
  expect(p.ranges[p.ranges.length - 1]?.end).toBe(12);
}

describe('partition planner', () => {
  it('cuts as many stages as there are full sets of r volunteers, each layer once', () => {
    const v = vols(9);
    const p = ok(planPartition({ sizes: SIZES, volunteers: v, redundancy: 3, current: null }));
    expect(p.ranges.length).toBe(3);
    expect(p.ranges.map((x) => x.end - x.start)).toEqual([4, 4, 4]);
    expectServes(p, v, 3);
    expect(p.idle).toEqual([]);
  });

  it('fits the stages to what volunteers offer: small offers force more, smaller stages', () => {
    // With headroom ×1.5, 70 MB holds 2 layers and the embedding (or the head), or 4 middle layers: 2 + 4 + 4 + 2.
    const v = vols(12, 70 * MB);
    const p = ok(planPartition({ sizes: SIZES, volunteers: v, redundancy: 3, current: null }));
    expectServes(p, v, 3);
    expect(p.ranges.map((x) => x.end - x.start)).toEqual([2, 4, 4, 2]);
    for (const r of p.ranges) expect(needBytes(rangeBytes(SIZES, r))).toBeLessThanOrEqual(70 * MB);
  });

  it('gives faster volunteers more layers (stage times balanced by measured speed)', () => {
    const fast = vols(3, BIG, 1, -1, 'f');
    const slow = vols(3, BIG, 3, -1, 's');
    const p = ok(planPartition({ sizes: SIZES, volunteers: [...slow, ...fast], redundancy: 3, current: null }));
    expect(p.ranges.length).toBe(2);
    // 9 layers at 1 ms against 3 at 3 ms: 9 ms each; an even cut would be 6 × 3 = 18 ms for the slow stage.
    expect(p.ranges.map((x) => x.end - x.start)).toEqual([9, 3]);
    for (const f of fast) expect(p.stageOf.get(f.id)).toBe(0);
    for (const s of slow) expect(p.stageOf.get(s.id)).toBe(1);
    expect(p.bottleneckMs).toBe(9);
  });

  it('keeps the current partition while it still serves, and its volunteers where they are', () => {
    const current = [
      { start: 0, end: 7 },
      { start: 7, end: 12 },
    ];
    const v = [...vols(4, BIG, 1, 0, 'a'), ...vols(3, BIG, 1, 1, 'b')];
    const p = ok(planPartition({ sizes: SIZES, volunteers: v, redundancy: 3, current }));
    expect(p.kept).toBe(true);
    expect(p.ranges).toEqual(current);
    for (const x of v) expect(p.stageOf.get(x.id)).toBe(x.stage);
  });

  it('moves volunteers within the current partition before it changes it', () => {
    const current = [
      { start: 0, end: 6 },
      { start: 6, end: 12 },
    ];
    // Stage 1 lost two of its three: two of stage 0's five move.
    const v = [...vols(5, BIG, 1, 0, 'a'), ...vols(1, BIG, 1, 1, 'b')];
    const p = ok(planPartition({ sizes: SIZES, volunteers: v, redundancy: 3, current }));
    expect(p.kept).toBe(true);
    expect([...p.stageOf.values()].filter((s) => s === 1).length).toBe(3);
    expect(p.stageOf.get('b0')).toBe(1);
  });

  it('changes the partition when the current one no longer serves: fewer, larger stages', () => {
    const current = [
      { start: 0, end: 4 },
      { start: 4, end: 8 },
      { start: 8, end: 12 },
    ];
    const v = [...vols(3, BIG, 1, 0, 'a'), ...vols(2, BIG, 1, 1, 'b'), ...vols(2, BIG, 1, 2, 'c')];
    const p = ok(planPartition({ sizes: SIZES, volunteers: v, redundancy: 3, current }));
    expect(p.kept).toBe(false);
    expect(p.ranges.length).toBe(2);
    expectServes(p, v, 3);
  });

  it('refuses with a clear reason when nothing fits', () => {
    const few = planPartition({ sizes: SIZES, volunteers: vols(2), redundancy: 3, current: null });
    expect(few).toEqual({ ok: false, reason: '2 volunteers: a stage needs 3 (the redundancy)' });
    const small = planPartition({ sizes: SIZES, volunteers: vols(6, 10 * MB), redundancy: 3, current: null });
    expect(small.ok).toBe(false);
    if (!small.ok) expect(small.reason).toMatch(/largest one-layer stage needs 45000000 bytes, which 0 of them offer/);
  });

  it('a liar claiming all the memory in the world cannot shut out honest volunteers of modest offers', () => {
    // Twelve honest volunteers that hold at most 4 layers; one client with three sockets claiming everything.
    const honest = vols(12, 70 * MB, 1, -1, 'h');
    const liar = vols(3, Number.MAX_SAFE_INTEGER, 0.001, -1, 'x').map((v) => ({ ...v, client: 'liar' }));
    const p = ok(planPartition({ sizes: SIZES, volunteers: [...liar, ...honest], redundancy: 3, current: null }));
    expect(p.idle).toEqual([]);
    for (const h of honest) expect(p.stageOf.has(h.id)).toBe(true);
    // Its sockets count once: every stage has 3 honest holders, whatever the liar does.
    const honestPer = p.ranges.map((_, s) => honest.filter((h) => p.stageOf.get(h.id) === s).length);
    for (const n of honestPer) expect(n).toBeGreaterThanOrEqual(3);
    expect(p.ranges.map((x) => x.end - x.start)).toEqual([2, 4, 4, 2]);
  });

  it('sockets of one client count once: three of them are no stage', () => {
    const one = vols(3, BIG, 1, -1, 'x').map((v) => ({ ...v, client: 'same' }));
    const p = planPartition({ sizes: SIZES, volunteers: [...one, ...vols(1)], redundancy: 3, current: null });
    expect(p).toEqual({ ok: false, reason: '2 distinct clients: a stage needs 3 (the redundancy)' });
    // With a third client, one stage of all 12 layers: the same client's sockets are its spares.
    const q = ok(planPartition({ sizes: SIZES, volunteers: [...one, ...vols(2)], redundancy: 3, current: null }));
    expect(q.ranges).toEqual([{ start: 0, end: 12 }]);
  });

  it('is deterministic: the same input gives the same plan', () => {
    const v = [...vols(4, BIG, 2, -1, 'a'), ...vols(5, 90 * MB, 1, -1, 'b')];
    expect(planPartition({ sizes: SIZES, volunteers: v, redundancy: 3, current: null }).ok).toBe(true);
    const a = ok(planPartition({ sizes: SIZES, volunteers: v, redundancy: 3, current: null }));
    const b = ok(planPartition({ sizes: SIZES, volunteers: [...v], redundancy: 3, current: null }));
    expect(b.ranges).toEqual(a.ranges);
    expect([...b.stageOf]).toEqual([...a.stageOf]);
  });
});

describe('stage assignment', () => {
  it('gives the big stage to the volunteers that can hold it, even when they prefer the small one', () => {
    const stages = [
      { index: 0, needBytes: 100 },
      { index: 1, needBytes: 10 },
    ];
    const v = [
      { id: 'big1', memoryBytes: 100 },
      { id: 'big2', memoryBytes: 100 },
      { id: 'small1', memoryBytes: 10 },
      { id: 'small2', memoryBytes: 10 },
    ];
    const a = assignStages(stages, v, 2, new Map([['big1', 1]]));
    expect(a?.stageOf.get('big1')).toBe(0);
    expect(a?.stageOf.get('small1')).toBe(1);
    expect(assignStages(stages, v.slice(1), 2, new Map())).toBeNull();
  });

  it('puts a volunteer that can hold no stage aside as idle', () => {
    const a = assignStages(
      [{ index: 0, needBytes: 50 }],
      [
        { id: 'a', memoryBytes: 50 },
        { id: 'b', memoryBytes: 5 },
      ],
      1,
      new Map(),
    );
    expect(a?.idle).toEqual(['b']);
  });
});
