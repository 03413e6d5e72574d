import { type FileEntry, parseManifest, type StageManifest } from '../../shared/model/manifest.js';
import { sha256Hex } from '../../shared/model/sha256.js';

const CACHE_NAME = 'webswarm-models-v1';

export class DownloadError extends Error {
  constructor(
    readonly code: 'ERR_HTTP' | 'ERR_SHA256' | 'ERR_SIZE' | 'ERR_MANIFEST',
    message: string,
  ) {
    super(message);
  }
}

export interface Progress {
  readonly file: string;
  readonly loadedBytes: number;
  readonly totalBytes: number;
  readonly fromCache: boolean;
}

export async function fetchManifest(baseUrl: string): Promise<StageManifest> {
  const url = `${baseUrl}/manifest.json`;
  const res = await fetch(url, { cache: 'no-cache' });
  if (!res.ok) throw new DownloadError('ERR_HTTP', `${url}: HTTP ${res.status}`);
  try {
    return parseManifest(url, await res.json());
  } catch (e) {
    throw new DownloadError('ERR_MANIFEST', (e as Error).message);
  }
}

async function openCache(): Promise<Cache | null> {
  try {
    return 'caches' in globalThis ? await caches.open(CACHE_NAME) : null;
  } catch {
    return null; // storage denied (private mode, quota): download every time
  }
}

/**
 * A file the manifest names, from the Cache API when a copy with the right
 * sha256 is there, else downloaded with progress, checked, and cached.
 */
export async function fetchVerified(baseUrl: string, entry: FileEntry, onProgress?: (p: Progress) => void): Promise<ArrayBuffer> {
  // The sha256 is in the cache key, so a rebuilt stage never meets a stale copy.
  const url = `${baseUrl}/${entry.file}`;
  const key = `${new URL(url, location.href).href}?sha256=${entry.sha256}`;
  const cache = await openCache();
  const hit = await cache?.match(key);
  if (hit !== undefined) {
    const bytes = await hit.arrayBuffer();
    if (bytes.byteLength === entry.sizeBytes && (await sha256Hex(new Uint8Array(bytes))) === entry.sha256) {
      onProgress?.({ file: entry.file, loadedBytes: bytes.byteLength, totalBytes: entry.sizeBytes, fromCache: true });
      return bytes;
    }
    await cache?.delete(key);
  }
  const res = await fetch(url);
  if (!res.ok || res.body === null) throw new DownloadError('ERR_HTTP', `${url}: HTTP ${res.status}`);
  const reader = res.body.getReader();
  const buf = new Uint8Array(entry.sizeBytes);
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (loaded + value.byteLength > entry.sizeBytes) {
      await reader.cancel();
      throw new DownloadError('ERR_SIZE', `${url} is larger than the ${entry.sizeBytes} bytes the manifest says`);
    }
    buf.set(value, loaded);
    loaded += value.byteLength;
    onProgress?.({ file: entry.file, loadedBytes: loaded, totalBytes: entry.sizeBytes, fromCache: false });
  }
  if (loaded !== entry.sizeBytes) throw new DownloadError('ERR_SIZE', `${url} is ${loaded} bytes, the manifest says ${entry.sizeBytes}`);
  const sha = await sha256Hex(buf);
  if (sha !== entry.sha256) throw new DownloadError('ERR_SHA256', `${url} has sha256 ${sha}, the manifest says ${entry.sha256}`);
  try {
    await cache?.put(key, new Response(buf.slice().buffer, { headers: { 'content-type': 'application/octet-stream' } }));
  } catch {
    // Quota exceeded: the model still runs, it is just not kept.
  }
  return buf.buffer;
}
