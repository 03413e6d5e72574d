// The cluster attacked from outside: hostile volunteers that speak the real
// protocol (raw socket.io clients, from distinct 127.0.0.x addresses) against
// real servers on port 0 joined by a real redis-server. What they must not
// get: more seats or sockets than one client has on one server, a hearing on
// a process for sessions they are not in, a way round a ban through another process.
import { afterEach, describe, expect, it } from 'vitest';
import type { StageAssignment } from '../../shared/protocol/messages.js';
import { PROTOCOL_VERSION } from '../../shared/protocol/version.js';
import { MAX_VOLUNTEERS_PER_ADDRESS } from '../coordinator/roster.js';
import type { SignalServer } from '../server.js';
import { clusterTestFile, complete, procOf, startCluster, until, watchChannel } from '../testing/cluster-servers.js';
import { type Client, connectClient, next } from '../testing/socket-client.js';
import { SESSIONS_PER_PROC } from './messages.js';

const MODEL = 'fixtures/models/tiny-untied';
/** The vocabulary of MODEL: a step:logits of any other length is refused before it is forwarded. */
const VOCAB = 2048;

const f = clusterTestFile('cluster-attack');
const { servers } = f;
const clients: Client[] = [];

afterEach(() => {
  for (const c of clients.splice(0)) c.disconnect();
});

async function cluster(n: number, publishMs?: number): Promise<{ servers: SignalServer[]; prefix: string }> {
  const timings = publishMs === undefined ? {} : { timings: { publishMs } };
  const c = await startCluster(n, f.redisUrl, { model: MODEL, stages: 3, redundancy: 3, routeWaitMs: 1_000, cache: f.cache, ...timings });
  servers.push(...c.servers);
  return c;
}

/** A raw volunteer of `server` from `address` with `clientKey`: its welcome (id) or the error that refused it. */
async function hello(
  server: SignalServer,
  address: string,
  clientKey: string | null,
): Promise<{ c: Client; id: string | null; code: string | null; assign: Promise<StageAssignment>; errors: string[] }> {
  const c = connectClient(server.address().url, { protocol: PROTOCOL_VERSION, role: 'volunteer' }, address);
  clients.push(c);
  // Every server:error from the start: one may come in the same read as the welcome, before a later listener.
  const errors: string[] = [];
  c.on('server:error', (e) => errors.push(e.code));
  const welcome = next<{ volunteerId: string }>(c, 'volunteer:welcome').then((w) => ({ id: w.volunteerId, code: null }));
  const refused = next<{ code: string }>(c, 'server:error').then((e) => ({ id: null, code: e.code }));
  const assign = next<StageAssignment>(c, 'volunteer:assign');
  assign.catch(() => {});
  c.emit('volunteer:hello', { backend: 'wasm', adapter: null, fault: null, clientKey });
  const first = await Promise.race([welcome, refused]);
  welcome.catch(() => {});
  refused.catch(() => {});
  return { c, ...first, assign, errors };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A challenge is a forward pass the server computes first: on a loaded machine it takes longer than EVENT_TIMEOUT_MS. */
function challengeOf(c: Client): Promise<{ challengeId: number }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no volunteer:challenge within 30 s')), 30_000);
    c.once('volunteer:challenge', (m) => {
      clearTimeout(timer);
      resolve(m);
    });
  });
}

describe('the cluster against hostile volunteers', () => {
  it('relays no report or signal of a volunteer for a session of another process that never opened it on that volunteer', async () => {
    const { servers: s, prefix } = await cluster(2);
    const [a, b] = s as [SignalServer, SignalServer];
    const victim = await hello(a, '127.0.0.21', 'victim-key-1');
    const hostile = await hello(b, '127.0.0.22', 'hostile-key-1');
    await until(
      'each process mirrors the other one',
      () => a.coordinator?.status().volunteers === 2 && b.coordinator?.status().volunteers === 2,
    );
    const inbox = await watchChannel(f.redisUrl, `${prefix}:proc:${procOf(a)}`);
    const errors: string[] = [];
    hostile.c.on('server:error', (e) => errors.push(e.code));
    try {
      // Sessions a would number (its first 50), none of them opened on the hostile volunteer.
      const base = procOf(a) * SESSIONS_PER_PROC;
      const logits = new ArrayBuffer(VOCAB * 4);
      for (let i = 0; i < 50; i++) {
        const sessionId = base + i;
        hostile.c.emit('session:joined', { sessionId, unreached: [victim.id as string] });
        hostile.c.emit('step:digest', { sessionId, step: 0, stage: 0, digest: [1], input: [1], received: [], resets: 0, computeMs: 1 });
        hostile.c.emit('step:logits', { sessionId, step: 0, logits, resets: 0 });
        hostile.c.emit('step:failed', { sessionId, step: 0, code: 'ERR_STEP_TIMEOUT', message: 'x'.repeat(900) });
        hostile.c.emit('signal', { to: victim.id as string, data: { sdp: 'x'.repeat(1000) } });
      }
      await until('the hostile volunteer is answered for all 250', () => errors.length >= 250);
      await sleep(300);
      // Its own process answers it; a never hears of it.
      const count = (code: string) => errors.filter((e) => e === code).length;
      const seen = {
        unknownSession: count('ERR_UNKNOWN_SESSION'),
        notLinked: count('ERR_NOT_LINKED'),
        inbox: Object.fromEntries(inbox.counts),
        inboxBytes: inbox.bytes(),
      };
      expect(seen).toEqual({ unknownSession: 200, notLinked: 50, inbox: {}, inboxBytes: 0 });
    } finally {
      await inbox.stop();
    }
  });

  it(`holds one address to ${MAX_VOLUNTEERS_PER_ADDRESS} volunteers over the whole cluster, also when it says hello to every process at once`, async () => {
    // Publications every 3 s: the hellos to the three processes all land before any of them sees the others'.
    const { servers: s } = await cluster(3, 3_000);
    const n = MAX_VOLUNTEERS_PER_ADDRESS;
    const tries = await Promise.all(
      s.flatMap((server, j) => Array.from({ length: n }, (_, i) => hello(server, '127.0.0.31', `flood-${j}-${i}-key`))),
    );
    const cutOff: string[] = [];
    for (const t of tries) t.c.on('server:error', (e) => cutOff.push(e.code));
    const welcomed = tries.filter((t) => t.id !== null).length;
    // Each process alone let in what it could count: more than one server alone would.
    expect(welcomed).toBeGreaterThan(n);
    const connected = () => tries.filter((t) => t.c.connected).length;
    await until(`${n} stay connected`, () => connected() <= n && s.every((x) => x.coordinator?.status().volunteers === n), 15_000).catch(
      () => {},
    );
    await sleep(500);
    // What one server alone allows is what the cluster keeps: the others are told why and cut off.
    expect({ connected: connected(), seen: s.map((x) => x.coordinator?.status().volunteers) }).toEqual({ connected: n, seen: [n, n, n] });
    expect(cutOff).toEqual(new Array(welcomed - n).fill('ERR_RATE_LIMITED'));
  });

  it('counts a volunteer of another process as ready only once it answered its challenge there, on the stage it was given', async () => {
    const { servers: s } = await cluster(3);
    const [a, b] = s as [SignalServer, SignalServer];
    const silent = await hello(b, '127.0.0.45', 'silent-key-1');
    const assign = await silent.assign;
    const partition = assign.partition === undefined ? {} : { partition: assign.partition };
    const errors: string[] = [];
    silent.c.on('server:error', (e) => errors.push(e.code));
    // A ready for another stage than its own: refused by its process, believed by none.
    silent.c.emit('volunteer:ready', { modelId: assign.modelId, stage: (assign.stage + 1) % 3, stepMs: 0, ...partition });
    await until('the wrong stage is refused', () => errors.includes('ERR_NOT_ASSIGNED'));
    // Its own stage, then silence: the challenge is never answered.
    const challenge = challengeOf(silent.c);
    silent.c.emit('volunteer:ready', { modelId: assign.modelId, stage: assign.stage, stepMs: 0, ...partition });
    await challenge;
    await sleep(1_000); // a few publications
    for (const server of s) {
      expect(server.coordinator?.volunteers().map((v) => [v.id, v.stage, v.ready])).toEqual([[silent.id, assign.stage, false]]);
    }
    // And a request on another process is not routed to it.
    expect((await complete(a, 'It is', 1)).status).toBe(503);
    expect(b.coordinator?.volunteers()[0]?.ready).toBe(false);
  });

  it('refuses, or cuts off at once, on another process, a client evicted a moment ago (a new client key from the same address)', async () => {
    const { servers: s } = await cluster(2);
    const [a, b] = s as [SignalServer, SignalServer];
    expect(await failChallenge(a, '127.0.0.41', 'liar-key-1')).toBe('ERR_CHALLENGE_FAILED');
    // The moment it is told, it comes back through b with a new client key: refused at its hello where b heard of
    // the ban first, else cut off the moment b hears of it (the broadcast and the reconnection race on a loaded machine).
    const again = await hello(b, '127.0.0.41', 'liar-key-2');
    if (again.code === null) await until('b cuts it off', () => again.errors.length > 0, 10_000);
    expect(again.code ?? again.errors[0]).toBe('ERR_BANNED');
  });

  it('cuts off, on every process, the volunteers a ban names that connected before it (the same address, the same client key)', async () => {
    const { servers: s } = await cluster(2);
    const [a, b] = s as [SignalServer, SignalServer];
    // Siblings placed beforehand: one on each process from the liar's address, one on b with its client key.
    const siblings = [
      await hello(a, '127.0.0.51', 'sib-key-a'),
      await hello(b, '127.0.0.51', 'sib-key-b'),
      await hello(b, '127.0.0.52', 'liar-key-5'),
    ];
    const bystander = await hello(b, '127.0.0.53', 'bystander-key');
    const told: string[][] = siblings.map(() => []);
    for (const [i, x] of siblings.entries()) x.c.on('server:error', (e) => told[i]?.push(e.code));
    expect(await failChallenge(a, '127.0.0.51', 'liar-key-5')).toBe('ERR_CHALLENGE_FAILED');
    await until('every sibling is cut off', () => siblings.every((x) => !x.c.connected), 10_000).catch(() => {});
    expect({ told, connected: siblings.map((x) => x.c.connected) }).toEqual({
      told: [['ERR_BANNED'], ['ERR_BANNED'], ['ERR_BANNED']],
      connected: [false, false, false],
    });
    expect(bystander.c.connected).toBe(true);
    await until('both processes count the bystander alone', () => s.every((x) => x.coordinator?.status().volunteers === 1));
  });
});

/** A raw volunteer of `server` that answers its challenge with garbage: the code it is evicted with. */
async function failChallenge(server: SignalServer, address: string, clientKey: string): Promise<string> {
  const liar = await hello(server, address, clientKey);
  const assign = await liar.assign;
  const challenge = challengeOf(liar.c);
  const partition = assign.partition === undefined ? {} : { partition: assign.partition };
  liar.c.emit('volunteer:ready', { modelId: assign.modelId, stage: assign.stage, stepMs: 1, ...partition });
  const evicted = next<{ code: string }>(liar.c, 'server:error');
  liar.c.emit('volunteer:proof', { challengeId: (await challenge).challengeId, digest: Array.from({ length: 33 }, (_, i) => i) });
  return (await evicted).code;
}
