import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../signal-server/log.js';
import { optionsFrom, startServer } from '../signal-server/main.js';
import type { SignalServer } from '../signal-server/server.js';
import { freePort } from '../signal-server/testing/redis-server.js';
import { checkServer } from './server-check.js';

let server: SignalServer;
let tmp: string;
beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'webswarm-check-'));
  server = await startServer({ ...optionsFrom({}), port: 0, host: '127.0.0.1', webRoot: tmp, stageCache: tmp }, silentLogger);
});
afterAll(async () => {
  await server?.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('npm run swarm asks the server first', () => {
  it('a running webswarm server passes, its URL without a trailing slash', async () => {
    const url = server.address().url;
    expect(await checkServer(`${url}/`)).toEqual({ ok: true, url });
  });

  it('a port nobody listens on: named, with what to do (before: Playwright’s navigation error with escape codes)', async () => {
    const port = await freePort();
    const check = await checkServer(`http://127.0.0.1:${port}`);
    expect(check).toEqual({
      ok: false,
      message: `no webswarm server answers at http://127.0.0.1:${port} (ECONNREFUSED): start one with npm start, or name it with --server`,
    });
  });

  it('another HTTP server, one that never answers, and what is not an http URL are told apart', async () => {
    const other = createServer((req, res) => {
      if (req.url === '/healthz') res.writeHead(404).end('not here');
      // /slow/healthz is never answered.
    });
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
    try {
      expect(await checkServer(url)).toEqual({
        ok: false,
        message: `${url} answers, but not as a webswarm server (GET /healthz answered 404, not {"status":"ok"})`,
      });
      expect(await checkServer(`${url}/slow`, 300)).toEqual({
        ok: false,
        message: `no webswarm server answers at ${url}/slow (no answer in 0.3 s): start one with npm start, or name it with --server`,
      });
    } finally {
      other.closeAllConnections();
      await new Promise((r) => other.close(r));
    }
    expect(await checkServer('ftp://127.0.0.1:8080')).toMatchObject({ ok: false, message: expect.stringContaining('http:// or https://') });
    expect(await checkServer('not a url')).toMatchObject({
      ok: false,
      message: '--server must be a URL such as http://127.0.0.1:8080, got "not a url"',
    });
  });
});
