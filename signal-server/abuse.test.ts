// Resource exhaustion, integration: a real server on port 0 and real
// socket.io-client sockets in Node. A flooding socket is cut off without
// flooding the log or slowing anyone else; swarm:status reaches only the pages
// that asked for it, coalesced; the dashboard's updates do not grow with the swarm.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Manager } from 'socket.io-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { WireError } from '../shared/protocol/errors.js';
import { parseSwarmListing } from '../shared/protocol/http.js';
import {
  DASHBOARD_REPLICAS_SHOWN,
  type DashboardSnapshot,
  type DashboardUpdate,
  type StageAssignment,
  type SwarmStatus,
} from '../shared/protocol/messages.js';
import { PROTOCOL_VERSION } from '../shared/protocol/version.js';
import { DEFAULT_HELLO_BUDGET } from './coordinator/roster.js';
import { createLogger } from './log.js';
import { ensureStages, partitionKey } from './models/model-folder.js';
import { createSignalServer, type SignalServer } from './server.js';
import { type Client, connectClient, helloVolunteer, next } from './testing/socket-client.js';

const STAGES = 3;
const FLOOD_EVENTS = 20_000;
const FLOOD_BATCH = 1_000;
/** The flood, the health checks and the polite volunteer's round trips all end by then. */
const FLOOD_DEADLINE_MS = 20_000;
const DASHBOARD_VOLUNTEERS = 400;
const MEASURE_MS = 5_000;

let cache: string;
let server: SignalServer;
const logLines: string[] = [];
const clients: Client[] = [];

beforeAll(async () => {
  cache = mkdtempSync(join(tmpdir(), 'webswarm-abuse-'));
  const { dir, manifest } = await ensureStages('fixtures/models/tiny-untied', { stages: STAGES }, cache);
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') logLines.push(line);
      done();
    },
  });
  server = createSignalServer({
    port: 0,
    host: '127.0.0.1',
    webRoot: null,
    models: [{ dir, manifest, key: partitionKey(STAGES, { stages: STAGES }) }],
    redundancy: 2,
    logger: createLogger('info', sink),
  });
  await server.ready;
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.disconnect();
  await expect.poll(() => server.coordinator?.registry.size, { timeout: 10_000 }).toBe(0);
});

afterAll(async () => {
  await server?.close();
  rmSync(cache, { recursive: true, force: true });
});

function client(role: 'volunteer' | 'requester' = 'volunteer'): Client {
  const c = connectClient(server.address().url, { protocol: PROTOCOL_VERSION, role });
  clients.push(c);
  return c;
}

async function volunteer(): Promise<{ c: Client; id: string; assign: StageAssignment }> {
  return helloVolunteer(client());
}

/** The size of an event's payload as JSON: what it costs on the wire, give or take Socket.IO's framing. */
const sizeOf = (m: unknown) => JSON.stringify(m).length;

/**
 * The flooder runs in a process of its own, as an attacker would: in this one
 * its sending would hold up the very event loop whose answers are measured.
 * It prints what the server told it and why it was disconnected.
 */
const FLOODER = `
import { io } from 'socket.io-client';
const [url, protocol, total, batch] = process.argv.slice(1);
const s = io(url, { auth: { protocol: Number(protocol), role: 'volunteer' }, transports: ['websocket'], reconnection: false, forceNew: true });
const codes = [];
let sent = 0;
const done = (reason) => { console.log(JSON.stringify({ codes, reason, sent })); process.exit(0); };
s.on('server:error', (e) => codes.push(e.code));
s.on('disconnect', (reason) => done(reason));
s.on('connect_error', (e) => done('connect_error ' + e.message));
setTimeout(() => done('deadline'), ${FLOOD_DEADLINE_MS}).unref();
s.on('connect', async () => {
  while (sent < Number(total) && s.connected) {
    for (let i = 0; i < Number(batch); i++, sent++) {
      if (sent % 3 === 0) s.emit('steal:tokens', { i: sent });
      else if (sent % 3 === 1) s.emit('step:digest', 'junk');
      else s.emit('signal', { to: 'peer-' + sent, data: sent });
    }
    await new Promise((r) => setImmediate(r));
  }
});
`;

interface FloodReport {
  readonly codes: string[];
  readonly reason: string;
  readonly sent: number;
}

function flood(): Promise<FloodReport> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--input-type=module', '-e', FLOODER, server.address().url, String(PROTOCOL_VERSION), String(FLOOD_EVENTS), String(FLOOD_BATCH)],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString('utf8')));
    child.on('error', reject);
    child.on('exit', () => {
      try {
        resolve(JSON.parse(out) as FloodReport);
      } catch {
        reject(new Error(`the flooder said ${JSON.stringify(out)}`));
      }
    });
  });
}

function percentile(xs: readonly number[], p: number): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

describe('a socket flooding the server', () => {
  it('is disconnected with ERR_RATE_LIMITED after its budget, writes few log lines, and slows no one else', async () => {
    const polite = await volunteer();
    const health = async () => {
      const t0 = performance.now();
      const res = await fetch(`${server.address().url}/healthz`);
      expect(res.status).toBe(200);
      await res.arrayBuffer();
      return performance.now() - t0;
    };
    const politeRoundTrip = async () => {
      const t0 = performance.now();
      const answered = new Promise<WireError>((resolve) => polite.c.once('server:error', resolve));
      polite.c.emit('signal', { to: 'nobody', data: {} });
      expect((await answered).code).toBe('ERR_NOT_LINKED');
      return performance.now() - t0;
    };
    await health(); // the first fetch of a process sets up its connection pool: not the server's time
    const linesBefore = logLines.length;
    const started = performance.now();
    const cpuBefore = process.cpuUsage();
    let over = false;
    const flooding = flood().finally(() => {
      over = true;
    });
    // Meanwhile: /healthz, and a well-behaved volunteer's messages, which are answered.
    const healthMs: number[] = [];
    const politeMs: number[] = [];
    while (!over && performance.now() - started < FLOOD_DEADLINE_MS) {
      healthMs.push(await health());
      politeMs.push(await politeRoundTrip());
      await new Promise((r) => setTimeout(r, 5));
    }
    const report = await flooding;
    const cpu = process.cpuUsage(cpuBefore);
    const cpuMs = (cpu.user + cpu.system) / 1000;
    const floodMs = performance.now() - started;
    // Its ready is still answered (with the challenge step it must pass to count as ready).
    const challenged = new Promise<number>((resolve) => polite.c.once('volunteer:challenge', (m) => resolve(m.stage)));
    polite.c.emit('volunteer:ready', { modelId: 'tiny-untied', stage: polite.assign.stage, stepMs: 1 });
    expect(await challenged).toBe(polite.assign.stage);
    await expect.poll(() => logLines.slice(linesBefore)).toContainEqual(expect.stringContaining('more suppressed'));

    const lines = logLines.slice(linesBefore);
    console.log(
      `flood: ${report.sent} events sent, disconnected (${report.reason}) after ${Math.round(floodMs)} ms; ` +
        `this process spent ${cpuMs.toFixed(0)} ms of CPU; ${lines.length} log lines (${lines.join('').length} bytes); ` +
        `${report.codes.length} answers to the flooder; /healthz ${healthMs.length} checks, median ${percentile(healthMs, 50).toFixed(1)} ms, ` +
        `p90 ${percentile(healthMs, 90).toFixed(1)} ms, worst ${Math.max(...healthMs).toFixed(1)} ms; ` +
        `polite volunteer ${politeMs.length} round trips, worst ${Math.max(...politeMs).toFixed(1)} ms`,
    );
    expect(report.reason).toBe('io server disconnect');
    expect(report.codes.filter((c) => c === 'ERR_RATE_LIMITED')).toHaveLength(1);
    expect(report.codes.length).toBeLessThan(1_000); // the budget (400) and what came before the cut, not 20 000
    expect(lines.length).toBeLessThan(50);
    expect(lines).toContainEqual(expect.stringContaining('ERR_RATE_LIMITED'));
    expect(polite.c.connected).toBe(true);
    // Answered within 100 ms. Nine in ten, not all: on a shared two-core machine a check now and then
    // waits for another process's time slice (the worst is printed above; before the budget it was 0.4–0.6 s).
    expect(healthMs.length).toBeGreaterThan(0);
    expect(percentile(healthMs, 90)).toBeLessThan(100);
    const metrics = await (await fetch(`${server.address().url}/metrics`)).text();
    expect(metrics).toMatch(/^webswarm_sockets_rate_limited_total 1$/m);
  });
});

const HELLO_BURST = DEFAULT_HELLO_BUDGET.burst;
/** Seconds until one more hello. */
const HELLO_EVERY_S = 60 / DEFAULT_HELLO_BUDGET.perMinute;

describe('one address saying hello in a loop', () => {
  it(`hostile: ${HELLO_BURST} volunteers are welcomed, the rest refused with ERR_RATE_LIMITED until its budget refills; the log stays short; another address is welcomed`, async () => {
    const url = server.address().url;
    const hello = async (address: string): Promise<string> => {
      const c = connectClient(url, { protocol: PROTOCOL_VERSION, role: 'volunteer' }, address);
      clients.push(c);
      const answer = new Promise<string>((resolve) => {
        c.once('volunteer:welcome', () => resolve('welcome'));
        c.once('server:error', (e: WireError) => resolve(e.code));
      });
      c.emit('volunteer:hello', { backend: 'wasm', adapter: null, fault: null, clientKey: null });
      const said = await answer;
      c.disconnect();
      return said;
    };
    const before = logLines.length;
    const answers: string[] = [];
    // Connect, hello, disconnect, as fast as it goes: before, 535 a second were welcomed, each writing two lines.
    for (let i = 0; i < HELLO_BURST + 40; i++) answers.push(await hello('127.0.0.9'));
    expect(answers.slice(0, HELLO_BURST)).toEqual(answers.slice(0, HELLO_BURST).map(() => 'welcome'));
    const refused = answers.slice(HELLO_BURST).filter((a) => a === 'ERR_RATE_LIMITED').length;
    // One may have refilled meanwhile (one each HELLO_EVERY_S).
    expect(refused).toBeGreaterThanOrEqual(38);
    expect(await hello('127.0.0.10')).toBe('welcome');
    // A joined and a left line each welcomed, and the refusals at most 10 lines per 10 s, then one "suppressed".
    expect(logLines.length - before).toBeLessThan(2 * (HELLO_BURST + 3) + 12);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(Number(/^webswarm_hellos_refused_total\{code="ERR_RATE_LIMITED"\} (\d+)$/m.exec(metrics)?.[1])).toBe(refused);
    // Its budget refills: one more after HELLO_EVERY_S.
    await new Promise((r) => setTimeout(r, HELLO_EVERY_S * 1000 + 100));
    expect(await hello('127.0.0.9')).toBe('welcome');
  });
});

describe('swarm:status', () => {
  it('goes only to the sockets that subscribed, at most about once a second, and ends equal to the swarm', async () => {
    const SUBSCRIBERS = 50;
    const IDLE = 50;
    const CHURN = 100;
    const subscribers = Array.from({ length: SUBSCRIBERS }, () => client('requester'));
    const last = new Map<Client, SwarmStatus>();
    let received = 0;
    await Promise.all(
      subscribers.map(async (s) => {
        const first = next<SwarmStatus>(s, 'swarm:status');
        s.emit('status:subscribe');
        last.set(s, await first); // the status at once
        s.on('swarm:status', (m) => {
          received += 1;
          last.set(s, m);
        });
      }),
    );
    const idle = await Promise.all(Array.from({ length: IDLE }, () => volunteer()));
    let idleReceived = 0;
    for (const v of idle) v.c.on('swarm:status', () => (idleReceived += 1));

    const started = performance.now();
    for (let i = 0; i < CHURN; i++) {
      const v = await volunteer();
      v.c.disconnect();
    }
    // Everyone ends with the swarm as it is: the idle volunteers only.
    await expect.poll(() => server.coordinator?.registry.size).toBe(IDLE);
    const final = server.coordinator?.status();
    expect(final?.volunteers).toBe(IDLE);
    await expect
      .poll(() => subscribers.map((s) => last.get(s)).filter((seen) => JSON.stringify(seen) !== JSON.stringify(final)), { timeout: 5_000 })
      .toEqual([]);
    const seconds = (performance.now() - started) / 1000;
    console.log(
      `status: ${CHURN} joins and leaves in ${seconds.toFixed(1)} s: ${received} messages to ${SUBSCRIBERS} subscribers, ${idleReceived} to ${IDLE} idle volunteers`,
    );
    expect(idleReceived).toBe(0);
    expect(received).toBeGreaterThan(0);
    expect(received).toBeLessThanOrEqual((Math.ceil(seconds) + 2) * SUBSCRIBERS);
  });
});

describe('the dashboard feed with 400 idle volunteers', () => {
  it('sends a bounded grid once, then samples without it until the grid changes', async () => {
    for (let i = 0; i < DASHBOARD_VOLUNTEERS; i += 50) await Promise.all(Array.from({ length: 50 }, () => volunteer()));
    const dash = client('requester');
    const snapshot = next<DashboardSnapshot>(dash, 'dashboard:snapshot');
    const updates: DashboardUpdate[] = [];
    let updateBytes = 0;
    dash.on('dashboard:update', (m) => {
      updates.push(m);
      updateBytes += sizeOf(m);
    });
    dash.emit('dashboard:subscribe');
    const snap = await snapshot;
    const snapshotBytes = sizeOf(snap);
    expect(snap.grid.stages.reduce((n, s) => n + s.volunteers, 0)).toBe(DASHBOARD_VOLUNTEERS);
    expect(snap.grid.stages.map((s) => s.volunteers)).toEqual(server.coordinator?.registry.replicasPerStage());
    for (let s = 0; s < STAGES; s++) expect(snap.grid.volunteers.filter((v) => v.stage === s)).toHaveLength(DASHBOARD_REPLICAS_SHOWN);

    await new Promise((r) => setTimeout(r, MEASURE_MS));
    const idleUpdates = updates.length;
    const idleBytes = updateBytes;
    console.log(
      `dashboard, ${DASHBOARD_VOLUNTEERS} idle volunteers: snapshot ${snapshotBytes} bytes; ${idleUpdates} updates in ${MEASURE_MS / 1000} s, ${idleBytes} bytes`,
    );
    expect(idleUpdates).toBeGreaterThanOrEqual(3);
    expect(
      updates.filter((u) => u.grid !== null),
      'updates that carried the grid again',
    ).toEqual([]);
    expect(idleBytes).toBeLessThan(5 * 1024);
    expect(snapshotBytes).toBeLessThan(STAGES * DASHBOARD_REPLICAS_SHOWN * 400);

    // Ten leave: the next grid says so, within a few seconds.
    for (const c of clients.slice(0, 10)) c.disconnect();
    const lastGrid = () => updates.findLast((u) => u.grid !== null)?.grid;
    await expect.poll(() => lastGrid()?.stages.reduce((n, s) => n + s.volunteers, 0), { timeout: 5_000 }).toBe(DASHBOARD_VOLUNTEERS - 10);
  });
});

describe('GET /api/swarm with 400 idle volunteers', () => {
  it(`lists at most ${DASHBOARD_REPLICAS_SHOWN} volunteers a stage and counts them all: an anonymous GET does not cost what the swarm's size is`, async () => {
    for (let i = 0; i < DASHBOARD_VOLUNTEERS; i += 50) await Promise.all(Array.from({ length: 50 }, () => volunteer()));
    const res = await fetch(`${server.address().url}/api/swarm`);
    const text = await res.text();
    const listing = parseSwarmListing(JSON.parse(text));
    if (!listing.ok) throw new Error(listing.reason);
    expect(listing.value.volunteers).toBe(DASHBOARD_VOLUNTEERS);
    expect(listing.value.replicasPerStage).toEqual(server.coordinator?.registry.replicasPerStage());
    for (let s = 0; s < STAGES; s++) expect(listing.value.list.filter((v) => v.stage === s)).toHaveLength(DASHBOARD_REPLICAS_SHOWN);
    // Before: all 400 listed, 73 KB (and growing with the swarm).
    expect(text.length).toBeLessThan(STAGES * DASHBOARD_REPLICAS_SHOWN * 400);
  });
});

/**
 * A client's own Socket.IO connection that writes packets as text, as an
 * attacker's client would: values no encoder of ours would make (nested
 * deeper than a recursive encoder's stack) reach the server as they are.
 */
async function rawSocket(localAddress?: string): Promise<{ write(packet: string): void; received: string[]; close(): void }> {
  const m = new Manager(server.address().url, {
    transports: ['websocket'],
    reconnection: false,
    autoConnect: false,
    ...(localAddress === undefined ? {} : { localAddress }),
  });
  await new Promise<void>((resolve, reject) => m.open((e) => (e === undefined ? resolve() : reject(e))));
  const received: string[] = [];
  m.engine.on('data', (d: unknown) => received.push(String(d)));
  return { write: (packet) => m.engine.write(packet), received, close: () => m.engine.close() };
}

/** An array nested `depth` deep, as JSON text (built as text: JSON.stringify of the value would overflow here too). */
const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;

async function healthy(): Promise<number> {
  return (await fetch(`${server.address().url}/healthz`)).status;
}

describe('values nested thousands deep (found by a red-team pass: each ended the server process before)', () => {
  it("hostile: a handshake's protocol nested 50 000 deep is refused by name, 20 times, with short log lines that are limited; the server serves on", async () => {
    const before = logLines.length;
    for (let i = 0; i < 20; i++) {
      const raw = await rawSocket('127.0.0.11');
      raw.write(`0{"protocol":${nested(50_000)},"role":"volunteer"}`);
      await expect.poll(() => raw.received.length, { timeout: 5_000 }).toBeGreaterThan(0);
      // A CONNECT_ERROR packet naming the code, with the value described, not echoed.
      expect(raw.received[0]).toMatch(/^4\{.*ERR_PROTOCOL_VERSION.*protocol an array of 1 is not/);
      expect((raw.received[0] as string).length).toBeLessThan(400);
      raw.close();
    }
    expect(await healthy()).toBe(200);
    const lines = logLines.slice(before).filter((l) => l.includes('127.0.0.11'));
    // At most 10 lines per 10 s per address, then one "suppressed", each short.
    expect(lines.length).toBeLessThanOrEqual(11);
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThan(1_000);
    await volunteer();
  });

  it('hostile: a relayed signal nested 4 100 and 50 000 deep is refused (ERR_BAD_MESSAGE) and never relayed; a plain one still is', async () => {
    const a = await volunteer();
    const b = await volunteer();
    server.coordinator?.links.link(a.id, b.id);
    const relayed: unknown[] = [];
    b.c.on('signal', (m: unknown) => relayed.push(m));
    // Its own socket, saying hello as a volunteer would, then sending what its encoder would not.
    const raw = await rawSocket();
    raw.write(`0{"protocol":${PROTOCOL_VERSION},"role":"volunteer"}`);
    // The namespace's CONNECT answer ("0{sid}") before any event.
    await expect.poll(() => raw.received.some((p) => p.startsWith('0')), { timeout: 5_000 }).toBe(true);
    raw.write('2["volunteer:hello",{"backend":"wasm","adapter":null,"fault":null,"clientKey":null}]');
    await expect
      .poll(() => raw.received.find((p) => p.includes('volunteer:welcome')) ?? raw.received.join(' | ').slice(0, 300), { timeout: 5_000 })
      .toContain('volunteer:welcome');
    const id = /"volunteerId":"([^"]+)"/.exec(raw.received.find((p) => p.includes('volunteer:welcome')) ?? '')?.[1] as string;
    expect(id).toBeDefined();
    server.coordinator?.links.link(id, b.id);
    // 4 100 passed the old check (a JSON.stringify) and overflowed Socket.IO's encoder when relayed; 50 000 the check.
    for (const depth of [4_100, 50_000]) {
      const at = raw.received.length;
      raw.write(`2["signal",{"to":"${b.id}","data":{"sdp":${nested(depth)}}}]`);
      await expect.poll(() => raw.received.slice(at).find((p) => p.includes('server:error')), { timeout: 5_000 }).toBeDefined();
      const said = raw.received.slice(at).find((p) => p.includes('server:error')) as string;
      expect(said).toContain('ERR_BAD_MESSAGE');
      expect(said).toContain('nested deeper than 8');
    }
    const got = next<unknown>(b.c, 'signal');
    a.c.emit('signal', { to: b.id, data: { type: 'offer', sdp: 'v=0' } });
    expect(await got).toEqual({ from: a.id, data: { type: 'offer', sdp: 'v=0' } });
    expect(relayed).toHaveLength(1);
    expect(await healthy()).toBe(200);
    raw.close();
  });

  it("a handler's own failure (a coordinator method that throws, standing in for a bug) is answered ERR_INTERNAL and logged; the process and the socket serve on", async () => {
    const a = await volunteer();
    const b = await volunteer();
    const coordinator = server.coordinator as NonNullable<typeof server.coordinator>;
    const relay = coordinator.relay;
    coordinator.relay = () => {
      throw new Error('a bug in relay');
    };
    try {
      const said = next<WireError>(a.c, 'server:error');
      a.c.emit('signal', { to: b.id, data: { type: 'offer', sdp: 'v=0' } });
      expect(await said).toMatchObject({ code: 'ERR_INTERNAL', message: expect.stringContaining('a bug in relay') });
    } finally {
      coordinator.relay = relay;
    }
    expect(logLines.some((l) => l.includes('ERR_INTERNAL signal failed here: a bug in relay'))).toBe(true);
    // The same socket goes on: a plain relay between linked peers.
    coordinator.links.link(a.id, b.id);
    const got = next<unknown>(b.c, 'signal');
    a.c.emit('signal', { to: b.id, data: { type: 'offer', sdp: 'v=0' } });
    expect(await got).toEqual({ from: a.id, data: { type: 'offer', sdp: 'v=0' } });
    expect(await healthy()).toBe(200);
  });

  it('hostile: an API body nested 30 000 deep (under the body limit) is a 400, a model that is an object a short 400, a long string a short 404; the server serves on', async () => {
    const url = `${server.address().url}/v1/completions`;
    const post = (body: string) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const deep = await post(`{"model":${nested(30_000)},"prompt":"hi","max_tokens":1}`);
    expect(deep.status).toBe(400);
    expect(((await deep.json()) as { error: { message: string } }).error.message).toMatch(/nested deeper than 32/);
    const object = await post(JSON.stringify({ model: { a: [1, 2] }, prompt: 'hi', max_tokens: 1 }));
    expect(object.status).toBe(400);
    expect(((await object.json()) as { error: { message: string } }).error.message).toMatch(/^model must be a string .* not an object$/);
    const long = await post(JSON.stringify({ model: 'm'.repeat(50_000), prompt: 'hi', max_tokens: 1 }));
    expect(long.status).toBe(404);
    const message = ((await long.json()) as { error: { message: string } }).error.message;
    expect(message).toContain('(50000 characters)');
    expect(message.length).toBeLessThan(300);
    expect(await healthy()).toBe(200);
  });
});
