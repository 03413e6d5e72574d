// Several servers, one swarm: real servers on port 0 in this process, joined
// by a real redis-server on loopback (tools/install-redis.sh), with node
// volunteers (real socket.io clients computing with onnxruntime) connected to
// chosen servers. The crash of a server process is processes.test.ts's; hostile volunteers are cluster-attack.test.ts's.
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GREEDY } from '../../shared/model/sampling.js';
import { encodeFrame } from '../../shared/protocol/frames.js';
import { packFrameMessages } from '../../shared/protocol/messages.js';
import { MAX_SESSIONS_PER_REPLICA } from '../../shared/swarm/replica-core.js';
import { ensureStages, partitionKey } from '../models/model-folder.js';
import { ReferenceRunner } from '../reference/reference-runner.js';
import { createSignalServer, type SignalServer } from '../server.js';
import { complete as ask, CLUSTER_TIMINGS, clusterTestFile, startCluster } from '../testing/cluster-servers.js';
import { NodeVolunteer, type NodeVolunteerOptions } from '../testing/node-volunteer.js';
import { startRedisServer } from '../testing/redis-server.js';
import { connectClient, helloVolunteer } from '../testing/socket-client.js';
import { SESSIONS_PER_PROC } from './messages.js';
import { CONNECT_DEADLINE_MS, redacted, redactedUrl } from './redis-link.js';

const MODEL = 'fixtures/models/tiny-untied';
const STAGES = 3;
const PROMPT = 'It is a truth universally acknowledged';
const TOKENS = 8;
const WAIT_MS = 30_000;

let reference: ReferenceRunner;
let expected: number[];
/** The key prefix of the last cluster started. */
let prefix = '';
const f = clusterTestFile('cluster');
const { servers, volunteers } = f;

beforeAll(async () => {
  const { dir } = await ensureStages(MODEL, { stages: STAGES }, f.cache);
  reference = await ReferenceRunner.fromStageDir(dir);
  expected = (await reference.generateIds(reference.tokenizer.encode(PROMPT), TOKENS, GREEDY)).tokens;
});

afterAll(async () => {
  await reference?.close();
});

/** `n` servers of one cluster (a key prefix of their own: the tests do not see each other's). */
async function cluster(
  n: number,
  shape: { stages: number; redundancy: number; routeWaitMs: number; fallback?: 'stage' } = {
    stages: STAGES,
    redundancy: 3,
    routeWaitMs: 10_000,
  },
): Promise<SignalServer[]> {
  const started = await startCluster(n, f.redisUrl, { model: MODEL, ...shape, cache: f.cache });
  prefix = started.prefix;
  servers.push(...started.servers);
  return started.servers;
}

function volunteer(server: SignalServer, key: string, options: NodeVolunteerOptions = {}): NodeVolunteer {
  const v = new NodeVolunteer(server.address().url, { clientKey: key, ...options });
  volunteers.push(v);
  return v;
}

async function until(what: string, test: () => boolean): Promise<void> {
  for (const deadline = Date.now() + WAIT_MS; !test(); ) {
    if (Date.now() > deadline) throw new Error(`not within ${WAIT_MS} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const ready = (s: SignalServer) => s.coordinator?.volunteers().filter((v) => v.ready).length ?? 0;

function complete(s: SignalServer, maxTokens = TOKENS): ReturnType<typeof ask> {
  return ask(s, PROMPT, maxTokens);
}

/** A server of the test model on `redisUrl`, alone in its cluster. */
async function serverOn(redisUrl: string, cluster?: { prefix: string } & typeof CLUSTER_TIMINGS): Promise<SignalServer> {
  const { dir, manifest } = await ensureStages(MODEL, { stages: STAGES }, f.cache);
  return createSignalServer({
    port: 0,
    host: '127.0.0.1',
    webRoot: null,
    models: [{ dir, manifest, key: partitionKey(3, { stages: STAGES }) }],
    redisUrl,
    ...(cluster === undefined ? {} : { cluster }),
  });
}

/** Why `server` did not start ('' if it did). */
const startFailure = (server: SignalServer) =>
  server.ready.then(
    () => '',
    (e: unknown) => (e as Error).message,
  );

describe('several servers, one swarm', () => {
  it('refuses to start, naming Redis, when Redis cannot be reached', async () => {
    const server = await serverOn('redis://:hunter2@127.0.0.1:1');
    // The URL's password is not in the message (a stranger's pass found it in every log line naming Redis), nor is
    // the prefix said twice.
    const message = await startFailure(server);
    expect(message).toMatch(/^cannot reach Redis at redis:\/\/\*\*\*@127\.0\.0\.1:1: /);
    expect(message).not.toContain('hunter2');
    expect(message.split('cannot reach Redis').length).toBe(2);
    await server.close();
    expect(redacted('joined through redis://default:pw@10.0.0.5:6379 and rediss://u:p@h')).toBe(
      'joined through redis://***@10.0.0.5:6379 and rediss://***@h',
    );
    // A password holding '@' (node-redis splits at the last one; before, the part after the first showed).
    expect(redacted('cannot reach Redis at redis://:hunter@2sekrit-tail@127.0.0.1:1/0?x=a@b: refused')).toBe(
      'cannot reach Redis at redis://***@127.0.0.1:1/0?x=a@b: refused',
    );
    // A password holding a space or a tab (node-redis takes it) ends the pattern: the URL and its secrets are
    // hidden by value, wherever they appear, decoded too.
    for (const url of [
      'redis://:correct horse battery@10.0.0.5:6379',
      'redis://:tab\there-pw@10.0.0.5:6379',
      'redis://user:p%40ss%20word@h:1/2',
    ]) {
      const secret = url.includes('horse') ? 'correct horse battery' : url.includes('tab') ? 'tab\there-pw' : 'p@ss word';
      const line = redacted(`joined through ${url}; the server said: WRONGPASS ${secret} is wrong`, url);
      expect(line, url).not.toContain(secret);
      expect(line).toContain('***');
    }
    expect(redactedUrl('redis://:correct horse@10.0.0.5:6379/1')).toBe('redis://***@10.0.0.5:6379/1');
    expect(redactedUrl('redis://10.0.0.5:6379')).toBe('redis://10.0.0.5:6379');
    expect(redactedUrl('not a url :pw@')).toBe('(a URL that does not parse; not shown)');
  });

  it(`refuses to start, naming Redis, when the port accepts and never answers (within ${CONNECT_DEADLINE_MS / 1000} s)`, async () => {
    // A port that takes connections and says nothing: a paused Redis, another service, a port-forward whose end is gone.
    const held = new Set<Socket>();
    const mute = createServer((socket) => {
      held.add(socket);
      // Read what it is sent (and its end), answer nothing.
      socket.resume();
      socket.on('close', () => held.delete(socket));
    });
    await new Promise<void>((resolve) => mute.listen(0, '127.0.0.1', resolve));
    try {
      const port = (mute.address() as AddressInfo).port;
      const t0 = performance.now();
      const server = await serverOn(`redis://:hunter2@127.0.0.1:${port}`);
      const message = await startFailure(server);
      // Before: no line and no end (an operator's start waited for good).
      expect(message).toBe(
        `cannot reach Redis at redis://***@127.0.0.1:${port}: no answer within ${CONNECT_DEADLINE_MS / 1000} s (the port accepts connections but says nothing: a paused Redis, or another service there?)`,
      );
      expect(performance.now() - t0).toBeLessThan(CONNECT_DEADLINE_MS + 5_000);
      await server.close();
      // Its connections were dropped: nothing left open on the mute port.
      await expect.poll(() => held.size, { timeout: 5_000 }).toBe(0);
    } finally {
      for (const s of held) s.destroy();
      await new Promise<void>((resolve) => mute.close(() => resolve()));
    }
  }, 30_000);

  it('refuses to start, naming Redis, when Redis asks for a password the URL does not give', async () => {
    const guarded = await startRedisServer({ password: 'sekrit-pw' });
    try {
      const server = await serverOn(guarded.url);
      const message = await startFailure(server);
      // Before: Redis's bare words ("NOAUTH Authentication required."), naming neither Redis nor where.
      expect(message).toBe(`cannot reach Redis at ${guarded.url}: NOAUTH Authentication required.`);
      await server.close();
    } finally {
      await guarded.stop();
    }
  });

  it("serves a requester on one server with the volunteers of the others, and keeps a volunteer's record when its server goes", async () => {
    const [a, b, c] = (await cluster(3)) as [SignalServer, SignalServer, SignalServer];
    // 5 volunteers on b, 4 on c, none on a; each waits until a sees the one before (stages are balanced over all).
    for (let i = 0; i < 9; i++) {
      volunteer(i < 5 ? b : c, `client-${i}`, { reconnect: () => c.address().url });
      await until(`a sees volunteer ${i}`, () => (a.coordinator?.status().volunteers ?? 0) === i + 1);
    }
    await until('a sees 9 ready volunteers', () => ready(a) === 9);
    expect(a.coordinator?.status().replicasPerStage).toEqual([3, 3, 3]);
    const first = await complete(a);
    expect(first.code).toBeUndefined();
    expect(first.tokens).toEqual(expected);
    const onB = new Set(volunteers.slice(0, 5).map((v) => v.id));
    const onC = new Set(volunteers.slice(5).map((v) => v.id));
    const route = (first.route ?? []).flat();
    expect(route).toHaveLength(9);
    expect(route.every((id) => onB.has(id) || onC.has(id))).toBe(true);
    expect(route.some((id) => onB.has(id)) && route.some((id) => onC.has(id))).toBe(true);
    // Every one of them agreed at every step: a record of TOKENS agreements each, kept by its own server.
    const record = (id: string) => c.coordinator?.audit.get(id).agreed ?? 0;
    const moved = volunteers[0] as NodeVolunteer;
    await until("c sees b's volunteers' records", () => record(moved.id as string) === TOKENS);

    // b goes: its volunteers connect to c again, where their records follow them (their client keys).
    await b.close();
    servers.splice(servers.indexOf(b), 1);
    await until("b's volunteers are back, on c", () =>
      volunteers.slice(0, 5).every((v) => v.reconnections === 1 && v.id !== null && !onB.has(v.id)),
    );
    await until('9 ready again', () => ready(a) === 9);
    expect(record(moved.id as string)).toBe(TOKENS);
    const again = await complete(a);
    expect(again.tokens).toEqual(expected);
  });

  it('the fallback: a server computes a stage short of volunteers with the volunteers of another server, frames through Redis', async () => {
    const [a, b] = (await cluster(2, { stages: STAGES, redundancy: 2, routeWaitMs: 1_000, fallback: 'stage' })) as [
      SignalServer,
      SignalServer,
    ];
    // 5 volunteers for 3 stages × r = 2, all on b: one stage is short of a replica.
    for (let i = 0; i < 5; i++) {
      volunteer(b, `fallback-${i}`);
      await until(`a sees volunteer ${i}`, () => (a.coordinator?.status().volunteers ?? 0) === i + 1);
    }
    await until('a sees 5 ready volunteers', () => ready(a) === 5);
    const short = a.coordinator?.status().replicasPerStage.indexOf(1) ?? -1;
    expect(short).toBeGreaterThanOrEqual(0);
    const res = await fetch(`${a.address().url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0 }),
    });
    const body = (await res.json()) as { error?: unknown; webswarm?: { tokens: number[]; server_stages: number[]; route: string[][] } };
    expect(body.error).toBeUndefined();
    expect(res.status).toBe(200);
    // a's own replica computed the short stage, on the frames of b's volunteers of the stage before it (with the mesh
    // loop, the last stage's tokens for stage 0), and fed b's volunteers of the stage after it.
    expect(body.webswarm?.tokens).toEqual(expected);
    expect(body.webswarm?.server_stages).toEqual([short]);
    expect(body.webswarm?.route?.[short]).toEqual([`server:${short}`]);
    const onB = new Set(volunteers.map((v) => v.id));
    const others = (body.webswarm?.route ?? []).filter((_, stage) => stage !== short).flat();
    expect(others).toHaveLength(4);
    expect(others.every((id) => onB.has(id))).toBe(true);

    // A stranger on b (registered, never ready) sends the server replica frames that name the sessions of every
    // process, while a request runs: each is refused where its session is (a's link check), and the answer is the same.
    const { c: stranger } = await helloVolunteer(connectClient(b.address().url));
    const refused: string[] = [];
    stranger.on('server:error', (e) => refused.push(e.code));
    const again = fetch(`${a.address().url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0 }),
    });
    const hidden = reference.manifest.model.hiddenSize;
    for (let round = 0; round < 10; round++) {
      const forged = [1, 2, 3, 4].flatMap((proc) =>
        [1, 2, 3, 4].flatMap((n) =>
          encodeFrame({
            sessionId: proc * SESSIONS_PER_PROC + n,
            step: round,
            stage: Math.max(0, short - 1),
            replica: 0,
            dims: [1, 1, hidden],
            data: new Float32Array(hidden).fill(7),
          }),
        ),
      );
      stranger.emit('frame', { to: `server:${short}`, data: packFrameMessages(forged) });
      await new Promise((r) => setTimeout(r, 20));
    }
    const second = (await (await again).json()) as { webswarm?: { tokens: number[]; server_stages: number[] } };
    expect(second.webswarm?.tokens).toEqual(expected);
    expect(second.webswarm?.server_stages).toEqual([short]);
    await until('the stranger is refused', () => refused.includes('ERR_NOT_LINKED'));
    stranger.disconnect();
  });

  it('closes within seconds when its Redis has gone away', async () => {
    const own = await startRedisServer();
    const server = await serverOn(own.url, { prefix: 'alone', ...CLUSTER_TIMINGS });
    await server.ready;
    await own.stop();
    const t0 = performance.now();
    await server.close();
    expect(performance.now() - t0).toBeLessThan(5_000);
  });

  it("counts a replica's sessions over every server: one full with another's sessions is not routed (no no-show)", async () => {
    const [a, b] = (await cluster(2, { stages: 1, redundancy: 1, routeWaitMs: 1_500 })) as [SignalServer, SignalServer];
    // One volunteer on b, 100 ms a step: a's sixteen 20-token generations hold it for about 2 s.
    const slow = volunteer(b, 'client-slow', { fault: { delayMs: 100, output: (_step, d) => d } });
    await until('a sees it ready', () => ready(a) === 1);
    const full = Array.from({ length: MAX_SESSIONS_PER_REPLICA }, () => complete(a, 20));
    await until('a runs all sixteen', () => a.coordinator?.activeSessions === MAX_SESSIONS_PER_REPLICA);
    await new Promise((r) => setTimeout(r, 300)); // their session:open reach the volunteer's own process, b
    const refused = await complete(b, 4);
    // Busy, after the route wait: never routed to a replica that would refuse the session.
    expect(refused.code).toBe('ERR_BUSY');
    for (const r of await Promise.all(full)) expect(r.code).toBeUndefined();
    expect(slow.errors).toEqual([]);
    // And once they are done, b routes it again.
    expect((await complete(b, 4)).code).toBeUndefined();
  });

  it('drops a mirrored volunteer that its process no longer lists (a message lost on the way)', async () => {
    const [a, b] = (await cluster(2)) as [SignalServer, SignalServer];
    const client = createClient({ url: f.redisUrl });
    await client.connect();
    try {
      // A volunteer said to be b's or a's (whichever process is listed first) that no process's hash holds.
      const [proc] = (await client.sMembers(`${prefix}:procs`)).map(Number);
      const ghost = {
        id: 'ghost',
        keys: [],
        backend: 'wasm',
        adapter: null,
        stage: 0,
        ready: true,
        stepMs: 1,
        proven: true,
        joinedAt: 1,
        agreed: 0,
        disagreed: 0,
        sessions: 0,
        partition: a.coordinator?.partitionKey,
        vouched: true,
      };
      await client.publish(`${prefix}:bus`, JSON.stringify({ t: 'vol', proc, v: ghost }));
      const seen = () => (a.coordinator?.status().volunteers ?? 0) + (b.coordinator?.status().volunteers ?? 0);
      await until('the other process mirrors it', () => seen() === 1);
      await until('the next resync drops it', () => seen() === 0);
    } finally {
      client.destroy();
    }
  });

  it('keeps a ban made on one server on the others, and on a server that joins later', async () => {
    const [a, b] = (await cluster(2)) as [SignalServer, SignalServer];
    // A volunteer answers its challenge with garbage on a: evicted, its client key banned.
    const liar = volunteer(a, 'client-liar', { challenges: 'garbage' });
    await until('the liar is evicted', () => liar.errors.some((e) => e.code === 'ERR_CHALLENGE_FAILED'));
    const again = volunteer(b, 'client-liar');
    await until('b refuses the same client', () => again.errors.some((e) => e.code === 'ERR_BANNED'));
    const later = await joinLater(a);
    const third = volunteer(later, 'client-liar');
    await until('a server that joined later refuses it too', () => third.errors.some((e) => e.code === 'ERR_BANNED'));
    // An honest client is welcome everywhere.
    const honest = volunteer(b, 'client-honest');
    await until('an honest client is welcome', () => honest.id !== null);
    expect(honest.errors).toEqual([]);
  });
});

/** One more server in the cluster of `peer` (same Redis, same prefix). */
async function joinLater(peer: SignalServer): Promise<SignalServer> {
  const { dir, manifest } = await ensureStages(MODEL, { stages: STAGES }, f.cache);
  const server = createSignalServer({
    port: 0,
    host: '127.0.0.1',
    webRoot: null,
    models: [{ dir, manifest, key: partitionKey(3, { stages: STAGES }) }],
    redundancy: 3,
    ratePerMinute: 0,
    apiMaxConcurrent: 0,
    spotCheckRate: 0,
    redisUrl: f.redisUrl,
    cluster: { prefix, ...CLUSTER_TIMINGS },
  });
  await server.ready;
  servers.push(server);
  expect(peer.coordinator).not.toBeNull();
  return server;
}
