import { createReadStream, existsSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join, normalize, relative, resolve, sep } from 'node:path';
import { pipeline } from 'node:stream';

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.onnx': 'application/octet-stream',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
};

/**
 * Headers on every response: cross-origin isolation lets onnxruntime-web use
 * threads (SharedArrayBuffer) and precise timers in the pages.
 */
export const ISOLATION_HEADERS: Record<string, string> = {
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-embedder-policy': 'require-corp',
  'cross-origin-resource-policy': 'same-origin',
  'x-content-type-options': 'nosniff',
};

/**
 * The app's pages refuse to be framed by another origin, so that no other
 * site can show /volunteer (or /chat, /dashboard, /) inside its own page and
 * steer a visitor's clicks: CSP frame-ancestors, and X-Frame-Options for
 * browsers without it.
 */
export const SAME_ORIGIN_FRAMING: Record<string, string> = {
  'content-security-policy': "frame-ancestors 'self'",
  'x-frame-options': 'SAMEORIGIN',
};

/**
 * The widget's frame (/embed), which any site may frame: that is what
 * embed.js does. No frame-ancestors, and CORP cross-origin so that a host page
 * that is itself cross-origin isolated (COEP require-corp) may embed it too.
 * Being framed starts nothing: consent is a trusted click on its own button
 * while the frame is visible (web/volunteer/consent.ts).
 */
export const ANY_ORIGIN_FRAMING: Record<string, string> = { 'cross-origin-resource-policy': 'cross-origin' };

/** The pages (relative to the web root) that other origins may frame. */
const FRAMABLE_PAGES: ReadonlySet<string> = new Set(['embed/index.html']);

/**
 * The widget's consent window (/consent, web/embed/consent-window.ts): framed by nobody, and opened by the widget's
 * frame, which it must be able to answer. With COOP same-origin, a window opened from a frame whose top page is
 * another site's is cut from its opener (a browsing context group of its own), so the frame would never hear the
 * consent: this page needs no cross-origin isolation, and goes without it.
 */
export const CONSENT_WINDOW_HEADERS: Record<string, string> = {
  'content-security-policy': "frame-ancestors 'none'",
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'unsafe-none',
};

/** The framing headers for a file of the web app at `relPath` (relative to its root, '/'-separated). */
export function framingHeaders(relPath: string): Record<string, string> {
  if (FRAMABLE_PAGES.has(relPath)) return ANY_ORIGIN_FRAMING;
  if (relPath === 'consent/index.html') return CONSENT_WINDOW_HEADERS;
  return extname(relPath) === '.html' ? SAME_ORIGIN_FRAMING : {};
}

/** Resolves `urlPath` inside `root`, or null when it would leave it. */
export function safeJoin(root: string, urlPath: string): string | null {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  if (decoded.includes('\0')) return null;
  const base = resolve(root);
  const full = normalize(join(base, decoded));
  return full === base || full.startsWith(base + sep) ? full : null;
}

/**
 * Streams a file (or a range of it) into `res`, opened once the response is the one its connection writes (a
 * pipelined request's waits its turn, and one never written opens nothing). With pipeline, not pipe: a response
 * closed before its end (its client gone, or closed by the send timeout, send-timeout.ts) closes the file; pipe left
 * it open and paused.
 */
function streamFile(res: ServerResponse, path: string, range?: { start: number; end: number }): void {
  const start = () => {
    if (!res.destroyed) pipeline(createReadStream(path, range), res, () => {});
  };
  if (res.socket !== null) start();
  else res.once('socket', start);
}

/** Streams a file with its content type, or returns false when there is no such file. */
export function sendFile(res: ServerResponse, path: string, cacheControl: string, headers: Record<string, string> = {}): boolean {
  if (!existsSync(path)) return false;
  const st = statSync(path);
  if (!st.isFile()) return false;
  res.writeHead(200, {
    ...ISOLATION_HEADERS,
    'content-type': MIME[extname(path)] ?? 'application/octet-stream',
    'content-length': String(st.size),
    'cache-control': cacheControl,
    ...headers,
  });
  streamFile(res, path);
  return true;
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...ISOLATION_HEADERS,
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
  });
  res.end(text);
}

/** Serves the built web app: /name → name/index.html for the app's pages, hashed assets cached long. */
export function serveWebApp(res: ServerResponse, webRoot: string, urlPath: string): boolean {
  const path = safeJoin(webRoot, urlPath);
  if (path === null) return false;
  const send = (file: string, cacheControl: string) =>
    sendFile(res, file, cacheControl, framingHeaders(relative(resolve(webRoot), file).split(sep).join('/')));
  if (existsSync(path) && statSync(path).isDirectory()) return send(join(path, 'index.html'), 'no-cache');
  if (extname(path) === '' && existsSync(join(path, 'index.html'))) return send(join(path, 'index.html'), 'no-cache');
  const immutable = urlPath.startsWith('/assets/');
  return send(path, immutable ? 'public, max-age=31536000, immutable' : 'no-cache');
}

/**
 * Headers that let any origin read a model folder's files by range requests:
 * a volunteer page (this origin, or a swarm elsewhere using this server as its
 * weights mirror) must read Content-Range.
 */
export const MODEL_FOLDER_CORS: Record<string, string> = {
  'access-control-allow-origin': '*',
  'access-control-expose-headers': 'Content-Range, Content-Length, Accept-Ranges',
  'cross-origin-resource-policy': 'cross-origin',
};

/** The answer to a CORS preflight for a model folder's file (a Range header that is not a simple one triggers it). */
export function sendPreflight(res: ServerResponse): void {
  res.writeHead(204, {
    ...MODEL_FOLDER_CORS,
    'access-control-allow-methods': 'GET, HEAD, OPTIONS',
    'access-control-allow-headers': 'Range',
    'access-control-max-age': '86400',
  });
  res.end();
}

/** A parsed Range header for a file of `size` bytes: one byte range, 'unsatisfiable' (416), or null to send the whole file. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | null {
  if (header === undefined) return null;
  // One range only; anything else (several ranges, other units, bad syntax) is ignored, as RFC 9110 allows.
  const m = /^bytes=(\d{0,15})-(\d{0,15})$/.exec(header.trim());
  if (m === null || (m[1] === '' && m[2] === '')) return null;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (m[2] !== '' && Number(m[2]) < start) return null;
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}

/**
 * Streams a file, or the one byte range its Range header asks for (206 with
 * Content-Range; 416 when the range starts past the end), with `headers`.
 * False when there is no such file.
 */
export function sendFileRanged(
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  cacheControl: string,
  headers: Record<string, string> = {},
): boolean {
  if (!existsSync(path)) return false;
  const st = statSync(path);
  if (!st.isFile()) return false;
  const base = {
    ...ISOLATION_HEADERS,
    'content-type': MIME[extname(path)] ?? 'application/octet-stream',
    'cache-control': cacheControl,
    'accept-ranges': 'bytes',
    ...headers,
  };
  const range = parseRange(req.headers.range, st.size);
  if (range === 'unsatisfiable') {
    res.writeHead(416, { ...base, 'content-range': `bytes */${st.size}`, 'content-length': '0' });
    res.end();
    return true;
  }
  if (range === null) {
    res.writeHead(200, { ...base, 'content-length': String(st.size) });
    if (req.method === 'HEAD') res.end();
    else streamFile(res, path);
    return true;
  }
  res.writeHead(206, {
    ...base,
    'content-range': `bytes ${range.start}-${range.end}/${st.size}`,
    'content-length': String(range.end - range.start + 1),
  });
  if (req.method === 'HEAD') res.end();
  else streamFile(res, path, { start: range.start, end: range.end });
  return true;
}
