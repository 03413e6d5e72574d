// A cluster switching partitions (registry.ts, Volunteer.elsewhere): another process's volunteers whose stage is of
// another partition than this process serves hold no seat and route nothing here, and while there are such this
// process re-balances nothing. Balanced against half the cluster, it moved its volunteers off the stages the
// leader's plan gave them (and back once the other process switched).
import { describe, expect, it } from 'vitest';
import { Registry } from './registry.js';

/** 2 stages × r = 2; this process's three volunteers on stage 0, as the leader's plan put them. */
function planned(): Registry {
  const r = new Registry('m', 2, 2);
  for (const id of ['a1', 'a2', 'a3']) r.join(id, 'wasm', null, 1, undefined, { keys: [`key:${id}`] });
  r.assign(
    2,
    new Map([
      ['a1', 0],
      ['a2', 0],
      ['a3', 0],
      ['b1', 1],
      ['b2', 1],
    ]),
    true,
  );
  return r;
}

/**
 * The other process's two volunteers, as it publishes them: on the old partition (3 stages, both on its stage 2)
 * until it switches, then on stage 1 of this one, where the plan put them.
 */
function mirror(r: Registry, elsewhere: boolean): void {
  const stage = elsewhere ? 2 : 1;
  for (const id of ['b1', 'b2'])
    r.mirror({ id, backend: 'wasm', adapter: null, stage, ready: true, stepMs: 1, joinedAt: 0, keys: [`key:${id}`], elsewhere });
}

describe('volunteers of a process on another partition', () => {
  it('hold no seat, route nothing, and hold off re-balancing until their process serves this partition too', () => {
    const r = planned();
    mirror(r, true);
    expect(r.replicasPerStage()).toEqual([3, 0]);
    expect(r.clientsPerStage()).toEqual([3, 0]);
    expect(r.readyReplicas(1)).toEqual([]);
    // Stage 1 looks empty here, but the plan put the other process's two there: nobody moves.
    expect(r.rebalanceNow()).toEqual([]);
    expect(['a1', 'a2', 'a3'].map((id) => r.get(id)?.stage)).toEqual([0, 0, 0]);
    // Their process switched: they count, and the plan's placement stands.
    mirror(r, false);
    expect(r.clientsPerStage()).toEqual([3, 2]);
    expect(r.readyReplicas(1).map((v) => v.id)).toEqual(['b1', 'b2']);
    expect(r.rebalanceNow()).toEqual([]);
  });

  it('once none is on another partition, a short stage is re-balanced as before', () => {
    const r = planned();
    mirror(r, true);
    expect(r.rebalanceNow()).toEqual([]);
    // Dropped (their process never switched: ELSEWHERE_LIMIT_MS), this process balances its own.
    r.leave('b1');
    expect(r.leave('b2')).toHaveLength(1);
    expect(r.replicasPerStage()).toEqual([2, 1]);
  });
});
