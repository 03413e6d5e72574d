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

/** Can volunteers of these offers give each stage of these needs `r` holders? */
function feasible(offers: readonly number[], demands: readonly { need: number; count: number }[]): boolean {
  const sorted = demands.filter((d) => d.count > 0).sort((a, b) => b.need - a.need);
  let wanted = 0;
  for (const d of sorted) {
    wanted += d.count;
    let able = 0;
    for (const o of offers) if (o >= d.need) able += 1;
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
  const offers = (pool: readonly Holder[]) => pool.map((v) => v.memoryBytes);
  if (
    !feasible(
      offers(volunteers),
      stages.map((s) => ({ need: s.needBytes, count: r })),
    )
  )
    return null;
  const stageOf = new Map<string, number>();
  let pool = [...volunteers];
  const order = [...stages].sort((a, b) => b.needBytes - a.needBytes || a.index - b.index);
  for (const [k, stage] of order.entries()) {
    for (let slot = 0; slot < r; slot++) {
      const rest = [{ need: stage.needBytes, count: r - slot - 1 }, ...order.slice(k + 1).map((s) => ({ need: s.needBytes, count: r }))];
      const candidates = pool
        .filter((v) => v.memoryBytes >= stage.needBytes)
        .sort(
          (a, b) =>
            Number(prefer.get(b.id) === stage.index) - Number(prefer.get(a.id) === stage.index) ||
            a.memoryBytes - b.memoryBytes ||
            (a.id < b.id ? -1 : 1),
        );
      const chosen = candidates.find((c) => feasible(offers(pool.filter((v) => v !== c)), rest));
      // Unreachable once the whole was feasible (the smallest eligible offer always keeps it so), kept as a guard.
      if (chosen === undefined) return null;
      stageOf.set(chosen.id, stage.index);
      pool = pool.filter((v) => v !== chosen);
    }
  }
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
