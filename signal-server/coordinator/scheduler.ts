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

/**
 * The stage a newcomer should take among those it can hold (`holdable`, by
 * its reported capacity): one its client holds none of yet, then the one with
 * the fewest distinct clients, lowest index on ties; null when it can hold none.
 * Counting clients, not sockets: one client's sockets crowding a stage (say,
 * by claiming just the memory for it) count once there, so honest newcomers
 * still come to it until it has r distinct clients.
 */
export function pickStageFor(
  clientsPerStage: readonly number[],
  holdable: readonly number[],
  ownClientOn: readonly boolean[],
): number | null {
  let best: number | null = null;
  const rank = (s: number): [number, number] => [ownClientOn[s] === true ? 1 : 0, clientsPerStage[s] ?? 0];
  for (const s of holdable) {
    if (s < 0 || s >= clientsPerStage.length) continue;
    if (best === null) {
      best = s;
      continue;
    }
    const [a0, a1] = rank(s);
    const [b0, b1] = rank(best);
    if (a0 < b0 || (a0 === b0 && (a1 < b1 || (a1 === b1 && s < best)))) best = s;
  }
  return best;
}

export interface Move {
  readonly volunteer: string;
  readonly from: number;
  readonly to: number;
}

/**
 * Distinct clients among `ids` (volunteers sharing any identity key count
 * once; one without keys is a client of its own), counted as the registry
 * counts them: one whose keys are all new to the stage adds a client.
 */
export function distinctClients(ids: readonly string[], keysOf: (id: string) => readonly string[]): number {
  const seen = new Set<string>();
  let n = 0;
  for (const id of ids) {
    const keys = keysOf(id);
    const own = keys.length === 0 ? [`id:${id}`] : keys;
    if (!own.some((k) => seen.has(k))) n += 1;
    for (const k of own) seen.add(k);
  }
  return n;
}

/**
 * Moves that bring every stage to `redundancy` distinct clients where the
 * swarm has enough of them: a stage short of clients takes a volunteer of a
 * client it does not have yet from the stage with the most clients, while
 * that narrows the gap between them. Clients, not sockets: one client's
 * sockets left alone on a stage would otherwise make it look full, and no
 * honest spare would come to it (a route takes one replica a client). The most
 * recently joined volunteer of a stage moves first, so long-standing replicas
 * keep their warm caches.
 *
 * @param assignment volunteer id → stage, in joining order
 */
export function planRebalance(
  assignment: ReadonlyMap<string, number>,
  numStages: number,
  redundancy: number,
  /** Can this volunteer hold that stage (its reported capacity)? Absent: any can hold any. */
  canHold: (volunteer: string, stage: number) => boolean = () => true,
  /** A volunteer's identity keys (client key, address); absent: every volunteer is a client of its own. */
  keysOf: (volunteer: string) => readonly string[] = () => [],
): Move[] {
  const members: string[][] = Array.from({ length: numStages }, () => []);
  for (const [id, stage] of assignment) {
    if (stage >= 0 && stage < numStages) members[stage]?.push(id);
  }
  const own = (id: string): readonly string[] => {
    const keys = keysOf(id);
    return keys.length === 0 ? [`id:${id}`] : keys;
  };
  const moves: Move[] = [];
  for (let guard = 0; guard < assignment.size; guard++) {
    const counts = members.map((m) => distinctClients(m, keysOf));
    // The emptiest short stage that some volunteer can come to: from the fullest stage where that narrows the gap.
    const takers = counts
      .map((c, s) => [c, s] as const)
      .filter(([c]) => c < redundancy)
      .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let move: Move | null = null;
    for (const [need, taker] of takers) {
      const there = new Set((members[taker] as string[]).flatMap(own));
      const givers = counts
        .map((c, s) => [c, s] as const)
        .filter(([c, s]) => s !== taker && c > need)
        .sort((a, b) => b[0] - a[0] || a[1] - b[1]);
      for (const [, giver] of givers) {
        const from = members[giver] as string[];
        const c = counts[giver] as number;
        const sockets = new Map<string, number>();
        for (const id of from) for (const k of own(id)) sockets.set(k, (sockets.get(k) ?? 0) + 1);
        // The most recently joined that can hold the taker's stage, of a client new there, and whose going leaves
        // the giver more clients than the taker will have (a client with another socket there leaves it as many).
        const volunteer = [...from].reverse().find((id) => {
          const keys = own(id);
          if (keys.some((k) => there.has(k))) return false;
          const left = keys.some((k) => (sockets.get(k) as number) > 1) ? c : c - 1;
          return left > need && canHold(id, taker);
        });
        if (volunteer !== undefined) {
          move = { volunteer, from: giver, to: taker };
          break;
        }
      }
      if (move !== null) break;
    }
    if (move === null) break;
    const from = members[move.from] as string[];
    from.splice(from.lastIndexOf(move.volunteer), 1);
    members[move.to]?.push(move.volunteer);
    moves.push(move);
  }
  return moves;
}
