// Where a volunteer keeps verified tensors between page loads: the Cache API,
// keyed by model and sha256 (so that a changed checkpoint never meets a stale
// copy), or memory.
/** Where verified tensors are kept between page loads, keyed by model and sha256. */
export interface TensorStore {
  get(key: string): Promise<Uint8Array | null>;
  put(key: string, bytes: Uint8Array): Promise<void>;
  delete(key: string): Promise<void>;
}

const CACHE_NAME = 'webswarm-tensors-v1';

/**
 * The Cache API as a TensorStore (by default the verified tensors' cache;
 * stage-cache.ts keeps built stage graphs in another); null where storage is
 * denied (private mode) or absent.
 */
export async function cacheApiStore(cacheName = CACHE_NAME, kind = 'tensors'): Promise<TensorStore | null> {
  let cache: Cache;
  try {
    if (!('caches' in globalThis)) return null;
    cache = await caches.open(cacheName);
  } catch {
    return null;
  }
  const origin = (globalThis as { location?: { origin?: string } }).location?.origin ?? 'http://localhost';
  const req = (key: string) => new Request(`${origin}/__webswarm/${kind}/${key}`);
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
