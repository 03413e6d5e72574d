// Test and bench helper: a tiny static HTTP server for a Hugging Face model
// folder, written apart from the webswarm server on purpose (a volunteer must
// work against any static server with range requests and CORS). It answers
// single byte ranges with 206, counts the body bytes it sends, and can be told
// to misbehave: alter bytes of a file, or ignore Range headers.
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export interface StaticFolderOptions {
  /** Rewrites the bytes sent of `file` starting at file offset `start` (a hostile server). */
  readonly tamper?: (file: string, start: number, bytes: Uint8Array) => void;
  /** Answer every request with the whole file (200), as a server without range support does. */
  readonly ignoreRange?: boolean;
  /** Leave Content-Range out of Access-Control-Expose-Headers (browsers then hide it from scripts). */
  readonly hideContentRange?: boolean;
  /** Access-Control-Allow-Origin: `*` by default; null sends none (browsers then keep the answer from scripts). */
  readonly allowOrigin?: string | null;
  /** Send the first half of a range's body (its headers honest), then drop the connection, as a server that dies does. */
  readonly breakOffRanges?: boolean;
}

export interface StaticFolderServer {
  /** The folder's URL, ending with '/'. */
  readonly url: string;
  /** Body bytes sent since the start (or the last reset). */
  bytesSent: number;
  /** Requests served since the start (or the last reset): "GET file range". */
  readonly log: string[];
  reset(): void;
  close(): Promise<void>;
}

function readBytes(path: string, start: number, end: number): Uint8Array {
  const out = new Uint8Array(end - start + 1);
  const fd = openSync(path, 'r');
  try {
    let at = 0;
    while (at < out.byteLength) {
      const n = readSync(fd, out, at, out.byteLength - at, start + at);
      if (n === 0) break;
      at += n;
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

export async function startStaticFolderServer(root: string, o: StaticFolderOptions = {}): Promise<StaticFolderServer> {
  const allowOrigin = o.allowOrigin === undefined ? '*' : o.allowOrigin;
  const cors = {
    ...(allowOrigin === null ? {} : { 'access-control-allow-origin': allowOrigin }),
    'access-control-expose-headers': o.hideContentRange === true ? 'Content-Length' : 'Content-Range, Content-Length',
  };
  const state = { bytesSent: 0, log: [] as string[] };
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { ...cors, 'access-control-allow-methods': 'GET, HEAD', 'access-control-allow-headers': 'Range' }).end();
      return;
    }
    const name = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname.slice(1));
    const path = join(root, name);
    if (!/^[A-Za-z0-9._-]+$/.test(name) || !existsSync(path)) {
      res.writeHead(404, cors).end();
      return;
    }
    const size = statSync(path).size;
    const m = o.ignoreRange === true ? null : /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    let start = 0;
    let end = size - 1;
    let status = 200;
    if (m !== null) {
      start = Number(m[1]);
      end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
      if (start >= size) {
        res.writeHead(416, { ...cors, 'content-range': `bytes */${size}` }).end();
        return;
      }
      status = 206;
    }
    const bytes = readBytes(path, start, end);
    o.tamper?.(name, start, bytes);
    state.log.push(`${req.method} ${name} ${req.headers.range ?? '(whole)'}`);
    res.writeHead(status, {
      ...cors,
      'accept-ranges': 'bytes',
      'content-type': 'application/octet-stream',
      'content-length': String(bytes.byteLength),
      ...(status === 206 ? { 'content-range': `bytes ${start}-${end}/${size}` } : {}),
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    if (o.breakOffRanges === true && status === 206) {
      const half = bytes.subarray(0, Math.floor(bytes.byteLength / 2));
      state.bytesSent += half.byteLength;
      res.write(half, () => res.destroy());
      return;
    }
    state.bytesSent += bytes.byteLength;
    res.end(bytes);
  };
  const server = createServer(handle);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  return {
    url,
    get bytesSent() {
      return state.bytesSent;
    },
    set bytesSent(v: number) {
      state.bytesSent = v;
    },
    log: state.log,
    reset() {
      state.bytesSent = 0;
      state.log.length = 0;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
