// HTTP range requests for a volunteer's layer fetch, checked at the boundary:
// a 206 with the Content-Range asked for and exactly its bytes, a safetensors
// header within its bound and inside its file, JSON within its size. Each
// failure is a LayerFetchError with a code from a closed union.
import { ModelError } from '../../shared/model/errors.js';
import { type HeaderEntry, headerLength, parseSafetensorsHeader } from '../../shared/model/safetensors-header.js';

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

/** Reads a response body of at most `maxBytes` (or exactly `exactBytes`), whatever Content-Length says. */
export async function readBody(
  res: Response,
  url: string,
  limit: { maxBytes?: number; exactBytes?: number },
  onChunk?: (n: number) => void,
): Promise<Uint8Array> {
  const cap = limit.exactBytes ?? limit.maxBytes ?? 0;
  if (res.body === null) throw new LayerFetchError('ERR_WEIGHTS_HTTP', `${url}: the response has no body`);
  const reader = res.body.getReader();
  // An exact size is allocated at once; a mere bound (a JSON file) grows with what arrives.
  let buf = new Uint8Array(limit.exactBytes ?? Math.min(cap, 64 * 1024));
  let got = 0;
  for (;;) {
    let chunk: ReadableStreamReadResult<Uint8Array>;
    try {
      chunk = await reader.read();
    } catch (e) {
      // The connection closed mid-body (fetch's "terminated"), or the stream failed otherwise.
      throw new LayerFetchError('ERR_WEIGHTS_HTTP', `${url}: the body broke off after ${got} bytes (${(e as Error).message})`);
    }
    const { done, value } = chunk;
    if (done) break;
    if (got + value.byteLength > cap) {
      await reader.cancel();
      throw limit.exactBytes === undefined
        ? new LayerFetchError('ERR_WEIGHTS_INDEX', `${url} is larger than ${cap} bytes`)
        : new LayerFetchError('ERR_WEIGHTS_RANGE', `${url} sent more than the ${cap} bytes asked for`);
    }
    if (got + value.byteLength > buf.byteLength) {
      const grown = new Uint8Array(Math.min(cap, Math.max(2 * buf.byteLength, got + value.byteLength)));
      grown.set(buf.subarray(0, got));
      buf = grown;
    }
    buf.set(value, got);
    got += value.byteLength;
    onChunk?.(value.byteLength);
  }
  if (limit.exactBytes !== undefined && got !== limit.exactBytes) {
    throw new LayerFetchError('ERR_WEIGHTS_RANGE', `${url} sent ${got} bytes, ${limit.exactBytes} were asked for`);
  }
  return got === buf.byteLength ? buf : buf.slice(0, got);
}

export async function get(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, { cache: 'no-store', ...init });
  } catch (e) {
    throw new LayerFetchError('ERR_WEIGHTS_HTTP', `${url}: ${(e as Error).message}`);
  }
}

export async function fetchJson(url: string, maxBytes: number): Promise<unknown> {
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
export async function fetchRange(
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
