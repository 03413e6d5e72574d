// Integration: a real server on port 0 hands real socket.io-client volunteers
// their ICE servers after the welcome, renews TURN credentials at half-life,
// and never lets the secret or a password out through its logs, /api/*,
// /metrics or the dashboard feed.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io as connect, type Socket } from 'socket.io-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ClientToServerEvents, IceConfig, ServerToClientEvents } from '../shared/protocol/messages.js';
import { PROTOCOL_VERSION } from '../shared/protocol/version.js';
import type { IceOptions } from './ice-config.js';
import { turnCredentials } from './ice-config.js';
import { createLogger } from './log.js';
import { ensureStages, partitionKey } from './models/model-folder.js';
import { createSignalServer, type ServedStages, type SignalServer } from './server.js';

type Client = Socket<ServerToClientEvents, ClientToServerEvents>;
const EVENT_TIMEOUT_MS = 5_000;
const SECRET = 'north-wind-7f3a';
const TTL_S = 2;
const ICE: IceOptions = {
  iceServers: [{ urls: ['stun:127.0.0.1:3478'] }, { urls: ['turn:127.0.0.1:3478?transport=udp', 'turns:127.0.0.1:5349'] }],
  turnSecret: SECRET,
  turnTtlS: TTL_S,
  transportPolicy: 'relay',
};

let cache: string;
let served: ServedStages;
const logLines: string[] = [];
let server: SignalServer;
const clients: Client[] = [];

beforeAll(async () => {
  cache = mkdtempSync(join(tmpdir(), 'webswarm-ice-'));
  const { dir, manifest } = await ensureStages('fixtures/models/tiny-untied', { stages: 2 }, cache);
  served = { dir, manifest, key: partitionKey(3, { stages: 2 }) };
  server = await startServer(ICE);
});

afterEach(() => {
  for (const c of clients.splice(0)) c.disconnect();
});

afterAll(async () => {
  await server.close();
  rmSync(cache, { recursive: true, force: true });
});

async function startServer(ice: IceOptions | undefined): Promise<SignalServer> {
  const s = createSignalServer({
    port: 0,
    host: '127.0.0.1',
    webRoot: null,
    models: [served],
    redundancy: 1,
    // Everything the server logs, at every level, is kept to be searched.
    logger: createLogger('trace', { write: (l: string) => logLines.push(l) }),
    ...(ice === undefined ? {} : { ice }),
  });
  await s.ready;
  return s;
}

function client(url: string, role: 'volunteer' | 'requester' = 'volunteer'): Client {
  const c: Client = connect(url, {
    auth: { protocol: PROTOCOL_VERSION, role },
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
  });
  clients.push(c);
  return c;
}

/** Every `volunteer:ice` a client gets, with the time it came, and the events in order. */
function record(c: Client): { ice: { at: number; m: IceConfig }[]; order: string[] } {
  const r = { ice: [] as { at: number; m: IceConfig }[], order: [] as string[] };
  c.onAny((event: string) => r.order.push(event));
  c.on('volunteer:ice', (m) => r.ice.push({ at: performance.now(), m }));
  return r;
}

async function welcomed(c: Client): Promise<string> {
  const id = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no welcome within ${EVENT_TIMEOUT_MS} ms`)), EVENT_TIMEOUT_MS);
    c.once('volunteer:welcome', ({ volunteerId }) => {
      clearTimeout(timer);
      resolve(volunteerId);
    });
  });
  c.emit('volunteer:hello', { backend: 'wasm', adapter: null, fault: null, clientKey: null });
  return id;
}

describe('ICE configuration over Socket.IO', () => {
  it('follows the welcome, with TURN credentials for this volunteer on the TURN servers only', async () => {
    const c = client(server.address().url);
    const r = record(c);
    const t0 = Math.floor(Date.now() / 1000);
    const id = await welcomed(c);
    await expect.poll(() => r.ice.length, { timeout: EVENT_TIMEOUT_MS }).toBe(1);
    expect(r.order.indexOf('volunteer:welcome')).toBe(0);
    expect(r.order.indexOf('volunteer:ice')).toBeGreaterThan(0);
    const m = r.ice[0]?.m as IceConfig;
    expect(m.iceTransportPolicy).toBe('relay');
    expect(m.iceServers[0]).toEqual({ urls: ['stun:127.0.0.1:3478'] });
    const turn = m.iceServers[1];
    const [expiry, who] = (turn?.username ?? '').split(':');
    expect(who).toBe(id);
    expect(Number(expiry) - t0).toBeGreaterThanOrEqual(TTL_S);
    expect(Number(expiry) - t0).toBeLessThanOrEqual(TTL_S + 1);
    expect(turn).toEqual({ urls: ICE.iceServers[1]?.urls, ...turnCredentials(SECRET, id, Number(expiry)) });
  });

  it('renews the credentials at half their lifetime, while the volunteer stays', async () => {
    const c = client(server.address().url);
    const r = record(c);
    await welcomed(c);
    await expect.poll(() => r.ice.length, { timeout: TTL_S * 3000, interval: 50 }).toBeGreaterThanOrEqual(3);
    const [a, b, d] = r.ice;
    const gapsMs = [(b?.at ?? 0) - (a?.at ?? 0), (d?.at ?? 0) - (b?.at ?? 0)];
    for (const gap of gapsMs) {
      expect(gap).toBeGreaterThan(TTL_S * 500 - 100);
      expect(gap).toBeLessThan(TTL_S * 500 + 400);
    }
    const expiry = (x: typeof a) => Number(x?.m.iceServers[1]?.username?.split(':')[0]);
    // Each renewal is valid beyond the one before (seconds: at least as late), and the last always covers the next renewal.
    expect(expiry(b)).toBeGreaterThanOrEqual(expiry(a));
    expect(expiry(d)).toBeGreaterThan(expiry(a));
  });

  it('goes to volunteers only, not to requesters', async () => {
    const c = client(server.address().url, 'requester');
    const r = record(c);
    await new Promise<void>((resolve) => c.on('connect', resolve));
    c.emit('status:subscribe');
    await expect.poll(() => r.order).toContain('swarm:status');
    expect(r.ice).toEqual([]);
  });

  it('never shows the secret or a password in the logs, /api/*, /metrics or the dashboard', async () => {
    const c = client(server.address().url);
    const r = record(c);
    const id = await welcomed(c);
    await expect.poll(() => r.ice.length, { timeout: EVENT_TIMEOUT_MS }).toBeGreaterThanOrEqual(2); // one renewal too
    const passwords = r.ice.map((x) => x.m.iceServers[1]?.credential ?? '');
    expect(passwords.every((p) => p.length > 0)).toBe(true);
    const dash = client(server.address().url, 'requester');
    const snapshot = new Promise<unknown>((resolve) => dash.once('dashboard:snapshot', resolve));
    dash.emit('dashboard:subscribe');
    const shown = [JSON.stringify(await snapshot)];
    for (const path of ['/api/swarm', '/api/models', '/metrics', '/v1/models'])
      shown.push(await (await fetch(`${server.address().url}${path}`)).text());
    expect(shown[1]).toContain(id); // /api/swarm does list the volunteer
    c.disconnect();
    await expect.poll(() => logLines.join('').includes('left')).toBe(true);
    const everything = [...logLines, ...shown].join('\n');
    expect(logLines.length).toBeGreaterThan(3);
    for (const s of [SECRET, ...passwords]) expect(everything).not.toContain(s);
  });

  it('without ICE settings, hands out no servers and any candidate, once', async () => {
    const local = await startServer(undefined);
    try {
      const c = client(local.address().url);
      const r = record(c);
      await welcomed(c);
      await expect.poll(() => r.ice.length).toBe(1);
      expect(r.ice[0]?.m).toEqual({ iceServers: [], iceTransportPolicy: 'all' });
      await new Promise((resolve) => setTimeout(resolve, 1_200));
      expect(r.ice.length).toBe(1);
    } finally {
      await local.close();
    }
  });
});
