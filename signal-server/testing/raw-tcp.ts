// Raw TCP clients for the HTTP boundary's tests: a connection from a chosen loopback address that writes what it is
// told and reads (or not) what the server sends, and the descriptors this process holds open on test files.
import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import type { SignalServer } from '../server.js';
import { serverLog } from './server-log.js';
import { tinyServerForFile } from './tiny-stages.js';

/**
 * A real server (tinyServerForFile) whose web root holds `assets` (name → bytes, served under /assets/), with a send
 * timeout of `sendMs`, for the file's tests; its log's lines. The web root (a temporary folder named by `prefix`) is
 * removed after them.
 */
export function assetServerForFile(
  prefix: string,
  assets: Readonly<Record<string, number>>,
  sendMs: number,
): { server: () => SignalServer; lines: readonly string[] } {
  const webRoot = mkdtempSync(join(tmpdir(), prefix));
  mkdirSync(join(webRoot, 'assets'));
  for (const [name, bytes] of Object.entries(assets)) writeFileSync(join(webRoot, 'assets', name), Buffer.alloc(bytes, 7));
  afterAll(() => rmSync(webRoot, { recursive: true, force: true }));
  const log = serverLog();
  const server = tinyServerForFile(prefix, { logger: log.logger, webRoot, httpTimeouts: { headersMs: 5_000, requestMs: 10_000, sendMs } });
  return { server, lines: log.lines };
}

export interface RawTcp {
  readonly socket: Socket;
  /** What the server sent so far, as latin1 text. */
  text(): string;
  /** Bytes received so far. */
  received(): number;
  /** Whether the connection is still open (a paused client sees a close only once it reads again). */
  isOpen(): boolean;
  /** Reads about `bytes` more (whole chunks), then pauses again. */
  read(bytes: number): void;
  /** Resolves with the ms from connecting to the connection's close. */
  readonly closed: Promise<number>;
}

/** A connection to `url`'s port on 127.0.0.1 from `address`, once connected; `paused`: reads nothing until `read`. */
export function rawTcp(url: string, address = '127.0.0.1', paused = false): Promise<RawTcp> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ port: Number(port), host: '127.0.0.1', localAddress: address });
    let text = '';
    let got = 0;
    let until = paused ? 0 : Number.POSITIVE_INFINITY;
    let open = true;
    const t0 = performance.now();
    const closed = new Promise<number>((r) =>
      socket.once('close', () => {
        open = false;
        r(performance.now() - t0);
      }),
    );
    socket.on('data', (b: Buffer) => {
      got += b.byteLength;
      if (text.length < 1 << 20) text += b.toString('latin1');
      if (got >= until) socket.pause();
    });
    socket.once('connect', () => {
      socket.off('error', reject);
      socket.on('error', () => {});
      if (paused) socket.pause();
      const read = (bytes: number) => {
        until = got + bytes;
        socket.resume();
      };
      resolve({ socket, text: () => text, received: () => got, isOpen: () => open, read, closed });
    });
    socket.once('error', reject);
  });
}

/** This process's open file descriptors whose path contains `fragment` (the server under test runs in it). */
export function openFiles(fragment: string): number {
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(join('/proc/self/fd', fd)).includes(fragment);
    } catch {
      return false; // closed meanwhile (the listing's own descriptor)
    }
  }).length;
}
