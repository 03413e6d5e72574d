// A volunteer fetches only the tensors its stage is built from: the
// safetensors header first (one small range request), then the tensors' byte
// ranges, from the model folder on any static HTTP server with range requests
// and CORS. Every tensor must hash to what the swarm's own tensor index says
// before it is kept (in the Cache API, keyed by model and hash) or used.
import type { TensorInfo } from '../../shared/model/safetensors.js';
import type { HeaderEntry } from '../../shared/model/safetensors-header.js';
import { sha256Hex } from '../../shared/model/sha256.js';
import { parseTensorIndex, type TensorDigest, type TensorIndex } from '../../shared/model/tensor-index.js';
import { fetchHeader, fetchJson, fetchRange, LAYER_FETCH_LIMITS, LayerFetchError, type LayerFetchLimits } from './range-fetch.js';
import type { Progress } from './stage-loader.js';
import { type TensorStore, tensorKey } from './tensor-store.js';

/** The swarm's tensor index (tensors.json beside the manifest), validated. */
export async function fetchTensorIndex(url: string, limits: LayerFetchLimits = LAYER_FETCH_LIMITS): Promise<TensorIndex> {
  const raw = await fetchJson(url, limits.indexBytes);
  try {
    return parseTensorIndex(url, raw);
  } catch (e) {
    throw new LayerFetchError('ERR_WEIGHTS_INDEX', (e as Error).message);
  }
}

/** Which file of the folder holds each tensor: model.safetensors, or the shards model.safetensors.index.json lists. */
async function weightFiles(index: TensorIndex, base: URL, limits: LayerFetchLimits): Promise<(name: string) => string | undefined> {
  if (index.weightsFile === 'model.safetensors') return () => 'model.safetensors';
  const url = new URL(index.weightsFile, base).href;
  const raw = await fetchJson(url, limits.indexBytes);
  const map = typeof raw === 'object' && raw !== null ? (raw as { weight_map?: unknown }).weight_map : undefined;
  if (typeof map !== 'object' || map === null || Array.isArray(map))
    throw new LayerFetchError('ERR_WEIGHTS_INDEX', `${url} has no weight_map object`);
  const files = new Map<string, string>();
  for (const [name, file] of Object.entries(map as Record<string, unknown>)) {
    if (typeof file !== 'string' || !/^[A-Za-z0-9._-]+\.safetensors$/.test(file) || file.startsWith('.')) {
      throw new LayerFetchError(
        'ERR_WEIGHTS_INDEX',
        `${url}: weight_map names ${JSON.stringify(file)} for ${name}, not a safetensors file beside it`,
      );
    }
    files.set(name, file);
  }
  return (name) => files.get(name);
}

/** What fetchStageTensors did. */
export interface FetchedTensors {
  /** The verified tensors, by name. */
  readonly tensors: Map<string, TensorInfo>;
  /** Bytes received over the network (headers and tensors). */
  readonly downloadedBytes: number;
  /** Tensors taken from the store. */
  readonly fromStore: number;
}

export interface FetchStageTensorsOptions {
  /** The swarm's tensor index and the URL it was fetched from (its weightsUrl is relative to that). */
  readonly index: TensorIndex;
  readonly indexUrl: string;
  readonly names: readonly string[];
  readonly store: TensorStore | null;
  readonly onProgress?: (p: Progress) => void;
  readonly limits?: LayerFetchLimits;
}

interface Wanted {
  readonly digest: TensorDigest;
  readonly entry: HeaderEntry;
}

/** Groups tensors that lie back to back into one request each, up to `maxBytes`. */
function planRanges(wanted: readonly Wanted[], maxBytes: number): Wanted[][] {
  const sorted = [...wanted].sort((a, b) => a.entry.start - b.entry.start);
  const groups: Wanted[][] = [];
  for (const w of sorted) {
    const g = groups[groups.length - 1];
    const first = g?.[0];
    const last = g?.[g.length - 1];
    if (
      g !== undefined &&
      first !== undefined &&
      last !== undefined &&
      w.entry.start === last.entry.end &&
      w.entry.end - first.entry.start <= maxBytes
    )
      g.push(w);
    else groups.push([w]);
  }
  return groups;
}

async function inParallel<T>(items: readonly T[], parallel: number, f: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await f(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(parallel, items.length) }, worker));
}

/**
 * The named tensors: from the store when a copy there still hashes right,
 * else by range requests from the model folder, each checked against the
 * swarm's sha256 before it is stored or returned.
 */
export async function fetchStageTensors(o: FetchStageTensorsOptions): Promise<FetchedTensors> {
  const limits = o.limits ?? LAYER_FETCH_LIMITS;
  const { index } = o;
  const byName = new Map(index.tensors.map((t) => [t.name, t]));
  const digests = o.names.map((name) => {
    const d = byName.get(name);
    if (d === undefined)
      throw new LayerFetchError('ERR_TENSOR_MISMATCH', `tensor ${name} is not in the swarm's tensor index ${o.indexUrl}`);
    return d;
  });
  const totalBytes = digests.reduce((a, d) => a + d.sizeBytes, 0);
  let loaded = 0;
  let downloaded = 0;
  let fromStore = 0;
  const label = `${index.modelId} weights`;
  const progress = (fromCache: boolean) => o.onProgress?.({ file: label, loadedBytes: loaded, totalBytes, fromCache });
  const out = new Map<string, TensorInfo>();
  const keep = (d: TensorDigest, bytes: Uint8Array) => out.set(d.name, { name: d.name, dtype: d.dtype, shape: d.shape, bytes });

  const missing: TensorDigest[] = [];
  for (const d of digests) {
    const key = tensorKey(index.modelId, d.sha256);
    const hit = (await o.store?.get(key)) ?? null;
    if (hit !== null && hit.byteLength === d.sizeBytes && (await sha256Hex(hit)) === d.sha256) {
      keep(d, hit);
      fromStore += 1;
      loaded += d.sizeBytes;
      progress(true);
    } else {
      if (hit !== null) await o.store?.delete(key);
      missing.push(d);
    }
  }
  if (missing.length === 0) return { tensors: out, downloadedBytes: 0, fromStore };

  const base = new URL(index.weightsUrl ?? './', o.indexUrl);
  const fileOf = await weightFiles(index, base, limits);
  const byFile = new Map<string, TensorDigest[]>();
  for (const d of missing) {
    const file = fileOf(d.name);
    if (file === undefined) throw new LayerFetchError('ERR_TENSOR_MISMATCH', `tensor ${d.name} is in no file of the weight map`);
    byFile.set(file, [...(byFile.get(file) ?? []), d]);
  }
  for (const [file, ds] of byFile) {
    const url = new URL(file, base).href;
    const header = await fetchHeader(url, limits);
    downloaded += header.downloadedBytes;
    const wanted = ds.map((d): Wanted => {
      const entry = header.entries.get(d.name);
      if (entry === undefined) throw new LayerFetchError('ERR_TENSOR_MISMATCH', `tensor ${d.name} is not in ${url}`);
      if (entry.dtype !== d.dtype || entry.shape.length !== d.shape.length || entry.shape.some((x, i) => x !== d.shape[i])) {
        throw new LayerFetchError(
          'ERR_TENSOR_MISMATCH',
          `tensor ${d.name} is ${entry.dtype}[${entry.shape.join(', ')}] in ${url}, the swarm's index says ${d.dtype}[${d.shape.join(', ')}]`,
        );
      }
      return { digest: d, entry };
    });
    await inParallel(planRanges(wanted, limits.requestBytes), limits.parallel, async (group) => {
      const first = group[0] as Wanted;
      const last = group[group.length - 1] as Wanted;
      const start = header.dataStart + first.entry.start;
      const { bytes, fileBytes } = await fetchRange(url, start, header.dataStart + last.entry.end, (n) => {
        downloaded += n;
      });
      if (fileBytes !== header.fileBytes) throw new LayerFetchError('ERR_WEIGHTS_RANGE', `${url} changed size while it was read`);
      for (const w of group) {
        const t = bytes.subarray(header.dataStart + w.entry.start - start, header.dataStart + w.entry.end - start);
        const sha = await sha256Hex(t);
        if (sha !== w.digest.sha256) {
          throw new LayerFetchError(
            'ERR_TENSOR_SHA256',
            `tensor ${w.digest.name} from ${url} has sha256 ${sha}, the swarm's index says ${w.digest.sha256}`,
          );
        }
        await o.store?.put(tensorKey(index.modelId, sha), t);
        keep(w.digest, t);
        loaded += t.byteLength;
        progress(false);
      }
    });
  }
  // The names' order, whatever order the ranges came in.
  const ordered = new Map(o.names.map((n) => [n, out.get(n) as TensorInfo]));
  return { tensors: ordered, downloadedBytes: downloaded, fromStore };
}
