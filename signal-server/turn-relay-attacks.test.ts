// A stranger holding TURN credentials, against coturn run with the settings
// the project ships (deploy/turnserver.conf). Anyone who opens the volunteer
// page is handed such credentials (TURN_SECRET), so they are public: the
// stranger here gets them as every volunteer does (a real server on port 0,
// a real socket.io-client hello) and then speaks TURN itself
// (testing/turn-client.ts) to Debian's coturn on loopback. It asks for relays
// into loopback, private and cloud-metadata addresses and for a TCP relay
// (which would let it open TCP connections to, say, Redis on the private
// network); each must be refused. The same requests against coturn as
// README described it before that file (`use-auth-secret`, a realm, coturn's
// defaults), with loopback standing for the private network this machine
// cannot reach, are granted: the attack is real, and the test can fail.
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io as connect, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClientToServerEvents, IceConfig, ServerToClientEvents } from '../shared/protocol/messages.js';
import { PROTOCOL_VERSION } from '../shared/protocol/version.js';
import { type Allocation, allocate, TCP, type TurnClientOptions, UDP } from '../testing/turn-client.js';
import { SHIPPED_TURN_CONFIG, startTurnServer, type TurnServer } from '../testing/turn-server.js';
import { turnCredentials } from './ice-config.js';
import { ensureStages, partitionKey } from './models/model-folder.js';
import { createSignalServer, type SignalServer } from './server.js';

type Client = Socket<ServerToClientEvents, ClientToServerEvents>;
const EVENT_TIMEOUT_MS = 5_000;
/** How long a relayed datagram gets to arrive (loopback: well under a millisecond when it is sent at all). */
const ARRIVAL_WAIT_MS = 500;
const SECRET = randomBytes(16).toString('hex');

/** Addresses a stranger would aim a relay at: this host, its private networks, the cloud's metadata service. */
const FORBIDDEN_V4 = [
  '127.0.0.1', // the signalling server (HOST=127.0.0.1 behind its proxy), Redis on the same machine
  '127.1.2.3',
  '10.1.2.3', // a private network: Redis for several servers, the servers themselves
  '172.16.5.4',
  '192.168.1.1',
  '169.254.169.254', // cloud metadata (credentials of the machine's role)
  '100.64.0.1', // carrier-grade NAT's shared space
  '0.0.0.0',
  '224.0.0.1', // multicast
  '192.0.2.1',
  '198.18.0.1',
  '255.255.255.255',
];
const FORBIDDEN_V6 = [
  '::1',
  '::a00:1', // IPv4-compatible
  '::ffff:0:a00:1', // SIIT
  'fe80::1',
  'fec0::1',
  'fd00::2',
  'fc00::1',
  'fd00:ec2::254', // a cloud's metadata service over IPv6
  '64:ff9b::a00:1',
  '2001:db8::1',
  '3fff::1',
  '2002:a00:1::1',
  '100::1',
  '5f00::1',
];
/** Public addresses: a volunteer's peer may be any of them (nothing is sent to them: a permission sends no packet). */
const PUBLIC_V4 = ['8.8.8.8', '93.184.216.34', '1.1.1.1'];
const PUBLIC_V6 = ['2606:4700::1111', '2001:4860:4860::8888'];

let cache: string;
let signal: SignalServer;
/** coturn with deploy/turnserver.conf, as an operator runs it. */
let shipped: TurnServer;
/** coturn with its defaults (`use-auth-secret` and a realm), loopback allowed to stand for a private network. */
let defaults: TurnServer;
const clients: Client[] = [];

beforeAll(async () => {
  cache = mkdtempSync(join(tmpdir(), 'webswarm-turn-attack-'));
  const { dir, manifest } = await ensureStages('fixtures/models/tiny-untied', { stages: 2 }, cache);
  [shipped, defaults] = await Promise.all([
    startTurnServer(SECRET, { shipped: true, loopbackPeers: false }),
    startTurnServer(SECRET, { shipped: false, loopbackPeers: true }),
  ]);
  signal = createSignalServer({
    port: 0,
    host: '127.0.0.1',
    webRoot: null,
    models: [{ dir, manifest, key: partitionKey(3, { stages: 2 }) }],
    redundancy: 1,
    ice: {
      iceServers: [{ urls: [shipped.url] }, { urls: [defaults.url] }],
      turnSecret: SECRET,
      turnTtlS: 3600,
      transportPolicy: 'relay',
    },
  });
  await signal.ready;
});

afterAll(async () => {
  for (const c of clients.splice(0)) c.disconnect();
  await signal?.close();
  await Promise.all([shipped?.close(), defaults?.close()]);
  rmSync(cache, { recursive: true, force: true });
});

/** What any stranger gets by saying hello as a volunteer: the TURN user name and password the server hands it. */
async function strangersCredentials(): Promise<{ username: string; password: string }> {
  const c: Client = connect(signal.address().url, {
    auth: { protocol: PROTOCOL_VERSION, role: 'volunteer' },
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
  });
  clients.push(c);
  const ice = new Promise<IceConfig>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no volunteer:ice within ${EVENT_TIMEOUT_MS} ms`)), EVENT_TIMEOUT_MS);
    c.once('volunteer:ice', (m) => {
      clearTimeout(timer);
      resolve(m);
    });
  });
  c.emit('volunteer:hello', { backend: 'wasm', adapter: null, fault: null, clientKey: null });
  const server = (await ice).iceServers[0];
  if (server?.username === undefined || server.credential === undefined) throw new Error('no TURN credentials were handed out');
  return { username: server.username, password: server.credential };
}

function on(turn: TurnServer, creds: { username: string; password: string }, over: 'udp' | 'tcp', host = '127.0.0.1'): TurnClientOptions {
  return { host, port: turn.port, ...creds, over };
}

/** Each address with the code a CreatePermission for it got. */
async function permissions(turn: TurnServer, family: 4 | 6, ips: readonly string[]): Promise<Record<string, number>> {
  const creds = await strangersCredentials();
  const a = await allocate(on(turn, creds, 'udp', family === 4 ? '127.0.0.1' : '::1'), UDP, family);
  try {
    expect(a.code, a.reason).toBe(200);
    const out: Record<string, number> = {};
    for (const ip of ips) out[ip] = await a.permit(ip);
    return out;
  } finally {
    a.close();
  }
}

const every = (ips: readonly string[], code: number) => Object.fromEntries(ips.map((ip) => [ip, code]));

describe('TURN credentials in a stranger’s hands, against deploy/turnserver.conf', () => {
  it('relay to public IPv4 addresses only: loopback, private, link-local (metadata) and reserved ones are refused (403)', async () => {
    expect(await permissions(shipped, 4, [...FORBIDDEN_V4, ...PUBLIC_V4])).toEqual({
      ...every(FORBIDDEN_V4, 403),
      ...every(PUBLIC_V4, 200),
    });
    // coturn's defaults grant the same stranger the private network and the metadata service.
    const granted = await permissions(defaults, 4, ['10.1.2.3', '172.16.5.4', '192.168.1.1', '169.254.169.254', '100.64.0.1']);
    expect(granted).toEqual(every(Object.keys(granted), 200));
  });

  it('the same over IPv6: loopback, unique local, link-local, NAT64 and reserved ranges refused', async () => {
    expect(await permissions(shipped, 6, [...FORBIDDEN_V6, ...PUBLIC_V6])).toEqual({
      ...every(FORBIDDEN_V6, 403),
      ...every(PUBLIC_V6, 200),
    });
    const granted = await permissions(defaults, 6, ['fd00::2', 'fe80::1', '64:ff9b::a00:1']);
    expect(granted).toEqual(every(Object.keys(granted), 200));
  });

  it('no TCP relay: with coturn’s defaults the stranger has coturn open a TCP connection into the network; here it is refused (442)', async () => {
    // A TCP service on the network behind the TURN server (Redis, the signalling server): loopback stands for it.
    const accepted: string[] = [];
    const service: Server = createServer((s) => {
      accepted.push(`${s.remoteAddress}`);
      s.destroy();
    });
    await new Promise<void>((resolve) => service.listen(0, '127.0.0.1', resolve));
    const port = (service.address() as { port: number }).port;
    try {
      const creds = await strangersCredentials();
      const open = await allocate(on(defaults, creds, 'tcp'), TCP);
      try {
        expect(open.code, open.reason).toBe(200);
        expect(await open.connect('127.0.0.1', port)).toBe(200);
        await expect.poll(() => accepted.length, { timeout: EVENT_TIMEOUT_MS }).toBe(1);
      } finally {
        open.close();
      }

      const refused = await allocate(on(shipped, creds, 'tcp'), TCP);
      refused.close();
      expect(refused.code, refused.reason).toBe(442); // Unsupported Transport Protocol
      expect(accepted).toHaveLength(1);
    } finally {
      await new Promise((resolve) => service.close(resolve));
    }
  });

  it('relays no datagram to a refused peer, nor to its IPv4-mapped IPv6 form', async () => {
    const got: string[] = [];
    const listener: UdpSocket = createSocket('udp4');
    await new Promise<void>((resolve) => listener.bind(0, '127.0.0.1', resolve));
    listener.on('message', (m) => got.push(m.toString()));
    const port = listener.address().port;
    const creds = await strangersCredentials();
    try {
      // The control: with loopback allowed, a Send indication reaches the listener (so the check below can fail).
      const open = await allocate(on(defaults, creds, 'udp'), UDP);
      expect(await open.permit('127.0.0.1')).toBe(200);
      open.send('127.0.0.1', port, Buffer.from('through coturn’s defaults'));
      await expect.poll(() => got, { timeout: EVENT_TIMEOUT_MS }).toEqual(['through coturn’s defaults']);
      open.close();

      const v4 = await allocate(on(shipped, creds, 'udp'), UDP);
      expect(await v4.permit('127.0.0.1')).toBe(403);
      v4.send('127.0.0.1', port, Buffer.from('v4, refused'));
      // coturn grants a permission for the mapped form (its ranges cannot name those addresses), but a relay
      // bound to an IPv6 address cannot send to an IPv4 one: the datagram never leaves.
      const v6 = await allocate(on(shipped, creds, 'udp', '::1'), UDP, 6);
      expect(await v6.permit('::ffff:127.0.0.1')).toBe(200);
      v6.send('::ffff:127.0.0.1', port, Buffer.from('v4-mapped'));
      await new Promise((resolve) => setTimeout(resolve, ARRIVAL_WAIT_MS));
      v4.close();
      v6.close();
      expect(got).toEqual(['through coturn’s defaults']);
    } finally {
      listener.close();
    }
  });

  it('one credential holds at most user-quota relays at once (486 beyond); coturn’s defaults give it every one it asks for', async () => {
    const quota = Number(/^user-quota=(\d+)$/m.exec(readFileSync(SHIPPED_TURN_CONFIG, 'utf8'))?.[1]);
    expect(quota).toBe(256);
    const creds = await strangersCredentials();
    const held: Allocation[] = [];
    try {
      for (const turn of [shipped, defaults]) {
        const codes: number[] = [];
        for (let i = 0; i <= quota; i++) {
          const a = await allocate(on(turn, creds, 'udp'), UDP);
          held.push(a);
          codes.push(a.code);
        }
        const granted = codes.filter((c) => c === 200).length;
        if (turn === shipped) {
          expect(granted).toBe(quota);
          expect(codes.at(-1)).toBe(486); // Allocation Quota Reached
        } else expect(granted).toBe(quota + 1);
      }
      // A relay given back makes room for another (coturn frees its place at its next sweep, about a second on).
      const last = held[quota - 1];
      expect(await last?.refresh(0)).toBe(200);
      const t0 = performance.now();
      let again = 0;
      while (again !== 200 && performance.now() - t0 < 10_000) {
        const a = await allocate(on(shipped, creds, 'udp'), UDP);
        held.push(a);
        again = a.code;
        if (again !== 200) await new Promise((r) => setTimeout(r, 100));
      }
      process.stderr.write(`quota freed after ${(performance.now() - t0).toFixed(0)} ms\n`);
      expect(again).toBe(200);
    } finally {
      for (const a of held) a.close();
    }
  });

  it('a new allocation needs a credential before its expiry, made with the server’s secret', async () => {
    const creds = await strangersCredentials();
    const volunteerId = creds.username.split(':')[1] ?? '';
    const live = await allocate(on(shipped, creds, 'udp'), UDP);
    live.close();
    expect(live.code, live.reason).toBe(200);
    const old = turnCredentials(SECRET, volunteerId, Math.floor(Date.now() / 1000) - 5);
    const expired = await allocate(on(shipped, { username: old.username, password: old.credential }, 'udp'), UDP);
    expired.close();
    expect(expired.code).toBe(401);
    const forged = await allocate(
      on(shipped, { ...creds, password: turnCredentials('not the secret', volunteerId, 0).credential }, 'udp'),
      UDP,
    );
    forged.close();
    expect(forged.code).toBe(401);
  });
  it('an allocation made before its credential expired is refreshed after (a volunteer’s relayed links outlive TURN_TTL_S)', async () => {
    // The server renews a volunteer's credentials at half their lifetime for the connections made after; the
    // connections made before keep their allocation, whose refreshes coturn checks against the key it took then.
    const creds = await strangersCredentials();
    const volunteerId = creds.username.split(':')[1] ?? '';
    const soon = turnCredentials(SECRET, volunteerId, Math.floor(Date.now() / 1000) + 2);
    const a = await allocate(on(shipped, { username: soon.username, password: soon.credential }, 'udp'), UDP);
    try {
      expect(a.code, a.reason).toBe(200);
      await new Promise((resolve) => setTimeout(resolve, 3_100));
      expect(await a.refresh(600)).toBe(200);
      expect(await a.permit(PUBLIC_V4[0] ?? '')).toBe(200);
    } finally {
      a.close();
    }
    // A new allocation with it is refused by then.
    const late = await allocate(on(shipped, { username: soon.username, password: soon.credential }, 'udp'), UDP);
    late.close();
    expect(late.code).toBe(401);
  });
});
