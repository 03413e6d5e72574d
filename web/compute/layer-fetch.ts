// A volunteer fetches only the tensors its stage is built from: the
// safetensors header first (one small range request), then the tensors' byte
// ranges, from the model folder on any static HTTP server with range requests
// and CORS. Every tensor must hash to what the swarm's own tensor index says
// before it is kept (in the Cache API, keyed by model and hash) or used.
import { ModelError } from '../../shared/model/errors.js';
import type { TensorInfo } from '../../shared/model/safetensors.js';
import { type HeaderEntry, headerLength, parseSafetensorsHeader } from '../../shared/model/safetensors-header.js';
import { sha256Hex } from '../../shared/model/sha256.js';
import { parseTensorIndex, type TensorDigest, type TensorIndex } from '../../shared/model/tensor-index.js';
import type { Progress } from './stage-loader.js';

export type LayerFetchErrorCode =
  /** The swarm's tensors.json or the folder's model.safetensors.index.json is missing or invalid. */
  | 'ERR_WEIGHTS_INDEX'
  /** A request failed or was answered with an error status. */
  | 'ERR_WEIGHTS_HTTP'
  /** The server did not answer a range request with the range asked for (no 206, no readable Content-Range, a wrong length). */
  | 'ERR_WEIGHTS_RANGE'
  /** A safetensors header longer than the bound. */
  | 'ERR_HEADER_TOO_LARGE'
  /** A safetensors header that is not valid, or that puts a tensor outside its file. */
  | 'ERR_HEADER_INVALID'
  /** A tensor the stage needs is missing, or differs in dtype or shape from the swarm's index. */
  | 'ERR_TENSOR_MISMATCH'
  /** A tensor's bytes do not hash to the swarm's sha256: tampered or corrupt. */
  | 'ERR_TENSOR_SHA256';

export class LayerFetchError extends Error {
  constructor(
    readonly code: LayerFetchErrorCode,
    detail: string,
  ) {
    super(`${code}: ${detail}`);
    this.name = 'LayerFetchError';
  }
}

export interface LayerFetchLimits {
  /** Largest safetensors header accepted (the JSON after the 8-byte length). */
  readonly headerBytes: number;
  /** Bytes asked for by the first request of a file: the length and, usually, the whole header. */
  readonly probeBytes: number;
  /** Largest model.safetensors.index.json or tensors.json accepted. */
  readonly indexBytes: number;
  /** Adjacent tensors are fetched in one request up to this size. */
  readonly requestBytes: number;
  /** Range requests in flight at once. */
  readonly parallel: number;
}

export const LAYER_FETCH_LIMITS: LayerFetchLimits = {
  headerBytes: 16 * 1024 * 1024,
  probeBytes: 64 * 1024,
  indexBytes: 16 * 1024 * 1024,
  requestBytes: 32 * 1024 * 1024,
  parallel: 4,
};

/** Where verified tensors are kept between page loads, keyed by model and sha256. */
export interface TensorStore {
  get(key: string): Promise<Uint8Array | null>;
  put(key: string, bytes: Uint8Array): Promise<void>;
  delete(key: string): Promise<void>;
}

const CACHE_NAME = 'webswarm-tensors-v1';

/** The Cache API as a TensorStore; null where storage is denied (private mode) or absent. */
export async function cacheApiStore(): Promise<TensorStore | null> {
  let cache: Cache;
  try {
    if (!('caches' in globalThis)) return null;
    cache = await caches.open(CACHE_NAME);
  } catch {
    return null;
  }
  const origin = (globalThis as { location?: { origin?: string } }).location?.origin ?? 'http://localhost';
  const req = (key: string) => new Request(`${origin}/__webswarm/tensors/${key}`);
  return {
    async get(key) {
      const hit = await cache.match(req(key));
      return hit === undefined ? null : new Uint8Array(await hit.arrayBuffer());
    },
    async put(key, bytes) {
      try {
        await cache.put(
          req(key),
          new Response(bytes as Uint8Array<ArrayBuffer>, { headers: { 'content-type': 'application/octet-stream' } }),
        );
      } catch {
        // Quota exceeded: the stage still loads, it is just not kept.
      }
    },
    async delete(key) {
      await cache.delete(req(key));
    },
  };
}

/** A store in memory (tests, and a page that must not keep anything). */
export function memoryStore(): TensorStore & { readonly size: number } {
  const m = new Map<string, Uint8Array>();
  return {
    get size() {
      return m.size;
    },
    get: async (key) => m.get(key)?.slice() ?? null,
    put: async (key, bytes) => void m.set(key, bytes.slice()),
    delete: async (key) => void m.delete(key),
  };
}

export function tensorKey(modelId: string, sha256: string): string {
  return `${encodeURIComponent(modelId)}/${sha256}`;
}

/** Reads a response body of at most `maxBytes` (or exactly `exactBytes`), whatever Content-Length says. */
async function readBody(
  res: Response,
  url: string,
  limit: { maxBytes?: number; exactBytes?: number },
  onChunk?: (n: number) => void,
): Promise<Uint8Array> {
  const cap = limit.exactBytes ?? limit.maxBytes ?? 0;
  if (res.body === null) throw new LayerFetchError('ERR_WEIGHTS_HTTP', `${url}: the response has no body`);
  const reader = res.body.getReader();
  const buf = new Uint8Array(cap);
  let got = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (got + value.byteLength > cap) {
      await reader.cancel();
      throw limit.exactBytes === undefined
        ? new LayerFetchError('ERR_WEIGHTS_INDEX', `${url} is larger than ${cap} bytes`)
        : new LayerFetchError('ERR_WEIGHTS_RANGE', `${url} sent more than the ${cap} bytes asked for`);
    }
    buf.set(value, got);
    got += value.byteLength;
    onChunk?.(value.byteLength);
  }
  if (limit.exactBytes !== undefined && got !== limit.exactBytes) {
    throw new LayerFetchError('ERR_WEIGHTS_RANGE', `${url} sent ${got} bytes, ${limit.exactBytes} were asked for`);
  }
  return got === cap ? buf : buf.slice(0, got);
}

async function get(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, { cache: 'no-store', ...init });
  } catch (e) {
    throw new LayerFetchError('ERR_WEIGHTS_HTTP', `${url}: ${(e as Error).message}`);
  }
}

async function fetchJson(url: string, maxBytes: number): Promise<unknown> {
  const res = await get(url, {});
  if (!res.ok) {
    await res.body?.cancel();
    throw new LayerFetchError('ERR_WEIGHTS_INDEX', `${url}: HTTP ${res.status}`);
  }
  const bytes = await readBody(res, url, { maxBytes });
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new LayerFetchError('ERR_WEIGHTS_INDEX', `${url} is not JSON (${(e as Error).message})`);
  }
}

/** The swarm's tensor index (tensors.json beside the manifest), validated. */
export async function fetchTensorIndex(url: string, limits: LayerFetchLimits = LAYER_FETCH_LIMITS): Promise<TensorIndex> {
  const raw = await fetchJson(url, limits.indexBytes);
  try {
    return parseTensorIndex(url, raw);
  } catch (e) {
    throw new LayerFetchError('ERR_WEIGHTS_INDEX', (e as Error).message);
  }
}

/** "bytes START-END/TOTAL" → numbers; null when absent or malformed (or unreadable: not in Access-Control-Expose-Headers). */
export function parseContentRange(v: string | null): { start: number; end: number; total: number } | null {
  const m = v === null ? null : /^bytes (\d{1,15})-(\d{1,15})\/(\d{1,15})$/.exec(v.trim());
  if (m === null) return null;
  const [start, end, total] = [Number(m[1]), Number(m[2]), Number(m[3])];
  return start <= end && end < total ? { start, end, total } : null;
}

/**
 * Bytes [start, end) of a file by one range request; `end` is clipped to the
 * file's end. Returns the bytes and the file's size from Content-Range.
 */
async function fetchRange(
  url: string,
  start: number,
  end: number,
  onChunk?: (n: number) => void,
): Promise<{ bytes: Uint8Array; fileBytes: number }> {
  const res = await get(url, { headers: { range: `bytes=${start}-${end - 1}` } });
  if (res.status === 416) {
    await res.body?.cancel();
    throw new LayerFetchError('ERR_HEADER_INVALID', `${url}: bytes ${start}-${end - 1} lie outside the file (HTTP 416)`);
  }
  if (res.status !== 206) {
    await res.body?.cancel();
    throw res.ok
      ? new LayerFetchError(
          'ERR_WEIGHTS_RANGE',
          `${url} answered a range request with HTTP ${res.status}: the server must support range requests`,
        )
      : new LayerFetchError('ERR_WEIGHTS_HTTP', `${url}: HTTP ${res.status}`);
  }
  const cr = parseContentRange(res.headers.get('content-range'));
  if (cr === null) {
    await res.body?.cancel();
    throw new LayerFetchError(
      'ERR_WEIGHTS_RANGE',
      `${url}: no readable Content-Range (a cross-origin server must list it in Access-Control-Expose-Headers)`,
    );
  }
  const want = Math.min(end, cr.total) - 1;
  if (cr.start !== start || cr.end !== want) {
    await res.body?.cancel();
    throw new LayerFetchError('ERR_WEIGHTS_RANGE', `${url}: asked for bytes ${start}-${end - 1}, got ${cr.start}-${cr.end}/${cr.total}`);
  }
  return { bytes: await readBody(res, url, { exactBytes: cr.end - cr.start + 1 }, onChunk), fileBytes: cr.total };
}

/** A safetensors file's header, read by range requests: where each tensor's bytes are in the file. */
export interface RemoteHeader {
  readonly url: string;
  readonly fileBytes: number;
  /** Offset of the data after the header. */
  readonly dataStart: number;
  readonly entries: ReadonlyMap<string, HeaderEntry>;
  /** Bytes downloaded to read it. */
  readonly downloadedBytes: number;
}

export async function fetchHeader(url: string, limits: LayerFetchLimits = LAYER_FETCH_LIMITS): Promise<RemoteHeader> {
  const probe = await fetchRange(url, 0, limits.probeBytes);
  let downloaded = probe.bytes.byteLength;
  if (probe.bytes.byteLength < 8)
    throw new LayerFetchError('ERR_HEADER_INVALID', `${url} is ${probe.fileBytes} bytes, too short for a safetensors header`);
  const n = headerLength(probe.bytes);
  if (n > limits.headerBytes) {
    throw new LayerFetchError('ERR_HEADER_TOO_LARGE', `${url} has a ${n}-byte header; at most ${limits.headerBytes} are accepted`);
  }
  if (n === 0 || 8 + n > probe.fileBytes) {
    throw new LayerFetchError('ERR_HEADER_INVALID', `${url}: a header of ${n} bytes does not fit a file of ${probe.fileBytes} bytes`);
  }
  let json: Uint8Array;
  if (8 + n <= probe.bytes.byteLength) json = probe.bytes.subarray(8, 8 + n);
  else {
    const rest = await fetchRange(url, probe.bytes.byteLength, 8 + n);
    if (rest.fileBytes !== probe.fileBytes) throw new LayerFetchError('ERR_WEIGHTS_RANGE', `${url} changed size while it was read`);
    downloaded += rest.bytes.byteLength;
    json = new Uint8Array(n);
    json.set(probe.bytes.subarray(8), 0);
    json.set(rest.bytes, probe.bytes.byteLength - 8);
  }
  let entries: Map<string, HeaderEntry>;
  try {
    entries = parseSafetensorsHeader(url, json, probe.fileBytes - 8 - n);
  } catch (e) {
    throw new LayerFetchError('ERR_HEADER_INVALID', e instanceof ModelError ? e.message : String(e));
  }
  return { url, fileBytes: probe.fileBytes, dataStart: 8 + n, entries, downloadedBytes: downloaded };
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
