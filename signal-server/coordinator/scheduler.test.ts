import { describe, expect, it } from 'vitest';
import { pickStage, planRebalance } from './scheduler.js';

function apply(assignment: Map<string, number>, moves: ReturnType<typeof planRebalance>): number[] {
  for (const m of moves) assignment.set(m.volunteer, m.to);
  const counts = [0, 0, 0];
  for (const s of assignment.values()) counts[s] = (counts[s] as number) + 1;
  return counts;
}

describe('scheduler', () => {
  it('fills the emptiest stage first', () => {
    expect(pickStage([0, 0, 0])).toBe(0);
    expect(pickStage([1, 0, 0])).toBe(1);
    expect(pickStage([3, 3, 2])).toBe(2);
  });

  it('nine newcomers give three replicas to each of three stages', () => {
    const counts = [0, 0, 0];
    for (let i = 0; i < 9; i++) {
      const s = pickStage(counts);
      counts[s] = (counts[s] as number) + 1;
    }
    expect(counts).toEqual([3, 3, 3]);
  });

  it('refills a stage that lost replicas from the fullest one, newest first', () => {
    const a = new Map<string, number>([
      ['v1', 0],
      ['v2', 0],
      ['v3', 0],
      ['v4', 1],
      ['v5', 2],
      ['v6', 2],
      ['v7', 2],
      ['v8', 0],
    ]);
    const moves = planRebalance(a, 3, 3);
    expect(moves).toEqual([{ volunteer: 'v8', from: 0, to: 1 }]);
    // 8 volunteers for 3 × 3: the shortage stays on one stage, a majority of 2 everywhere.
    expect(apply(a, moves)).toEqual([3, 2, 3]);
  });

  it('does not move when that would only shift the shortage', () => {
    const a = new Map<string, number>([
      ['v1', 0],
      ['v2', 1],
      ['v3', 2],
      ['v4', 2],
    ]);
    expect(planRebalance(a, 3, 3)).toEqual([]);
    const lopsided = new Map<string, number>([
      ['v1', 0],
      ['v2', 0],
      ['v3', 0],
      ['v4', 0],
      ['v5', 2],
    ]);
    expect(apply(lopsided, planRebalance(lopsided, 3, 3))).toEqual([2, 2, 1]);
    const balanced = new Map<string, number>([...Array(9).keys()].map((i) => [`v${i}`, i % 3]));
    expect(planRebalance(balanced, 3, 3)).toEqual([]);
  });
});
