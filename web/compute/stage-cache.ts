// Built stage graphs kept between page loads, so that a returning volunteer
// neither reads back and re-hashes its stage's tensors nor rebuilds the graph
// from them. An entry is keyed by the model and the stage's sha256 from the
// swarm's manifest (a rebuilt or re-partitioned stage never meets a stale
// copy), and it is hashed again on every read: bytes that do not hash to the
// manifest's sha256 (a truncated write, a corrupt disk, another script of
// this origin writing into the cache) are deleted and never reach the runtime.
import type { StageManifest } from '../../shared/model/manifest.js';
import { sha256Hex } from '../../shared/model/sha256.js';
import { cacheApiStore, type TensorStore, tensorKey } from './tensor-store.js';

/** The Cache API cache the graphs are kept in (the tensors are in webswarm-tensors-v1). */
export const STAGE_CACHE_NAME = 'webswarm-stages-v1';

/** The stage graph cache in the Cache API, or null where storage is denied or absent. */
export function stageCacheStore(): Promise<TensorStore | null> {
  return cacheApiStore(STAGE_CACHE_NAME, 'stages');
}

/**
 * Why `bytes` are not the manifest's stage `index` ("N bytes with sha256 …;
 * the manifest says …"), or null
 * when they are: the one check both a freshly built stage (stage-build.ts)
 * and a cached one pass before a session is created from them.
 */
export async function stageMismatch(manifest: StageManifest, index: number, bytes: Uint8Array): Promise<string | null> {
  const entry = manifest.stages[index];
  if (entry === undefined) return 'not in the manifest';
  const sha = await sha256Hex(bytes);
  if (bytes.byteLength === entry.sizeBytes && sha === entry.sha256) return null;
  return `${bytes.byteLength} bytes with sha256 ${sha}; the manifest says ${entry.sizeBytes} bytes, ${entry.sha256}`;
}

export type CachedStage =
  | { readonly kind: 'hit'; readonly bytes: ArrayBuffer }
  | { readonly kind: 'miss' }
  /** An entry was there but was not the manifest's stage: it has been deleted. */
  | { readonly kind: 'rejected'; readonly reason: string };

function stageKey(manifest: StageManifest, index: number): string | null {
  const entry = manifest.stages[index];
  return entry === undefined ? null : tensorKey(manifest.modelId, entry.sha256);
}

/** The manifest's stage `index` from `store`, only once it hashes to the manifest's sha256. */
export async function readCachedStage(store: TensorStore | null, manifest: StageManifest, index: number): Promise<CachedStage> {
  const key = stageKey(manifest, index);
  if (store === null || key === null) return { kind: 'miss' };
  const bytes = await store.get(key);
  if (bytes === null) return { kind: 'miss' };
  const why = await stageMismatch(manifest, index, bytes);
  if (why !== null) {
    await store.delete(key);
    return { kind: 'rejected', reason: `the cached stage ${index} is ${why}` };
  }
  const own = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes.buffer : bytes.slice().buffer;
  return { kind: 'hit', bytes: own as ArrayBuffer };
}

/** Keeps a stage that has passed stageMismatch; a full quota only means it is built again next time. */
export async function keepStage(store: TensorStore | null, manifest: StageManifest, index: number, bytes: Uint8Array): Promise<void> {
  const key = stageKey(manifest, index);
  if (store === null || key === null) return;
  await store.put(key, bytes);
}
