/**
 * What a live re-partition needs besides the planner: the server's seam that
 * builds (or finds) a partition's stage files and serves them, the error that
 * replays a session on the new partition, and the planner's view of the
 * coordinator's volunteers. The coordinator carries the switch out.
 */
import type { StageManifest } from '../../shared/model/manifest.js';
import type { LayerRange } from '../../shared/model/stage-graph.js';
import type { ChallengeOracle } from './challenge.js';
import type { ReleasableExecutor } from './fallback.js';
import { GenerationError } from './generation.js';
import type { ModelSizes, PlannedVolunteer } from './partition-planner.js';
import type { Volunteer } from './registry.js';

/** One partition as the server serves it: its key, manifest, where volunteers fetch it, and the server's runners of its stages. */
export interface ServedPartition {
  /** The partition's key, e.g. "r0-3_3-6" (model-folder's stageDirName). */
  readonly key: string;
  readonly manifest: StageManifest;
  /** Where manifest.json and tensors.json of this partition are served. */
  readonly baseUrl: string;
  /** Challenges from the server's own runner of these stage files. */
  readonly oracle: ChallengeOracle;
  /** The fallback's runner of these stage files (made on first use; released once its partition is replaced and idle). */
  readonly executor: () => Promise<ReleasableExecutor>;
}

/** The server's side of a re-partition: the model's weights per part, and stage files for any layer ranges. */
export interface PartitionBuilder {
  readonly sizes: ModelSizes;
  /** Builds (or finds in the stage cache) and serves the stage files of these ranges. */
  build(ranges: readonly LayerRange[]): Promise<ServedPartition>;
  /** The coordinator serves this partition from now (the builder keeps its files while it does). */
  switched?(p: ServedPartition): void;
  /** The server is going away: every partition's oracle gives its runner back. */
  release?(): Promise<void>;
}

/**
 * How long a partition serves before the swarm may switch back to the
 * configured one: every switch re-challenges every volunteer and replays the
 * requests in flight, so a client that joins and leaves in a loop must not
 * buy one switch per loop (its departure forces a switch only where the
 * switch back made it needed).
 */
export const REPARTITION_HOLD_MS = 30_000;

/**
 * Replays of one request in a row with no token (nor scored prompt position) accepted between them, at most: a swarm
 * that keeps changing before the request moves on fails it instead. Counted in a row, not in all: before, a client
 * that left and came back made two switches a hold (the shrink its departure forces waits for none), and every
 * request running longer than about two holds failed at its fourth replay, its tokens lost (a red-team find).
 */
export const MAX_REPLAYS = 3;

/**
 * Ends a session whose partition was replaced: the coordinator catches it and
 * replays the request on the new partition (the prompt and the tokens so far
 * prefilled), so the requester sees the same tokens and no error. Should it
 * escape, it reads as no route.
 */
export class ReplayOnNewPartition extends GenerationError {
  constructor(readonly partition: string) {
    super('ERR_NO_ROUTE', `the model was re-partitioned (${partition}) while the request ran, and it could not be replayed`);
  }
}

/**
 * Why a request is being replayed, for the log line that says so. A
 * ReplayOnNewPartition's own message is what a client reads should it escape
 * ("could not be replayed"); where it is replayed, that read as a contradiction.
 */
export function replayReason(e: unknown): string {
  if (e instanceof ReplayOnNewPartition) return `the model was re-partitioned (${e.partition}) while it ran`;
  return e instanceof Error ? e.message : String(e);
}

/** Do two partitions cut the layers alike? */
export function sameRanges(a: readonly LayerRange[], b: readonly LayerRange[]): boolean {
  return a.length === b.length && a.every((x, i) => x.start === b[i]?.start && x.end === b[i]?.end);
}

/** Layer ranges as one string ("0-10,10-20"): what a partition is called in logs and in a cluster. */
export function rangesKey(ranges: readonly LayerRange[]): string {
  return ranges.map((x) => `${x.start}-${x.end}`).join(',');
}

/** The layer ranges of a manifest's stages. */
export function rangesOf(manifest: StageManifest): LayerRange[] {
  return manifest.stages.map((s) => ({ start: s.layers.start, end: s.layers.end }));
}

/**
 * The volunteers as the planner sees them: memory offered, ms per layer as
 * measured at their challenge, current stage, and client (sockets sharing a
 * client key or address are one client).
 */
export function plannedVolunteers(
  volunteers: readonly Volunteer[],
  ranges: readonly LayerRange[],
  keysOf: (id: string) => readonly string[],
  defaultMemoryBytes: number,
): PlannedVolunteer[] {
  const clientOfKey = new Map<string, string>();
  return volunteers.map((v) => {
    const keys = keysOf(v.id);
    const client = keys.map((k) => clientOfKey.get(k)).find((c) => c !== undefined) ?? keys[0] ?? `id:${v.id}`;
    for (const k of keys) clientOfKey.set(k, client);
    const range = ranges[v.stage];
    const layers = range === undefined ? 0 : range.end - range.start;
    return {
      id: v.id,
      memoryBytes: v.memoryBytes ?? defaultMemoryBytes,
      bufferLimitBytes: v.bufferLimitBytes ?? null,
      msPerLayer: v.ready && v.stepMs !== null && layers > 0 ? v.stepMs / layers : null,
      stage: v.stage,
      client,
    };
  });
}
