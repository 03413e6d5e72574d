/**
 * Which stage each volunteer holds: pure decisions, side effects elsewhere.
 * Goal: every stage reaches `redundancy` replicas; beyond that, replicas are
 * spread evenly so the next stage to lose one still has a majority.
 */

/** The stage a newcomer should take: the one with the fewest replicas (lowest index on ties). */
export function pickStage(replicasPerStage: readonly number[]): number {
  if (replicasPerStage.length === 0) throw new RangeError('a model has at least one stage');
  let best = 0;
  for (let s = 1; s < replicasPerStage.length; s++) {
    if ((replicasPerStage[s] as number) < (replicasPerStage[best] as number)) best = s;
  }
  return best;
}

export interface Move {
  readonly volunteer: string;
  readonly from: number;
  readonly to: number;
}

/**
 * Moves that bring every stage to `redundancy` replicas where the swarm has
 * enough volunteers: a stage short of replicas takes one from the stage with
 * the most, while that narrows the gap between them. The most recently joined volunteer of a stage moves first,
 * so long-standing replicas keep their warm caches.
 *
 * @param assignment volunteer id → stage, in joining order
 */
export function planRebalance(assignment: ReadonlyMap<string, number>, numStages: number, redundancy: number): Move[] {
  const members: string[][] = Array.from({ length: numStages }, () => []);
  for (const [id, stage] of assignment) {
    if (stage >= 0 && stage < numStages) members[stage]?.push(id);
  }
  const moves: Move[] = [];
  for (let guard = 0; guard < assignment.size; guard++) {
    const counts = members.map((m) => m.length);
    const taker = pickStage(counts);
    let giver = 0;
    for (let s = 1; s < numStages; s++) if ((counts[s] as number) > (counts[giver] as number)) giver = s;
    const need = counts[taker] as number;
    const have = counts[giver] as number;
    // Stop when the taker is not short, or a move would not narrow the gap.
    if (need >= redundancy || have <= need + 1) break;
    const volunteer = members[giver]?.pop() as string;
    members[taker]?.push(volunteer);
    moves.push({ volunteer, from: giver, to: taker });
  }
  return moves;
}
