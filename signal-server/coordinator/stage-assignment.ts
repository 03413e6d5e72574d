/**
 * Which volunteer holds which stage of a given partition, by memory: every
 * stage gets `redundancy` volunteers that can hold it, each volunteer where it
 * is preferred (its current stage, or the stage of volunteers of its speed)
 * whenever that still leaves every stage served. A volunteer that can hold a
 * stage can hold any smaller one, so who-can-hold-what is nested, and a count
 * per threshold (Hall's condition) decides whether an assignment exists.
 */

/** Stage bytes are weights only; a stage also needs room for its KV cache, activations and the runtime. */
export const MEMORY_HEADROOM = 1.5;

/** Memory a volunteer must offer to hold a stage of these weight bytes. */
export function needBytes(weightBytes: number): number {
  return Math.ceil(weightBytes * MEMORY_HEADROOM);
}

export interface Stage {
  readonly index: number;
  /** Memory a volunteer needs to hold it (needBytes of its weights). */
  readonly needBytes: number;
}

export interface Holder {
  readonly id: string;
  readonly memoryBytes: number;
}

/** Offers at least `need` among offers sorted ascending (binary search). */
function atLeast(sortedAsc: readonly number[], need: number): number {
  let lo = 0;
  let hi = sortedAsc.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((sortedAsc[mid] as number) >= need) hi = mid;
    else lo = mid + 1;
  }
  return sortedAsc.length - lo;
}

/**
 * Can volunteers of these offers (sorted ascending, less one offer `without`
 * when given) give each demand its count of holders? Demands sorted by need, largest first.
 */
function feasible(
  sortedAsc: readonly number[],
  demands: readonly { need: number; count: number }[],
  without: number | null = null,
): boolean {
  let wanted = 0;
  for (const d of demands) {
    if (d.count === 0) continue;
    wanted += d.count;
    const able = atLeast(sortedAsc, d.need) - (without !== null && without >= d.need ? 1 : 0);
    if (able < wanted) return false;
  }
  return true;
}

/**
 * Assigns volunteers to stages: null when some stage cannot get `r` holders.
 * Volunteers beyond those go to their preferred stage if they can hold it, else
 * to the emptiest stage they can hold; those that can hold none are idle.
 */
export function assignStages(
  stages: readonly Stage[],
  volunteers: readonly Holder[],
  r: number,
  prefer: ReadonlyMap<string, number>,
  /** Further sockets of clients already among `volunteers`: placed only as spares (a client counts once towards r). */
  extras: readonly Holder[] = [],
): { stageOf: Map<string, number>; idle: string[] } | null {
  const order = [...stages].sort((a, b) => b.needBytes - a.needBytes || a.index - b.index);
  const offers = volunteers.map((v) => v.memoryBytes).sort((a, b) => a - b);
  if (
    !feasible(
      offers,
      order.map((s) => ({ need: s.needBytes, count: r })),
    )
  )
    return null;
  const stageOf = new Map<string, number>();
  const taken = new Set<Holder>();
  for (const [k, stage] of order.entries()) {
    // Preferred first, then the smallest offers: the big ones stay for the stages that need them.
    const candidates = volunteers
      .filter((v) => v.memoryBytes >= stage.needBytes)
      .map((v) => ({ v, first: prefer.get(v.id) === stage.index ? 0 : 1 }))
      .sort((a, b) => a.first - b.first || a.v.memoryBytes - b.v.memoryBytes || (a.v.id < b.v.id ? -1 : 1))
      .map((c) => c.v);
    const later = order.slice(k + 1).map((s) => ({ need: s.needBytes, count: r }));
    for (let slot = 0; slot < r; slot++) {
      const rest = [{ need: stage.needBytes, count: r - slot - 1 }, ...later];
      const chosen = candidates.find((c) => !taken.has(c) && feasible(offers, rest, c.memoryBytes));
      // Unreachable once the whole was feasible (the smallest eligible offer always keeps it so), kept as a guard.
      if (chosen === undefined) return null;
      stageOf.set(chosen.id, stage.index);
      taken.add(chosen);
      offers.splice(offers.indexOf(chosen.memoryBytes), 1);
    }
  }
  const pool = volunteers.filter((v) => !taken.has(v));
  const idle: string[] = [];
  const count = new Map<number, number>(stages.map((s) => [s.index, r]));
  for (const v of [...pool, ...extras]) {
    const holdable = stages.filter((s) => v.memoryBytes >= s.needBytes);
    const preferred = holdable.find((s) => s.index === prefer.get(v.id));
    const target =
      preferred ?? [...holdable].sort((a, b) => (count.get(a.index) as number) - (count.get(b.index) as number) || a.index - b.index)[0];
    if (target === undefined) {
      idle.push(v.id);
      continue;
    }
    stageOf.set(v.id, target.index);
    count.set(target.index, (count.get(target.index) as number) + 1);
  }
  return { stageOf, idle };
}
