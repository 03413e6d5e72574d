// Joiners placed by what they can hold (registry.ts with placement.ts and
// scheduler.ts): a stage they can hold, the one with fewest distinct clients;
// none they can hold: not registered, with a message naming the numbers.
import { describe, expect, it } from 'vitest';
import type { ModelSizes } from './partition-planner.js';
import { cannotHold, stagesOf } from './placement.js';
import { Registry } from './registry.js';
import { distinctClients, pickStageFor, planRebalance } from './scheduler.js';

/** 3 layers of 100 bytes (largest buffer 10), an embedding and a head of 300 bytes, each one buffer. */
const SIZES: ModelSizes = {
  layerBytes: [100, 100, 100],
  firstBytes: 300,
  lastBytes: 300,
  layerLargestBytes: [10, 10, 10],
  firstLargestBytes: 300,
  lastLargestBytes: 300,
};
const THREE = [
  { start: 0, end: 1 },
  { start: 1, end: 2 },
  { start: 2, end: 3 },
];

function registry(): Registry {
  const r = new Registry('m', 3, 2);
  r.setFits(stagesOf(SIZES, THREE));
  return r;
}

describe('placement by capacity', () => {
  it('the stages of a partition: memory needed (× 1.5) and largest buffer; unknown sizes or another model: null', () => {
    expect(stagesOf(SIZES, THREE)).toEqual([
      { index: 0, needBytes: 600, largestBufferBytes: 300 },
      { index: 1, needBytes: 150, largestBufferBytes: 10 },
      { index: 2, needBytes: 600, largestBufferBytes: 300 },
    ]);
    expect(stagesOf(undefined, THREE)).toBeNull();
    expect(stagesOf(SIZES, [{ start: 0, end: 2 }])).toBeNull();
  });

  it('a joiner takes the emptiest stage it can hold; one that can hold none is not registered', () => {
    const r = registry();
    // Room for the middle stage only (memory 200 < 600), then a narrow adapter (binds 100 < 300).
    expect(r.join('small', 'wasm', null, 1, 200)).toBe(1);
    expect(r.join('narrow', 'webgpu', null, 2, 10_000, { bufferLimitBytes: 100 })).toBe(1);
    expect(r.join('big', 'wasm', null, 3, 10_000)).toBe(0);
    expect(r.join('big2', 'wasm', null, 4, 10_000)).toBe(2);
    expect(r.join('tiny', 'wasm', null, 5, 100)).toBeNull();
    expect(r.join('pinhole', 'webgpu', null, 6, 10_000, { bufferLimitBytes: 5 })).toBeNull();
    expect(r.get('tiny')).toBeUndefined();
    expect(r.replicasPerStage()).toEqual([1, 2, 1]);
    expect(cannotHold(100, null, r)).toContain('offers 100 bytes, and no stage of this partition fits it (the smallest needs 150 bytes');
    expect(cannotHold(10_000, 5, r)).toContain('binds buffers of at most 5 bytes');
  });

  it("one client's sockets count once on a stage: honest joiners still come to the stage it crowds", () => {
    const r = registry();
    // An attacker's three sockets (one client key) claim just the memory of the middle stage.
    for (const id of ['a1', 'a2', 'a3']) expect(r.join(id, 'wasm', null, 1, 200, { keys: ['key:attacker'] })).toBe(1);
    expect(r.replicasPerStage()).toEqual([0, 3, 0]);
    expect(r.clientsPerStage()).toEqual([0, 1, 0]);
    const honest = ['h0', 'h1', 'h2', 'h3', 'h4'].map((id) => r.join(id, 'wasm', null, 2, 10_000, { keys: [`key:${id}`] }));
    // Counted by sockets (as before) the middle stage would look full and get none of them.
    expect(honest).toEqual([0, 2, 0, 1, 2]);
    expect(r.clientsPerStage()).toEqual([2, 2, 2]);
  });

  it('a client with a socket on a stage sends its next socket elsewhere where it can', () => {
    expect(pickStageFor([1, 1, 1], [0, 1, 2], [true, false, false])).toBe(1);
    expect(pickStageFor([0, 5, 0], [1], [false, true, false])).toBe(1);
    expect(pickStageFor([0, 0], [], [])).toBeNull();
  });

  it('re-balancing moves only volunteers that can hold the stage they move to', () => {
    // Stage 0 lost its replicas; of stage 1's three, only "wide" can hold stage 0.
    const assignment = new Map([
      ['wide', 1],
      ['n1', 1],
      ['n2', 1],
    ]);
    const moves = planRebalance(assignment, 2, 2, (id, stage) => stage === 1 || id === 'wide');
    expect(moves).toEqual([{ volunteer: 'wide', from: 1, to: 0 }]);
    expect(planRebalance(assignment, 2, 2, (_id, stage) => stage === 1)).toEqual([]);
  });

  it('a departure re-balances within what each can hold (the registry): a small one is never sent to a big stage', () => {
    const r = registry();
    r.join('big0', 'wasm', null, 1, 10_000);
    r.join('s1', 'wasm', null, 2, 200);
    r.join('big2', 'wasm', null, 3, 10_000);
    r.join('s2', 'wasm', null, 4, 200);
    r.join('s3', 'wasm', null, 5, 200);
    expect(r.replicasPerStage()).toEqual([1, 3, 1]);
    // big2 leaves: stage 2 is empty, and only stage 1 has more than enough, all of them too small for stage 2
    // (re-balancing blind to capacity sent s3 there: it would fail to load, and stage 1 would be short too).
    expect(r.leave('big2')).toEqual([]);
    expect(r.get('s3')?.stage).toBe(1);
    expect(r.clientsPerStage()).toEqual([1, 3, 0]);
    // A big one that joins goes where it is needed: the empty stage 2.
    expect(r.join('big4', 'wasm', null, 6, 10_000)).toBe(2);
    expect(r.clientsPerStage()).toEqual([1, 3, 1]);
  });

  it('re-balancing counts clients: a stage held by sockets of one client takes a volunteer of another, never one of that client', () => {
    // Stage 0: two sockets of client A (one client); stage 1: A's third socket and two honest clients.
    const assignment = new Map([
      ['a1', 0],
      ['a2', 0],
      ['h1', 1],
      ['h2', 1],
      ['a3', 1],
    ]);
    const keys: Record<string, string[]> = { a1: ['key:A'], a2: ['key:A'], a3: ['key:A'], h1: ['key:H1'], h2: ['key:H2'] };
    const keysOf = (id: string) => keys[id] ?? [];
    expect(distinctClients(['a1', 'a2', 'a3', 'h1'], keysOf)).toBe(2);
    // Not a3 (its client is on stage 0 already, it adds nothing there): the most recent honest one.
    expect(planRebalance(assignment, 2, 2, () => true, keysOf)).toEqual([{ volunteer: 'h2', from: 1, to: 0 }]);
    // Counted by sockets (no keys: each its own client), stage 0 looks full and nothing moves.
    expect(planRebalance(assignment, 2, 2)).toEqual([]);
  });

  it("a re-partition's left-out volunteer goes where the plan has fewest clients, not fewest sockets", () => {
    const r = new Registry('m', 2, 2);
    const now = 0;
    r.join('a1', 'wasm', null, now, undefined, { keys: ['a'] });
    r.join('a2', 'wasm', null, now, undefined, { keys: ['a'] });
    r.join('c', 'wasm', null, now, undefined, { keys: ['c'] });
    r.join('b', 'wasm', null, now, undefined, { keys: ['b'] });
    // The plan puts one client's two sockets on stage 0 and c on stage 1; b is left out.
    const plan = new Map([
      ['a1', 0],
      ['a2', 0],
      ['c', 1],
    ]);
    r.assign(2, plan, true);
    // By sockets stage 0 (2) looks fuller than stage 1 (1); by clients they tie (1 and 1), and the lower index wins.
    expect(r.get('b')?.stage).toBe(0);
  });
});
