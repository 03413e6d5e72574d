// Integration: a real server on port 0 and real socket.io-client sockets in Node.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { WireError } from '../shared/protocol/errors.js';
import { FAULT_KINDS } from '../shared/protocol/faults.js';
import type { SignalIn, StageAssignment, StageChallenge } from '../shared/protocol/messages.js';
import { PROTOCOL_VERSION } from '../shared/protocol/version.js';
import { ensureStages, partitionKey } from './models/model-folder.js';
import { createSignalServer, type SignalServer } from './server.js';
import { NodeVolunteer } from './testing/node-volunteer.js';
import { type Client, connectClient, helloVolunteer, next } from './testing/socket-client.js';

let cache: string;
let server: SignalServer;
const clients: Client[] = [];
const nodes: NodeVolunteer[] = [];

beforeAll(async () => {
  cache = mkdtempSync(join(tmpdir(), 'webswarm-io-'));
  const { dir, manifest } = await ensureStages('fixtures/models/tiny-untied', { stages: 3 }, cache);
  server = createSignalServer({
    port: 0,
    host: '127.0.0.1',
    webRoot: null,
    models: [{ dir, manifest, key: partitionKey(3, { stages: 3 }) }],
    redundancy: 2,
    routeWaitMs: 300,
  });
  await server.ready;
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.disconnect();
  for (const n of nodes.splice(0)) await n.close();
  // Each test starts with an empty registry.
  await expect.poll(() => server.coordinator?.registry.size).toBe(0);
});

afterAll(async () => {
  await server.close();
  rmSync(cache, { recursive: true, force: true });
});

function client(auth: Record<string, unknown> = { protocol: PROTOCOL_VERSION, role: 'volunteer' }): Client {
  const c = connectClient(server.address().url, auth);
  clients.push(c);
  return c;
}

async function volunteer(): Promise<{ c: Client; id: string; assign: StageAssignment }> {
  return helloVolunteer(client());
}

describe('volunteers over Socket.IO', () => {
  it('register and get stages that fill every stage in turn', async () => {
    const vs = [];
    for (let i = 0; i < 6; i++) vs.push(await volunteer());
    expect(vs.map((v) => v.assign.stage)).toEqual([0, 1, 2, 0, 1, 2]);
    expect(vs[0]?.assign.baseUrl).toMatch(/^\/models\/tiny-untied\//);
    expect(new Set(vs.map((v) => v.id)).size).toBe(6);
    expect(server.coordinator?.registry.replicasPerStage()).toEqual([2, 2, 2]);
    // /metrics counts them by stage and state: loading until they say they are ready.
    const gauge = async (stage: number, state: string) => {
      const text = await (await fetch(`${server.address().url}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith(`webswarm_volunteers{backend="wasm",stage="${stage}",state="${state}"}`));
      return line === undefined ? 0 : Number(line.split(' ').at(-1));
    };
    expect(await gauge(0, 'loading')).toBe(2);
    // Saying it is ready is not enough: it is sent a challenge step and stays loading until it answers it right.
    const challenge = next<StageChallenge>(vs[0]?.c as Client, 'volunteer:challenge');
    vs[0]?.c.emit('volunteer:ready', { modelId: 'tiny-untied', stage: 0, stepMs: 1 });
    expect((await challenge).stage).toBe(0);
    expect(await gauge(0, 'ready')).toBe(0);
    const evicted = next<WireError>(vs[0]?.c as Client, 'server:error');
    vs[0]?.c.emit('volunteer:proof', { challengeId: (await challenge).challengeId, digest: [1, 2, 3] });
    expect((await evicted).code).toBe('ERR_CHALLENGE_FAILED');
    // A volunteer that computes the challenge (the real replica, over the stage file it downloads) becomes ready.
    const real = new NodeVolunteer(server.address().url);
    nodes.push(real);
    await expect.poll(() => gauge(0, 'ready'), { timeout: 15_000 }).toBe(1);
  });

  it('re-balances when a volunteer leaves', async () => {
    const vs = [];
    for (let i = 0; i < 4; i++) vs.push(await volunteer()); // stages 0 1 2 0
    const moved = next<StageAssignment>(vs[3]?.c as Client, 'volunteer:assign');
    vs[1]?.c.disconnect(); // stage 1 now has none
    expect((await moved).stage).toBe(1);
    await expect.poll(() => server.coordinator?.registry.replicasPerStage()).toEqual([1, 1, 1]);
  });

  it('refuses another protocol version by name', async () => {
    const c = client({ protocol: PROTOCOL_VERSION + 1, role: 'volunteer' });
    const err = await new Promise<Error & { data?: { code: string } }>((resolve) => c.once('connect_error', resolve));
    expect(err.data?.code).toBe('ERR_PROTOCOL_VERSION');
  });

  it('answers malformed and out-of-protocol messages with named errors, and keeps serving', async () => {
    const c = client();
    const cases: [() => void, string][] = [
      [() => c.emit('volunteer:ready', { modelId: 'tiny-untied', stage: 0, stepMs: 1 }), 'ERR_NOT_ASSIGNED'],
      [() => c.emit('volunteer:hello', { backend: 'cuda', adapter: null, fault: null, clientKey: null } as never), 'ERR_BAD_MESSAGE'],
      [() => (c as unknown as { emit: (e: string, m: unknown) => void }).emit('steal:tokens', {}), 'ERR_BAD_MESSAGE'],
      [() => c.emit('signal', { to: 'someone', data: {} }), 'ERR_NOT_LINKED'],
    ];
    for (const [send, code] of cases) {
      const e = next<WireError>(c, 'server:error');
      send();
      expect((await e).code).toBe(code);
    }
    const v = await volunteer();
    const wrongStage = next<WireError>(v.c, 'server:error');
    v.c.emit('volunteer:ready', { modelId: 'tiny-untied', stage: (v.assign.stage + 1) % 3, stepMs: 1 });
    expect((await wrongStage).code).toBe('ERR_NOT_ASSIGNED');
  });

  it('a production server refuses a volunteer that injects faults, of every kind (gpu-lost included)', async () => {
    for (const fault of FAULT_KINDS) {
      const c = client();
      const refused = next<WireError>(c, 'server:error');
      c.emit('volunteer:hello', { backend: fault === 'gpu-lost' ? 'webgpu' : 'wasm', adapter: null, fault, clientKey: null });
      expect((await refused).code, fault).toBe('ERR_FAULTS_REFUSED');
      await expect.poll(() => c.connected).toBe(false);
      expect(server.coordinator?.registry.size).toBe(0);
    }
  });

  it('a request with no ready volunteer for a stage fails after the deadline, naming the stage', async () => {
    await volunteer(); // assigned stage 0, never ready
    const res = await fetch(`${server.address().url}/v1/completions`, {
      method: 'POST',
      body: JSON.stringify({ prompt: 'Emma', max_tokens: 4 }),
    });
    expect(res.status).toBe(503);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('ERR_NO_ROUTE');
    expect(body.error.message).toMatch(
      /stage 0 of tiny-untied: 0 of 2 replicas ready \(from distinct clients; 0 ready, 1 assigned\); waited 300 ms/,
    );
  });

  it("lists the served model in OpenAI's shape", async () => {
    const res = await fetch(`${server.address().url}/v1/models`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { object: string; data: { id: string; object: string; owned_by: string }[] };
    expect(body.object).toBe('list');
    expect(body.data.map((m) => [m.id, m.object, m.owned_by])).toEqual([['tiny-untied', 'model', 'webswarm']]);
  });

  it('cancels a chat generation when its requester goes away, and closes the session on every replica', async () => {
    // 3 stages × 2: ready volunteers (they pass their challenges) that open the session but never
    // join it, so the generation waits in its join phase (30 s deadline) until something ends it.
    const vs = Array.from({ length: 6 }, () => new NodeVolunteer(server.address().url, { joins: false }));
    nodes.push(...vs);
    await expect.poll(() => server.coordinator?.volunteers().filter((v) => v.ready).length, { timeout: 15_000 }).toBe(6);
    const opened = vs.map((v) => next<{ sessionId: number }>(v.socket as unknown as Client, 'session:open'));
    const closed = vs.map((v) => next<{ sessionId: number }>(v.socket as unknown as Client, 'session:close'));
    const requester = client({ protocol: PROTOCOL_VERSION, role: 'requester' });
    requester.emit('chat:generate', { requestId: 'r1', apiKey: null, prompt: 'Emma', maxTokens: 8, temperature: 0, topP: 1, seed: 0 });
    const sessions = new Set((await Promise.all(opened)).map((m) => m.sessionId));
    expect(sessions.size).toBe(1);
    requester.disconnect();
    // Within seconds, not at the 30 s join deadline: the disconnect cancelled it.
    const closes = await Promise.all(closed);
    expect(new Set(closes.map((m) => m.sessionId))).toEqual(sessions);
  });

  it('relays signals only between linked peers, with the sender id set by the server', async () => {
    const a = await volunteer();
    const b = await volunteer();
    const c = await volunteer();
    const refused = next<WireError>(a.c, 'server:error');
    a.c.emit('signal', { to: b.id, data: { sdp: 'offer' } });
    expect((await refused).code).toBe('ERR_NOT_LINKED');
    server.coordinator?.links.link(a.id, b.id);
    const got = next<SignalIn>(b.c, 'signal');
    a.c.emit('signal', { to: b.id, data: { sdp: 'offer' } });
    expect(await got).toEqual({ from: a.id, data: { sdp: 'offer' } });
    const stillRefused = next<WireError>(c.c, 'server:error');
    c.c.emit('signal', { to: b.id, data: { sdp: 'forged' } });
    expect((await stillRefused).code).toBe('ERR_NOT_LINKED');
  });
});
