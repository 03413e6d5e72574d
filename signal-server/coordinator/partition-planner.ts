/**
 * Which layers each stage holds, and which volunteer holds which stage: pure
 * decisions from what volunteers offer (memory, reported and clamped) and how
 * fast they are (measured here at their challenge, never self-reported).
 * Every stage needs `redundancy` volunteers that can hold it; beyond that the
 * plan leaves as few volunteers idle as it can (so that nobody, by claiming
 * more memory than it has, can steer a partition that shuts honest ones out),
 * keeps the current partition when it still serves (moving is not free), and
 * balances stage times, Petals-style, giving faster volunteers more layers.
 */
import { resolvePartition } from '../../shared/model/partition.js';
import type { LayerRange } from '../../shared/model/stage-graph.js';
import { majority } from '../../shared/vote/quorum.js';
import { assignStages, needBytes, type Stage } from './stage-assignment.js';

export { MEMORY_HEADROOM, needBytes } from './stage-assignment.js';

/** What each part of the model weighs, at the precision served. */
export interface ModelSizes {
  /** Bytes of each decoder layer's weights, in order. */
  readonly layerBytes: readonly number[];
  /** Bytes only the first stage holds (the token embedding). */
  readonly firstBytes: number;
  /** Bytes only the last stage holds (the final norm and the head). */
  readonly lastBytes: number;
  /**
   * The largest single buffer of each layer as the stage graph holds it (a
   * weight, or the layer's KV cache at full context), and of the first and
   * last stages' own parts (embedding; head): what a WebGPU adapter must bind
   * (held-buffers.ts). Absent: no buffer limit is checked.
   */
  readonly layerLargestBytes?: readonly number[];
  readonly firstLargestBytes?: number;
  readonly lastLargestBytes?: number;
}

export interface PlannedVolunteer {
  readonly id: string;
  /** Bytes it offers for a stage (clamped at the protocol boundary). */
  readonly memoryBytes: number;
  /** The largest single buffer it can hold (capacity.ts bufferLimitBytes); null or absent: no limit but its memory. */
  readonly bufferLimitBytes?: number | null;
  /** Measured ms per layer of one decode step; null before its first challenge. */
  readonly msPerLayer: number | null;
  /** Its stage in the current partition; -1 when it holds none. */
  readonly stage: number;
  /** Who it is (its identity key): several sockets of one client count once towards a stage's r. */
  readonly client: string;
}

export interface PlanInput {
  readonly sizes: ModelSizes;
  readonly volunteers: readonly PlannedVolunteer[];
  readonly redundancy: number;
  /** The partition served now; null when there is none yet. */
  readonly current: readonly LayerRange[] | null;
}

export type Plan =
  | {
      readonly ok: true;
      readonly ranges: LayerRange[];
      /** Volunteer id → stage of `ranges`. */
      readonly stageOf: Map<string, number>;
      /** Volunteers that can hold no stage of the plan. */
      readonly idle: string[];
      /** The current partition is kept (only volunteers may move). */
      readonly kept: boolean;
      /** Estimated ms per decode step of the slowest stage (its majority-th fastest replica). */
      readonly bottleneckMs: number;
    }
  | { readonly ok: false; readonly reason: string };

/** Bytes a volunteer must hold for layers [start, end) of a model with these sizes. */
export function rangeBytes(sizes: ModelSizes, r: LayerRange): number {
  let b = 0;
  for (let i = r.start; i < r.end; i++) b += sizes.layerBytes[i] as number;
  if (r.start === 0) b += sizes.firstBytes;
  if (r.end === sizes.layerBytes.length) b += sizes.lastBytes;
  return b;
}

/** The largest single buffer a volunteer must hold for layers [start, end): 0 when the sizes do not say. */
export function rangeLargestBuffer(sizes: ModelSizes, r: LayerRange): number {
  let b = 0;
  for (let i = r.start; i < r.end; i++) b = Math.max(b, sizes.layerLargestBytes?.[i] ?? 0);
  if (r.start === 0) b = Math.max(b, sizes.firstLargestBytes ?? 0);
  if (r.end === sizes.layerBytes.length) b = Math.max(b, sizes.lastLargestBytes ?? 0);
  return b;
}

/** A stage of these layers as the assignment sees it: the memory it needs and its largest buffer. */
export function stageOfRange(sizes: ModelSizes, index: number, range: LayerRange): Stage {
  return { index, needBytes: needBytes(rangeBytes(sizes, range)), largestBufferBytes: rangeLargestBuffer(sizes, range) };
}

const NO_LIMIT = Number.POSITIVE_INFINITY;

/** Each volunteer's ms per layer, those not yet measured taking the median of those that were (1 when none was). */
function speeds(volunteers: readonly PlannedVolunteer[]): Map<string, number> {
  const known = volunteers
    .map((v) => v.msPerLayer)
    .filter((x): x is number => x !== null && Number.isFinite(x) && x > 0)
    .sort((a, b) => a - b);
  const fill = known.length === 0 ? 1 : (known[Math.floor(known.length / 2)] as number);
  return new Map(
    volunteers.map((v) => [v.id, v.msPerLayer !== null && Number.isFinite(v.msPerLayer) && v.msPerLayer > 0 ? v.msPerLayer : fill]),
  );
}

/** The ms per layer a stage steps at: that of its majority-th fastest replica (a step waits for a majority). */
function stageSpeed(msPerLayer: readonly number[], redundancy: number): number {
  const sorted = [...msPerLayer].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length, majority(redundancy)) - 1] ?? Number.POSITIVE_INFINITY;
}

/**
 * Layer ranges for `groups` (fastest first) where each group's stage costs
 * about the same time: the least time T for which, stage by stage, each takes
 * as many layers as fit its T and its memory. Null when memory rules it out.
 */
function balancedRanges(
  sizes: ModelSizes,
  groups: readonly { msPerLayer: number; memoryBytes: number; bufferLimitBytes: number }[],
): LayerRange[] | null {
  const L = sizes.layerBytes.length;
  const S = groups.length;
  const cut = (T: number): LayerRange[] | null => {
    const out: LayerRange[] = [];
    let pos = 0;
    for (let s = 0; s < S; s++) {
      const g = groups[s] as { msPerLayer: number; memoryBytes: number; bufferLimitBytes: number };
      const most = L - pos - (S - 1 - s);
      let take = 0;
      for (let k = 1; k <= most; k++) {
        const range = { start: pos, end: pos + k };
        if (
          k * g.msPerLayer > T * (1 + 1e-9) ||
          needBytes(rangeBytes(sizes, range)) > g.memoryBytes ||
          rangeLargestBuffer(sizes, range) > g.bufferLimitBytes
        )
          break;
        take = k;
      }
      if (take === 0) return null;
      out.push({ start: pos, end: pos + take });
      pos += take;
    }
    return pos === L ? out : null;
  };
  const times = [...new Set(groups.flatMap((g) => Array.from({ length: L }, (_, k) => (k + 1) * g.msPerLayer)))].sort((a, b) => a - b);
  if (cut(times[times.length - 1] as number) === null) return null;
  let lo = 0;
  let hi = times.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cut(times[mid] as number) !== null) hi = mid;
    else lo = mid + 1;
  }
  return cut(times[lo] as number);
}

/** Chooses the partition and the volunteers of each stage, or says why none serves. */
export function planPartition(input: PlanInput): Plan {
  const { sizes, volunteers, redundancy: r } = input;
  const L = sizes.layerBytes.length;
  if (!Number.isInteger(r) || r < 1) return { ok: false, reason: `redundancy must be a positive integer, got ${r}` };
  if (L === 0) return { ok: false, reason: 'the model has no layers' };
  if (volunteers.length < r) return { ok: false, reason: `${volunteers.length} volunteers: a stage needs ${r} (the redundancy)` };
  // One socket per client plans the stages; a client's other sockets are spares.
  const seen = new Set<string>();
  const reps: PlannedVolunteer[] = [];
  const extras: PlannedVolunteer[] = [];
  for (const v of volunteers) {
    if (seen.has(v.client)) extras.push(v);
    else reps.push(v);
    seen.add(v.client);
  }
  if (reps.length < r) return { ok: false, reason: `${reps.length} distinct clients: a stage needs ${r} (the redundancy)` };
  const speed = speeds(volunteers);
  const byId = new Map(volunteers.map((v) => [v.id, v]));

  type Candidate = Extract<Plan, { ok: true }>;
  const evaluate = (ranges: LayerRange[], prefer: ReadonlyMap<string, number>, kept: boolean): Candidate | null => {
    const stages: Stage[] = ranges.map((range, index) => stageOfRange(sizes, index, range));
    const a = assignStages(stages, reps, r, prefer, extras);
    if (a === null) return null;
    const members: number[][] = ranges.map(() => []);
    for (const [id, s] of a.stageOf) members[s]?.push(speed.get(id) as number);
    const bottleneckMs = Math.max(...ranges.map((range, s) => (range.end - range.start) * stageSpeed(members[s] as number[], r)));
    return { ok: true, ranges, stageOf: a.stageOf, idle: a.idle, kept, bottleneckMs };
  };

  const candidates: Candidate[] = [];
  if (input.current !== null && input.current.length > 0 && input.current[input.current.length - 1]?.end === L) {
    const prefer = new Map(volunteers.filter((v) => v.stage >= 0 && v.stage < (input.current?.length ?? 0)).map((v) => [v.id, v.stage]));
    const kept = evaluate(
      input.current.map((x) => ({ start: x.start, end: x.end })),
      prefer,
      true,
    );
    if (kept !== null) candidates.push(kept);
  }
  const fastestFirst = [...reps].sort((a, b) => (speed.get(a.id) as number) - (speed.get(b.id) as number) || (a.id < b.id ? -1 : 1));
  for (let S = Math.min(L, Math.floor(reps.length / r)); S >= 1; S--) {
    // Volunteers of like speed together, fastest first: each group is a stage's natural replicas.
    const groups: PlannedVolunteer[][] = Array.from({ length: S }, () => []);
    for (const [i, v] of fastestFirst.entries()) groups[Math.floor((i * S) / fastestFirst.length)]?.push(v);
    const prefer = new Map<string, number>();
    for (const [s, g] of groups.entries()) for (const v of g) prefer.set(v.id, s);
    const shape = groups.map((g) => ({
      msPerLayer: stageSpeed(
        g.map((v) => speed.get(v.id) as number),
        r,
      ),
      // The r-th largest offer of the group: r of its volunteers can hold what fits it.
      memoryBytes: [...g.map((v) => byId.get(v.id)?.memoryBytes ?? 0)].sort((a, b) => b - a)[r - 1] ?? 0,
      // Likewise the r-th largest buffer limit (a heuristic for the cut: the assignment checks both for real).
      bufferLimitBytes: [...g.map((v) => byId.get(v.id)?.bufferLimitBytes ?? NO_LIMIT)].sort((a, b) => b - a)[r - 1] ?? 0,
    }));
    for (const ranges of [balancedRanges(sizes, shape), resolvePartition(L, { stages: S })]) {
      if (ranges === null) continue;
      const c = evaluate(ranges, prefer, false);
      if (c !== null) candidates.push(c);
    }
  }
  if (candidates.length === 0) {
    const one = sizes.layerBytes.map((_, i) => stageOfRange(sizes, i, { start: i, end: i + 1 }));
    const biggest = Math.max(...one.map((s) => s.needBytes));
    const able = reps.filter((v) => v.memoryBytes >= biggest).length;
    const buffer = Math.max(...one.map((s) => s.largestBufferBytes ?? 0));
    const bind = reps.filter((v) => (v.bufferLimitBytes ?? NO_LIMIT) >= buffer).length;
    return {
      ok: false,
      reason: `no partition gives every stage ${r} distinct clients that can hold it: ${reps.length} clients, and the largest one-layer stage needs ${biggest} bytes, which ${able} of them offer, and a buffer of ${buffer} bytes, which ${bind} of them can bind`,
    };
  }
  // Fewest idle first; then the current partition; then the fastest slowest stage; then fewer hops.
  candidates.sort(
    (a, b) =>
      a.idle.length - b.idle.length ||
      Number(b.kept) - Number(a.kept) ||
      a.bottleneckMs - b.bottleneckMs ||
      a.ranges.length - b.ranges.length,
  );
  return candidates[0] as Candidate;
}
