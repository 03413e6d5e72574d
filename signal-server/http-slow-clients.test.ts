// Hostile HTTP clients, integration: a real server on port 0 and raw TCP
// sockets that speak HTTP as an attacker's client would (found by a red-team
// pass): headers or a body trickled to hold connections, paths of 15 KB to
// fill the log, request targets that are not URLs.
import { connect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { serverLog } from './testing/server-log.js';
import { tinyServerForFile } from './testing/tiny-stages.js';

const HEADERS_MS = 600;
const REQUEST_MS = 1_500;

const log = serverLog();
const logLines = log.lines;
const server = tinyServerForFile('webswarm-slow-', {
  logger: log.logger,
  httpTimeouts: { headersMs: HEADERS_MS, requestMs: REQUEST_MS },
});

interface Raw {
  readonly socket: Socket;
  /** What the server sent, so far. */
  text(): string;
  /** Resolves with the ms from connecting to the server closing the connection. */
  readonly closed: Promise<number>;
}

function raw(): Promise<Raw> {
  const { port } = new URL(server().address().url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1');
    let got = '';
    const t0 = performance.now();
    const closed = new Promise<number>((r) => socket.once('close', () => r(performance.now() - t0)));
    socket.on('data', (b: Buffer) => (got += b.toString('latin1')));
    socket.once('error', () => {});
    socket.once('connect', () => resolve({ socket, text: () => got, closed }));
    socket.once('error', reject);
  });
}

async function healthzMs(): Promise<number> {
  const t0 = performance.now();
  expect((await fetch(`${server().address().url}/healthz`)).status).toBe(200);
  return performance.now() - t0;
}

describe('slow HTTP clients', () => {
  it(`hostile: 40 connections trickling headers a byte at a time are answered 408 and closed within the headers timeout (${HEADERS_MS} ms) and a check; others are served meanwhile`, async () => {
    const clients = await Promise.all(Array.from({ length: 40 }, () => raw()));
    const trickle = setInterval(() => {
      for (const c of clients) if (!c.socket.destroyed) c.socket.write(c.text() === '' ? 'G' : '');
    }, 100);
    try {
      for (const c of clients) c.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ');
      expect(await healthzMs()).toBeLessThan(2_000);
      const lived = await Promise.all(clients.map((c) => c.closed));
      // Generous: the timeout plus Node's check interval (1 s here; 30 s by default) and a loaded machine.
      expect(Math.max(...lived)).toBeLessThan(HEADERS_MS + 4_000);
      expect(clients.every((c) => c.text().startsWith('HTTP/1.1 408'))).toBe(true);
    } finally {
      clearInterval(trickle);
    }
  });

  it(`hostile: a body declared 100 MB and trickled is cut off at the request timeout (${REQUEST_MS} ms), not Node's 300 s`, async () => {
    const c = await raw();
    c.socket.write('POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100000000\r\n\r\n');
    const trickle = setInterval(() => c.socket.destroyed || c.socket.write('x'), 100);
    try {
      const lived = await c.closed;
      expect(lived).toBeLessThan(REQUEST_MS + 4_000);
      expect(await healthzMs()).toBeLessThan(2_000);
    } finally {
      clearInterval(trickle);
    }
  });
});

describe('paths and targets a client chooses', () => {
  it.each(['/', '/v1/', '/v1/models/'])(
    'hostile: 200 requests for a 15 KB path under %s write at most 11 short log lines for that address, and short answers',
    async (prefix) => {
      const before = logLines.length;
      const junk = 'a'.repeat(15_000);
      for (let i = 0; i < 200; i++) {
        const res = await fetch(`${server().address().url}${prefix}${junk}`);
        expect(res.status).toBe(404);
        const body = (await res.json()) as { error: { code: string; message: string } };
        expect(body.error.code).toBe(prefix === '/' ? 'ERR_NOT_FOUND' : prefix === '/v1/' ? 'not_found' : 'model_not_found');
        expect(body.error.message.length).toBeLessThan(400);
      }
      // Under /v1 too: before, every answer there was logged with its whole path (a red-team pass wrote 30 MB of log in
      // 2.8 s with 2 000 of them).
      const lines = logLines.slice(before).filter((l) => l.includes('a'.repeat(100)) || l.includes('suppressed'));
      // 10 lines per 10 s per address, then "N more suppressed" when its window ends.
      expect(lines.length).toBeLessThanOrEqual(11);
      expect(Math.max(...lines.map((l) => l.length))).toBeLessThan(1_000);
    },
  );

  it('hostile: request targets that are not URL paths are a 400 naming the target, not a 500; "//x:99999/" is a path', async () => {
    const answer = async (target: string) => {
      const c = await raw();
      c.socket.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      await c.closed;
      return c.text();
    };
    const bad = await answer('http://[');
    expect(bad).toMatch(/^HTTP\/1\.1 400/);
    expect(bad).toContain('ERR_BAD_REQUEST');
    // A path whose first segment is empty (before, read as a URL with host x and port 99999: a 400).
    expect(await answer('//x:99999/')).toMatch(/^HTTP\/1\.1 404/);
    expect(await healthzMs()).toBeLessThan(2_000);
  });
});
