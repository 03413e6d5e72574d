/**
 * Which volunteer holds which stage of a given partition: every stage gets
 * `redundancy` volunteers that can hold it, each volunteer where it is
 * preferred (its current stage, or the stage of volunteers of its speed)
 * whenever that still leaves every stage served. Holding a stage takes two
 * things: memory for the whole stage, and (on WebGPU) a buffer limit no
 * smaller than the stage's largest single tensor. The two are not nested (a
 * big machine with a small adapter limit may hold a long run of middle layers
 * but not the embedding), so the assignment is a matching, r seats a stage,
 * grown by augmenting paths: exact whatever the order it starts from.
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
  /** Its largest single buffer as its graph holds it (a weight, or a layer's KV cache at full context); absent: not bounded. */
  readonly largestBufferBytes?: number;
}

export interface Holder {
  readonly id: string;
  readonly memoryBytes: number;
  /** The largest single buffer it can hold (a WebGPU adapter's limits); null or absent: only its memory bounds one. */
  readonly bufferLimitBytes?: number | null;
}

/** Can this volunteer hold this stage: its memory and its largest buffer? */
export function canHold(v: Holder, s: Stage): boolean {
  return v.memoryBytes >= s.needBytes && (v.bufferLimitBytes ?? Number.POSITIVE_INFINITY) >= (s.largestBufferBytes ?? 0);
}

/**
 * One more seat for stage `target`: a free volunteer that can hold it, or one
 * that moves there from a stage that takes a free one in its place (and so on:
 * an augmenting path, breadth first). False when no such path exists, which
 * (a matching's property) more seats elsewhere will never change.
 */
function augment(
  target: number,
  stages: readonly Stage[],
  free: Holder[],
  seatOf: Map<Holder, number>,
  membersOf: Map<number, Holder[]>,
): boolean {
  const stageBy = new Map(stages.map((s) => [s.index, s]));
  // parent[y] = [x, v]: v sits at y and can hold x; moving it to x frees a seat at y to refill.
  const parent = new Map<number, [number, Holder]>();
  const queue = [target];
  const seen = new Set([target]);
  for (let head = 0; head < queue.length; head++) {
    const x = queue[head] as number;
    const sx = stageBy.get(x) as Stage;
    const f = free.find((v) => canHold(v, sx));
    if (f !== undefined) {
      free.splice(free.indexOf(f), 1);
      let at = x;
      let incoming = f;
      for (;;) {
        const prev = seatOf.get(incoming);
        if (prev !== undefined)
          membersOf.set(
            prev,
            (membersOf.get(prev) as Holder[]).filter((m) => m !== incoming),
          );
        seatOf.set(incoming, at);
        membersOf.get(at)?.push(incoming);
        const p = parent.get(at);
        if (p === undefined) return true;
        [at, incoming] = p;
      }
    }
    for (const s of stages) {
      if (seen.has(s.index)) continue;
      const mover = (membersOf.get(s.index) ?? []).find((v) => canHold(v, sx));
      if (mover === undefined) continue;
      seen.add(s.index);
      parent.set(s.index, [x, mover]);
      queue.push(s.index);
    }
  }
  return false;
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
  const seatOf = new Map<Holder, number>();
  const membersOf = new Map<number, Holder[]>(stages.map((s) => [s.index, []]));
  // Smallest first: the big ones stay free for the stages that need them (the paths would move them anyway).
  const free = [...volunteers].sort(
    (a, b) =>
      a.memoryBytes - b.memoryBytes ||
      (a.bufferLimitBytes ?? Number.POSITIVE_INFINITY) - (b.bufferLimitBytes ?? Number.POSITIVE_INFINITY) ||
      (a.id < b.id ? -1 : 1),
  );
  // Preferred seats first, while a stage has room.
  for (const v of [...free]) {
    const s = stages.find((x) => x.index === prefer.get(v.id));
    const members = s === undefined ? undefined : membersOf.get(s.index);
    if (s === undefined || members === undefined || members.length >= r || !canHold(v, s)) continue;
    members.push(v);
    seatOf.set(v, s.index);
    free.splice(free.indexOf(v), 1);
  }
  // Then the stages that need most first, each up to r seats.
  const order = [...stages].sort((a, b) => b.needBytes - a.needBytes || a.index - b.index);
  for (const s of order) {
    while ((membersOf.get(s.index) as Holder[]).length < r) if (!augment(s.index, stages, free, seatOf, membersOf)) return null;
  }
  const stageOf = new Map<string, number>();
  for (const [v, s] of seatOf) stageOf.set(v.id, s);
  const idle: string[] = [];
  const count = new Map<number, number>(stages.map((s) => [s.index, r]));
  for (const v of [...volunteers.filter((x) => !seatOf.has(x)), ...extras]) {
    const holdable = stages.filter((s) => canHold(v, s));
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
