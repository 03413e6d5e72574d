/**
 * The server's own runners of a stage set (made on first use, their sessions
 * in the process's runner thread: thread-executor.ts; their files read, and a
 * re-partition's built, in a thread of their own: models/stage-files.ts): the challenge oracle
 * volunteers must match to count as ready, the fallback's executor, and for a
 * re-partition both of these for any layer ranges, built into the stage cache.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import type { StageManifest } from '../shared/model/manifest.js';
import type { LayerRange } from '../shared/model/stage-graph.js';
import { type ChallengeOracle, ReferenceOracle } from './coordinator/challenge.js';
import type { ModelSizes } from './coordinator/partition-planner.js';
import { type PartitionBuilder, rangesOf, type ServedPartition } from './coordinator/repartition.js';
import { type BuildChoice, builtChoice, readModelConfig, readTensorIndex, sourceFolderOf, stageDirName } from './models/model-folder.js';
import { modelSizesOf } from './models/model-sizes.js';
import { errnoOf } from './models/read-whole-file.js';
import { ensureStagesOffThread, loadStageSetOffThread } from './models/stage-files.js';
import { OrtExecutor } from './reference/ort-executor.js';
import { ThreadExecutor } from './reference/thread-executor.js';

/** The server's runner of a stage set, computing the challenge steps whose answers volunteers must match. */
export function lazyOracle(dir: string, where: RunnerPlace = 'thread'): ChallengeOracle {
  let oracle: Promise<ReferenceOracle> | null = null;
  let executor: ServerRunner | null = null;
  let released = false;
  return {
    make: (stage, wanted) => {
      if (released) return Promise.reject(new Error(`the runner of ${dir} was released: no challenge for stage ${stage}`));
      // A runner whose thread stopped (crashed) is made anew: without challenges no volunteer could become ready.
      if (executor?.broken === true) [oracle, executor] = [null, null];
      oracle ??= loadStageSetOffThread(dir).then(async (set) => {
        executor = await makeRunner(set.stageBytes, where);
        return new ReferenceOracle(set.manifest, executor);
      });
      return oracle.then((o) => o.make(stage, wanted));
    },
    release: async () => {
      released = true;
      // One still loading is released once it is made.
      await oracle?.then(
        (o) => o.release(),
        () => {},
      );
    },
  };
}

/** The server's runner of a stage set for the fallback. */
export function stageRunner(dir: string, where: RunnerPlace = 'thread'): () => Promise<ServerRunner> {
  return () => loadStageSetOffThread(dir).then((set) => makeRunner(set.stageBytes, where));
}

/**
 * Where the server's runners compute: in the runner thread (ThreadExecutor,
 * off the event loop), or on the main thread (OrtExecutor), as before it, for
 * a benchmark's side-by-side (bench/fallback-loop.ts).
 */
export type RunnerPlace = 'thread' | 'main';

/** A server's runner of a stage set. */
export type ServerRunner = OrtExecutor | ThreadExecutor;

function makeRunner(stageBytes: readonly Uint8Array[], where: RunnerPlace): Promise<ServerRunner> {
  return where === 'thread' ? ThreadExecutor.create(stageBytes) : OrtExecutor.create(stageBytes);
}

/**
 * What each part of a served stage set's model weighs, and its largest buffer
 * as these stages hold it (their precision and graph form), from the tensor
 * index beside its manifest; undefined when there is none (joiners are then
 * placed without their capacity).
 */
export function servedSizes(served: { readonly dir: string; readonly manifest: StageManifest }): ModelSizes | undefined {
  try {
    return modelSizesOf(readTensorIndex(served.dir), served.manifest.model.numLayers, served.manifest);
  } catch {
    return undefined;
  }
}

/** Served partitions (their oracles and runners) a builder keeps for switching back to. */
export const KEPT_PARTITIONS = 3;

/**
 * A builder's mark in a cut's folder (`.kept-by-<builder>`): it keeps the cut
 * (serves it, or may switch back to it without building it again). Several
 * servers may share one stage cache (the processes of a cluster on one
 * machine do, by default): one that forgets a cut removes its folder only
 * where no other builder's mark is fresh.
 */
const KEEP_MARK = '.kept-by-';
/** How often a builder renews its marks (their files' modification times). */
export const KEEP_RENEW_MS = 60_000;
/** A mark not renewed for this long is a stopped server's: it keeps nothing. */
export const KEEP_STALE_MS = 5 * 60_000;

/** Marks `dir` kept by `builder`, or renews its mark (a folder gone meanwhile is nobody's to mark). */
function markKept(dir: string, builder: string): void {
  try {
    writeFileSync(join(dir, KEEP_MARK + builder), '');
  } catch {
    // The folder was removed (by an operator, or a builder whose mark had gone stale): the next build makes it anew.
  }
}

/**
 * Removes a path, or says why it could not (`warn`: the server's log): a cache that is read-only, or a folder
 * replaced by a file (rmSync's `force` forgives only ENOENT), must not stop a switch of partitions, which forgets
 * cuts as it goes.
 */
function removeQuietly(path: string, warn: (line: string) => void): void {
  try {
    rmSync(path, { recursive: true, force: true });
  } catch (e) {
    warn(`stage cache: could not remove ${path} (${errnoOf(e)}); left as it is`);
  }
}

/**
 * Removes a cut's folder that `builder` forgets, unless another builder keeps it (a fresh mark). The folder is moved
 * aside first (one rename, whole), and its marks are read there: a builder that marks it after that finds it gone
 * and builds it again (partitionBuilder's make); one whose mark came before the rename, and after a first look,
 * is found in the moved folder, which is put back. So no builder serves a folder removed under it.
 */
export function removeUnlessKept(
  dir: string,
  builder: string,
  warn: (line: string) => void,
  /** Tests: what happens between the first look at the marks and the move (another builder marking, say). */
  meanwhile: () => void = () => {},
): void {
  if (keptByOthers(dir, builder)) return;
  meanwhile();
  const aside = `${dir}.evicting-${builder}`;
  try {
    renameSync(dir, aside);
  } catch (e) {
    // Gone already (another removed it), or the system refuses: left as it is.
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') warn(`stage cache: could not remove ${dir} (${errnoOf(e)}); left as it is`);
    return;
  }
  if (keptByOthers(aside, builder)) {
    try {
      renameSync(aside, dir);
      return;
    } catch {
      // A build put a new complete folder in its place meanwhile: that one is served; this one goes.
    }
  }
  removeQuietly(aside, warn);
}

/** Whether a builder other than `builder` keeps `dir` (a fresh mark). */
function keptByOthers(dir: string, builder: string, now = Date.now()): boolean {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return false;
  }
  return names.some((name) => {
    if (!name.startsWith(KEEP_MARK) || name === KEEP_MARK + builder) return false;
    try {
      return now - statSync(join(dir, name)).mtimeMs < KEEP_STALE_MS;
    } catch {
      return false;
    }
  });
}

/** Where a stage set of a model is served: /models/<modelId>/<key>. */
export function stageBaseUrl(modelId: string, key: string): string {
  return `/models/${encodeURIComponent(modelId)}/${key}`;
}

/**
 * Stage sets for any partition of the served model, built from its model
 * folder into `stageCache` (as `npm start` builds the first) at the same
 * precision and graph form, and served (`serve`) before volunteers are sent
 * there. A cut that leaves the latest KEPT_PARTITIONS, and is neither the
 * configured one nor the one served now (`switched`), is no longer served
 * (`unserve`) and its directory is removed, unless another server sharing
 * the stage cache keeps it (KEEP_MARK): every cut is a copy of the weights,
 * and cuts follow measured speeds, so at most KEPT_PARTITIONS + 2 cuts of this
 * builder's are on disk. A kept cut whose folder is gone when it is asked for
 * again is built anew. Null when the model folder is not on this server.
 */
export function partitionBuilder(
  served: { readonly dir: string; readonly manifest: StageManifest; readonly modelDir?: string },
  stageCache: string,
  serve: (stages: { readonly dir: string; readonly manifest: StageManifest }, baseUrl: string) => void,
  unserve: (baseUrl: string) => void = () => {},
  warn: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
): PartitionBuilder | null {
  const folder = served.modelDir ?? sourceFolderOf(served.dir);
  if (folder === null) return null;
  // New cuts are built as the served one was: its precision, form and context (its maxPositions, where below the
  // model's), normalized at each build as ensureStages normalizes it (a folder that cannot be read then fails that build).
  const asked: BuildChoice = {
    weights: served.manifest.weights,
    graph: served.manifest.graph,
    context: served.manifest.model.maxPositions,
  };
  const configured = resolve(served.dir);
  // One served partition per cut, the latest few kept: a swarm that switches back and forth (volunteers leaving
  // and coming back) reuses its oracle, whose runner holds the whole model, instead of loading another at every
  // switch; and cuts that vary (measured speeds do) are not all held in memory, nor on disk.
  const built = new Map<string, Promise<ServedPartition>>();
  let current: ServedPartition | null = null;
  const dirOf = new Map<ServedPartition, string>();
  const self = `${process.pid}-${randomUUID().slice(0, 8)}`;
  let renewing: ReturnType<typeof setInterval> | null = null;
  const unmark = (dir: string): void => removeQuietly(join(dir, KEEP_MARK + self), warn);
  const forget = (p: ServedPartition, dir: string): void => {
    dirOf.delete(p);
    unserve(p.baseUrl);
    unmark(dir);
  };
  const evict = (p: ServedPartition): void => {
    const dir = dirOf.get(p);
    if (dir === undefined || dir === configured || p === current || built.has(cutOf(rangesOf(p.manifest)))) return;
    forget(p, dir);
    removeUnlessKept(dir, self, warn);
    // Its oracle's sessions hold the whole model in the runner thread's heap: a server that re-partitions for days
    // would fill it.
    // A release that fails frees nothing more than not trying would: not a reason to stop the server.
    p.oracle.release?.().catch(() => {});
  };
  const make = async (ranges: readonly LayerRange[]): Promise<ServedPartition> => {
    const choice = builtChoice(readModelConfig(folder).config, asked, join(folder, 'config.json'));
    // Marked before it is checked or built, and checked again once marked. Another server sharing the stage cache
    // that forgets this cut takes its folder away whole first (removeUnlessKept), then looks for marks: one that
    // finds this mark puts the folder back; one that took it before the mark came leaves this build to find it gone,
    // and build it again.
    const expected = join(resolve(stageCache), served.manifest.modelId, stageDirName(served.manifest.model.numLayers, { ranges }, choice));
    markKept(expected, self);
    let ensured: { readonly dir: string; readonly manifest: StageManifest } | null = null;
    try {
      for (let attempt = 1; attempt <= 3 && ensured === null; attempt++) {
        const e = await ensureStagesOffThread(folder, { ranges }, stageCache, choice);
        markKept(e.dir, self);
        if (existsSync(join(e.dir, 'manifest.json'))) ensured = e;
      }
      if (ensured === null)
        throw new Error(
          `stage cache: the cut ${cutOf(ranges)} was removed as often as it was built (3 times): another server sharing ${stageCache} keeps removing it`,
        );
    } catch (e) {
      unmark(expected);
      throw e;
    }
    // Named as the build names it (the same rules): where not, the mark made before is not this cut's.
    if (resolve(ensured.dir) !== expected) unmark(expected);
    const { dir, manifest } = ensured;
    const key = basename(dir);
    const baseUrl = stageBaseUrl(manifest.modelId, key);
    serve({ dir, manifest }, baseUrl);
    const p: ServedPartition = { key, manifest, baseUrl, oracle: lazyOracle(dir), executor: stageRunner(dir) };
    dirOf.set(p, resolve(dir));
    renewing ??= setInterval(() => {
      for (const d of dirOf.values()) markKept(d, self);
    }, KEEP_RENEW_MS).unref();
    return p;
  };
  /** A kept cut's served partition, or null where its folder is gone (removed by another server or by hand). */
  const stillThere = async (p: Promise<ServedPartition>): Promise<ServedPartition | null> => {
    const served = await p;
    const dir = dirOf.get(served);
    if (dir === undefined || existsSync(join(dir, 'manifest.json'))) return served;
    forget(served, dir);
    served.oracle.release?.().catch(() => {});
    return null;
  };
  return {
    sizes: modelSizesOf(readTensorIndex(served.dir), served.manifest.model.numLayers, served.manifest),
    build(ranges: readonly LayerRange[]): Promise<ServedPartition> {
      const cut = cutOf(ranges);
      const kept = built.get(cut);
      const p = kept === undefined ? make(ranges) : stillThere(kept).then((served) => served ?? make(ranges));
      // Most recently used last: the first is the one to forget.
      built.delete(cut);
      built.set(cut, p);
      for (const [old, dropped] of built) {
        if (built.size <= KEPT_PARTITIONS) break;
        built.delete(old);
        dropped.then(evict, () => {});
      }
      // A build that failed is tried again next time.
      p.catch(() => {
        if (built.get(cut) === p) built.delete(cut);
      });
      return p;
    },
    switched(p: ServedPartition): void {
      const before = current;
      current = p;
      // The one served before may have left the latest kept while it served.
      if (before !== null && before !== p) evict(before);
    },
    async release(): Promise<void> {
      if (renewing !== null) clearInterval(renewing);
      // Its marks go: another server sharing the stage cache may remove these cuts once it forgets them too.
      for (const dir of dirOf.values()) unmark(dir);
      const kept = await Promise.all([...built.values()].map((p) => p.catch(() => null)));
      await Promise.all([...kept, current].map((p) => p?.oracle.release?.()));
    },
  };
}

function cutOf(ranges: readonly LayerRange[]): string {
  return ranges.map((r) => `${r.start}-${r.end}`).join(',');
}
