/**
 * Route choice: which ready replicas of each stage take part in a session.
 * Pure: the coordinator passes the candidates and a random source.
 *
 * Rules (the trust model in ../../README.md):
 * - exactly r replicas per stage, or no route;
 * - one client (any shared identity key: its client key, its network address)
 *   holds at most one replica of a stage;
 * - where a stage has enough established replicas, newcomers fill at most the
 *   minority's seats (so they earn a record without ever holding a majority);
 * - otherwise random, weighted by reputation, never by age.
 */
import { majority } from '../../shared/vote/quorum.js';

export interface Candidate {
  readonly id: string;
  /** Identity keys (client key, network address): two candidates sharing one never serve one stage together. */
  readonly keys: readonly string[];
  /** Has an established record. */
  readonly established: boolean;
  /** Relative chance of being chosen (reputation, lowered by no-shows); > 0. */
  readonly weight: number;
}

export type RouteChoice =
  | { readonly ok: true; readonly route: string[][] }
  | {
      readonly ok: false;
      /** The first stage that cannot field r replicas of distinct clients. */
      readonly stage: number;
      /** How many it can field. */
      readonly have: number;
    };

/** Picks `count` of `pool` at random in proportion to weight, skipping any that shares a key with `taken`. */
function drawDistinct(pool: readonly Candidate[], count: number, taken: Set<string>, random: () => number): Candidate[] {
  const left = [...pool];
  const out: Candidate[] = [];
  while (out.length < count) {
    const open = left.filter((c) => !c.keys.some((k) => taken.has(k)));
    if (open.length === 0) break;
    const total = open.reduce((a, c) => a + Math.max(1e-6, c.weight), 0);
    let at = random() * total;
    let pick = open[open.length - 1] as Candidate;
    for (const c of open) {
      at -= Math.max(1e-6, c.weight);
      if (at <= 0) {
        pick = c;
        break;
      }
    }
    out.push(pick);
    for (const k of pick.keys) taken.add(k);
    left.splice(left.indexOf(pick), 1);
  }
  return out;
}

/**
 * Draws made (for each number of newcomer seats) before a stage is taken to lack r distinct clients. One draw
 * can miss them: a socket that shares its client key with one candidate and its address with another, drawn
 * first, leaves no third seat (358 of 1 000 single draws, before, on the case route.test.ts pins); each further
 * draw is a fresh chance.
 */
const DRAWS = 16;

/** r replicas of one stage from `candidates`, or fewer when the stage cannot field r distinct clients. */
export function chooseReplicas(
  candidates: readonly Candidate[],
  r: number,
  random: () => number,
  alongside: readonly Candidate[] = [],
): Candidate[] {
  const need = r - alongside.length;
  if (need <= 0) return [];
  const established = candidates.filter((c) => c.established);
  const newcomers = candidates.filter((c) => !c.established);
  const haveEstablished = alongside.filter((c) => c.established).length;
  // Seats newcomers may take: the minority's, when established replicas can fill the majority.
  const minority = r - majority(r);
  const newcomerSeats =
    haveEstablished + established.length >= majority(r) ? minority - alongside.filter((c) => !c.established).length : need;
  let best: Candidate[] = [];
  // At most that many: a newcomer that shares a key with established replicas must not keep the stage from them.
  for (let seats = Math.max(0, Math.min(newcomerSeats, need)); seats >= 0; seats--) {
    for (let i = 0; i < DRAWS; i++) {
      const chosen = draw(established, newcomers, seats, need, alongside, random);
      if (chosen.length >= need) return chosen;
      if (chosen.length > best.length) best = chosen;
    }
  }
  return best;
}

/** One draw: `seats` newcomers, established ones for the seats left, newcomers for what they cannot fill. */
function draw(
  established: readonly Candidate[],
  newcomers: readonly Candidate[],
  seats: number,
  need: number,
  alongside: readonly Candidate[],
  random: () => number,
): Candidate[] {
  const taken = new Set(alongside.flatMap((c) => c.keys));
  const fromNew = drawDistinct(newcomers, seats, new Set(taken), random);
  for (const c of fromNew) for (const k of c.keys) taken.add(k);
  const fromEst = drawDistinct(established, need - fromNew.length, taken, random);
  const chosen = [...fromEst, ...fromNew];
  if (chosen.length < need) {
    const more = drawDistinct(
      newcomers.filter((c) => !chosen.includes(c)),
      need - chosen.length,
      new Set(chosen.flatMap((c) => c.keys).concat([...taken])),
      random,
    );
    chosen.push(...more);
  }
  return chosen;
}

/** A route of exactly r replicas per stage, or the first stage that lacks them. */
export function chooseRoute(stages: readonly (readonly Candidate[])[], r: number, random: () => number): RouteChoice {
  const route: string[][] = [];
  for (const [stage, candidates] of stages.entries()) {
    const chosen = chooseReplicas(candidates, r, random);
    if (chosen.length < r) return { ok: false, stage, have: chosen.length };
    route.push(chosen.map((c) => c.id));
  }
  return { ok: true, route };
}
