// A volunteer's stage, opened in its compute worker the quickest safe way: the
// graph built on an earlier visit when the stage cache holds one that hashes
// to the manifest's sha256 (stage-cache.ts), else built from the stage's
// tensors, fetched or taken from their own cache and verified one by one
// (stage-weights.ts), in the worker, which checks the result against the same
// sha256 and keeps it for the next visit.
import type { StageManifest } from '../../shared/model/manifest.js';
import type { CaptureOptions } from './captured-stages.js';
import type { ComputeClient } from './compute-client.js';
import type { Backend } from './messages.js';
import { readCachedStage, stageCacheStore } from './stage-cache.js';
import type { Progress } from './stage-loader.js';
import { fetchStageWeights } from './stage-weights.js';

/** Where an opened stage came from; `rejected` says why a cached copy was deleted and the stage built again. */
export type StageSource = { readonly from: 'cache' } | { readonly from: 'tensors'; readonly rejected: string | null };

export interface StageOpenHooks {
  readonly progress: (p: Progress) => void;
  /**
   * The stage's bytes are here and its session is about to be created; false
   * makes the open moot (the volunteer paused or left meanwhile). It may throw
   * (a compute worker that did not start).
   */
  readonly loading: () => boolean;
}

export interface StageOpen {
  readonly compute: ComputeClient;
  readonly backend: Backend;
  readonly baseUrl: string;
  readonly manifest: StageManifest;
  readonly stage: number;
  readonly batching: boolean;
  /** Rows for graph capture (WebGPU, fused form: captured-stages.ts); null: none. */
  readonly capture: CaptureOptions | null;
}

/** Opens the stage in o.compute; null when it became moot. */
export async function openStage(o: StageOpen, hooks: StageOpenHooks): Promise<StageSource | null> {
  const cached = await readCachedStage(await stageCacheStore(), o.manifest, o.stage);
  if (cached.kind === 'hit') {
    const size = cached.bytes.byteLength;
    hooks.progress({ file: `stage ${o.stage}`, loadedBytes: size, totalBytes: size, fromCache: true });
    if (!hooks.loading()) return null;
    await o.compute.load(o.backend, o.manifest, [{ index: o.stage, bytes: cached.bytes }], o.batching, o.capture);
    return { from: 'cache' };
  }
  // Only this stage's tensors, by range requests from the model folder, each checked against the swarm's sha256.
  const weights = await fetchStageWeights(o.baseUrl, o.manifest, [o.stage], hooks.progress);
  if (!hooks.loading()) return null;
  // The worker builds the stage graph and checks it is byte-identical to the server's (the manifest's sha256).
  await o.compute.build(o.backend, o.manifest, weights.stages, o.batching, o.capture);
  return { from: 'tensors', rejected: cached.kind === 'rejected' ? cached.reason : null };
}
