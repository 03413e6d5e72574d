// A cluster as it is deployed: 3 server processes (the server's entry,
// signal-server/main.ts, each on its own port) and a real redis-server on
// loopback; node volunteers (real socket.io clients computing with
// onnxruntime) spread across them. One process is killed (SIGKILL, by its PID)
// while a generation runs: the answer equals the reference runner's tokens or
// fails with a named error a client may retry; the volunteers of the dead
// process connect to the others (as pages behind a load balancer do), and the
// next request gives the reference tokens.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GREEDY } from '../../shared/model/sampling.js';
import { fetchSwarmListing } from '../../testing/swarm-listing.js';
import { ensureStages } from '../models/model-folder.js';
import { ReferenceRunner } from '../reference/reference-runner.js';
import { NodeVolunteer } from '../testing/node-volunteer.js';
import { type RedisServer, startRedisServer } from '../testing/redis-server.js';

const MODEL = 'fixtures/models/tiny-untied';
const STAGES = 3;
const PROMPT = 'It is a truth universally acknowledged';
const TOKENS = 48;
/** Agreements after which a volunteer is established (ESTABLISHED_AFTER = 10): the first request's length. */
const ESTABLISHING = 12;
/** The token after which a server process is killed. */
const KILL_AT = 3;
const START_TIMEOUT_MS = 60_000;
const WAIT_MS = 45_000;
const TEST_TIMEOUT_MS = 300_000;
/** Errors a client may retry (503 with Retry-After on the HTTP API): the swarm was short for a moment. */
const RETRYABLE = ['ERR_NO_QUORUM', 'ERR_STEP_TIMEOUT', 'ERR_NO_ROUTE', 'ERR_BUSY'];

interface ServerProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  url: string;
}

let redis: RedisServer;
let cache: string;
let webRoot: string;
let reference: ReferenceRunner;
const processes: ServerProcess[] = [];
const volunteers: NodeVolunteer[] = [];

/** The server's entry in a process of its own, joined to the cluster by REDIS_URL. */
async function spawnServer(): Promise<ServerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'signal-server/main.ts'], {
    env: {
      ...process.env,
      PORT: '0',
      HOST: '127.0.0.1',
      MODEL,
      STAGES: String(STAGES),
      REDUNDANCY: '3',
      WEB_ROOT: webRoot,
      STAGE_CACHE: cache,
      WEBSWARM_MODE: 'test',
      RATE_LIMIT_PER_MINUTE: '0',
      API_MAX_CONCURRENT: '0',
      SPOT_CHECK_RATE: '0',
      REDIS_URL: redis.url,
      LOG_FORMAT: 'json',
      // The URL comes in the info line "webswarm listening on …"; CLUSTER_TEST_LOGS=1 shows every line.
      LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  // Stopped in afterAll by its PID, also when it never listens.
  const started = { child, pid: child.pid as number, url: '' };
  processes.push(started);
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`a server process did not listen within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
    child.once('exit', (code) => reject(new Error(`a server process exited with ${code}`)));
    lines.on('line', (line) => {
      if (process.env.CLUSTER_TEST_LOGS === '1') process.stderr.write(`[${child.pid}] ${line}\n`);
      const m = /"url":"(http:[^"]+)"/.exec(line);
      if (m?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
  });
  started.url = url;
  return started;
}

function alive(p: ServerProcess): boolean {
  return p.child.exitCode === null && p.child.signalCode === null;
}

async function stopProcess(p: ServerProcess, signal: NodeJS.Signals): Promise<void> {
  if (!alive(p)) return;
  const exited = new Promise<void>((r) => p.child.once('exit', () => r()));
  process.kill(p.pid, signal);
  await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
  if (alive(p)) process.kill(p.pid, 'SIGKILL');
}

beforeAll(async () => {
  redis = await startRedisServer();
  cache = mkdtempSync(join(tmpdir(), 'webswarm-processes-'));
  webRoot = mkdtempSync(join(tmpdir(), 'webswarm-processes-web-'));
  // Built once here, so that the three processes find the stages ready rather than each writing them.
  const { dir } = await ensureStages(MODEL, { stages: STAGES }, cache);
  reference = await ReferenceRunner.fromStageDir(dir);
});

afterAll(async () => {
  for (const v of volunteers.splice(0)) await v.close();
  for (const p of processes) await stopProcess(p, 'SIGTERM');
  await reference?.close();
  await redis?.stop();
  rmSync(cache, { recursive: true, force: true });
  rmSync(webRoot, { recursive: true, force: true });
});

/** Polls `test`; a poll that throws (a connection reset on a machine starved of CPU) counts as not yet. */
async function until(what: string, test: () => Promise<boolean> | boolean): Promise<void> {
  const attempt = async () => {
    try {
      return await test();
    } catch {
      return false;
    }
  };
  for (const deadline = Date.now() + WAIT_MS; !(await attempt()); ) {
    if (Date.now() > deadline) throw new Error(`not within ${WAIT_MS} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const readyOn = async (p: ServerProcess) => (await fetchSwarmListing(p.url)).list.filter((v) => v.ready).length;

interface Streamed {
  readonly tokens: number[];
  readonly route: string[][] | null;
  readonly code: string | null;
  readonly status: number;
}

/** POST /v1/completions with stream: true; `onToken` hears the count of tokens so far. */
async function stream(p: ServerProcess, maxTokens: number, onToken: (n: number) => void = () => {}): Promise<Streamed> {
  const res = await fetch(`${p.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: PROMPT, max_tokens: maxTokens, temperature: 0, stream: true }),
  });
  if (res.headers.get('content-type')?.startsWith('text/event-stream') !== true) {
    const body = (await res.json()) as { error?: { code: string } };
    return { tokens: [], route: null, code: body.error?.code ?? `HTTP ${res.status}`, status: res.status };
  }
  const tokens: number[] = [];
  let route: string[][] | null = null;
  let code: string | null = null;
  let buffer = '';
  const decoder = new TextDecoder();
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    for (let i = buffer.indexOf('\n\n'); i >= 0; i = buffer.indexOf('\n\n')) {
      const event = buffer.slice(0, i).replace(/^data: /, '');
      buffer = buffer.slice(i + 2);
      if (event === '[DONE]') continue;
      const m = JSON.parse(event) as { webswarm?: { token?: number; route?: string[][] }; error?: { code: string } };
      if (m.error !== undefined) code = m.error.code;
      if (typeof m.webswarm?.token === 'number') {
        tokens.push(m.webswarm.token);
        onToken(tokens.length);
      }
      if (m.webswarm?.route !== undefined) route = m.webswarm.route;
    }
  }
  return { tokens, route, code, status: res.status };
}

describe('three server processes and a redis-server', () => {
  it(
    'serve one swarm; a requester on one is served by volunteers of the others; a ban holds on all; one killed mid-generation',
    async () => {
      const [a, b, c] = [await spawnServer(), await spawnServer(), await spawnServer()] as [ServerProcess, ServerProcess, ServerProcess];
      const expected = (await reference.generateIds(reference.tokenizer.encode(PROMPT), TOKENS, GREEDY)).tokens;
      // Pages behind a load balancer connect again to a server that is up: here a and b in turn.
      let turn = 0;
      const reconnect = () => ([a, b].filter(alive)[turn++ % 2] ?? a).url;
      const join = async (p: ServerProcess, n: number) => {
        for (let i = 0; i < n; i++) {
          volunteers.push(new NodeVolunteer(p.url, { clientKey: `client-${volunteers.length}`, reconnect }));
          // One at a time, so that each server assigns stages knowing the others' volunteers.
          await new Promise((r) => setTimeout(r, 300));
        }
      };

      // 1. Volunteers on b and c only; the requester on a.
      await join(b, 5);
      await join(c, 4);
      await until('a sees 9 ready volunteers', async () => (await readyOn(a)) === 9);
      // Every one of the nine is in the route: ESTABLISHING agreements each, counted by a, kept by b and c.
      const served = await stream(a, ESTABLISHING);
      expect(served.code).toBeNull();
      expect(served.tokens).toEqual(expected.slice(0, ESTABLISHING));
      const onA = (await fetchSwarmListing(a.url)).list.length;
      expect(onA).toBe(9);

      // 2. A ban made on one process holds on another.
      const liar = new NodeVolunteer(b.url, { clientKey: 'client-liar', challenges: 'garbage' });
      volunteers.push(liar);
      await until('the liar is evicted on b', () => liar.errors.some((e) => e.code === 'ERR_CHALLENGE_FAILED'));
      const again = new NodeVolunteer(a.url, { clientKey: 'client-liar' });
      volunteers.push(again);
      await until('a refuses the same client', () => again.errors.some((e) => e.code === 'ERR_BANNED'));

      // 3. Three spares on a, then c is killed after the KILL_AT-th token of a generation on a.
      await join(a, 3);
      await until('a sees 12 ready volunteers', async () => (await readyOn(a)) === 12);
      const fromC = volunteers.filter((v) => v.url === c.url && v.id !== null);
      const onC = fromC.map((v) => v.id as string);
      const established = async (ids: readonly string[]) =>
        (await fetchSwarmListing(a.url)).list.filter((v) => ids.includes(v.id) && v.established).length;
      await until("a sees c's volunteers established", async () => (await established(onC)) === 4);
      expect(onC).toHaveLength(4);
      let killedAt: number | null = null;
      const during = await stream(a, TOKENS, (n) => {
        if (n === KILL_AT && killedAt === null) {
          killedAt = n;
          process.kill(c.pid, 'SIGKILL');
        }
      });
      expect(killedAt).toBe(KILL_AT);
      // Nine of twelve volunteers were in the route: at least one of c's four was lost mid-generation (the stages go on
      // with a majority of 2 of 3, or a spare takes the place once c is known dead).
      if (during.code === null) expect(during.tokens).toEqual(expected);
      else expect(RETRYABLE).toContain(during.code);

      // 4. c's volunteers are back on a and b; the next request gives the reference tokens.
      await until(
        "c's volunteers are back on a and b",
        () =>
          volunteers.filter((v) => v.reconnections > 0).every((v) => v.id !== null && !onC.includes(v.id)) &&
          volunteers.filter((v) => v.reconnections > 0).length === 4,
      );
      await until('12 ready again', async () => (await readyOn(a)) === 12 && (await readyOn(b)) === 12);
      // Their records followed them (client keys): established again once they passed their challenges.
      expect(await established(fromC.map((v) => v.id as string))).toBe(4);
      const after = await stream(b, TOKENS);
      expect(after.code).toBeNull();
      expect(after.tokens).toEqual(expected);
    },
    TEST_TIMEOUT_MS,
  );
});
