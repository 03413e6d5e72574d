/**
 * Coordinator capacity (issue 13's table): simulated volunteers (socket.io
 * clients in this process that speak the protocol: hello, then idle; no
 * WebRTC) join a server running in its own process, 1 000 / 5 000 / 10 000 of
 * them; then the same on 3 server processes joined by a real redis-server
 * (REDIS_URL), the volunteers and the pages spread over them in turn.
 * Measured: the servers' resident memory per volunteer (their own /metrics;
 * with Redis, redis-server's used_memory too), their CPU time, the time from
 * hello to the stage assignment, the signalling relay latency between linked
 * peers (p50 / p99; on 3 processes every pair is on two processes), and the
 * swarm:status traffic that 50 pages receive while the volunteers join.
 *
 *   npx tsx bench/capacity.ts [counts…]    (default 1000 5000 10000)
 *   BENCH_CAPACITY_CLUSTER=0 skips the 3-process rows (they need redis-server: tools/install-redis.sh)
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { createClient } from 'redis';
import { PROTOCOL_VERSION } from '../shared/protocol/version.js';
import { startRedisServer } from '../signal-server/testing/redis-server.js';
import { type Client, connectClient, next } from '../signal-server/testing/socket-client.js';
import { printTable } from './table.js';

const BATCH = 200;
const PAGES = 50;
const RELAY_SAMPLES = 400;
/** Server processes of the cluster rows. */
const CLUSTER_PROCESSES = 3;

export function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? Number.NaN;
}

export interface ServerChild {
  readonly child: ChildProcess;
  readonly url: string;
  readonly lines: ReturnType<typeof createInterface>;
}

/** bench/capacity-server.ts in a process of its own (its environment: `env` over this one's). */
export async function startServer(env: Record<string, string> = {}): Promise<ServerChild> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/capacity-server.ts'], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, ...env },
  });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const line = await new Promise<string>((resolve, reject) => {
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`the capacity server exited with ${code}`)));
  });
  return { child, url: line.trim(), lines };
}

export async function serverMetrics(url: string): Promise<{ rssBytes: number; cpuS: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const value = (name: string) =>
    Number(
      text
        .split('\n')
        .find((l) => l.startsWith(`${name} `))
        ?.split(' ')[1] ?? Number.NaN,
    );
  return { rssBytes: value('webswarm_process_resident_memory_bytes'), cpuS: value('webswarm_process_cpu_seconds_total') };
}

/** Bytes redis-server holds for data (INFO memory's used_memory). */
async function redisUsedBytes(url: string): Promise<number> {
  const c = createClient({ url });
  await c.connect();
  try {
    return Number(/used_memory:(\d+)/.exec(await c.info('memory'))?.[1] ?? Number.NaN);
  } finally {
    c.destroy();
  }
}

/** One row: `count` volunteers over `procs` server processes (with a redis-server when more than one). */
async function run(count: number, procs: number): Promise<string[]> {
  const redis = procs > 1 ? await startRedisServer() : null;
  const servers: ServerChild[] = [];
  const clients: Client[] = [];
  try {
    for (let i = 0; i < procs; i++)
      servers.push(await startServer(redis === null ? {} : { REDIS_URL: redis.url, CAPACITY_PREFIX: `capacity${count}` }));
    const urlOf = (i: number) => (servers[i % procs] as ServerChild).url;
    // Pages that follow the status, as the landing page does.
    let statusMessages = 0;
    let statusBytes = 0;
    for (let i = 0; i < PAGES; i++) {
      const p = connectClient(urlOf(i), { protocol: PROTOCOL_VERSION, role: 'requester' });
      p.on('swarm:status', (m) => {
        statusMessages += 1;
        statusBytes += JSON.stringify(m).length;
      });
      await new Promise<void>((r) => p.once('connect', () => r()));
      p.emit('status:subscribe');
      clients.push(p);
    }
    const sum = (xs: { rssBytes: number; cpuS: number }[]) => ({
      rssBytes: xs.reduce((a, x) => a + x.rssBytes, 0),
      cpuS: xs.reduce((a, x) => a + x.cpuS, 0),
    });
    const before = sum(await Promise.all(servers.map((s) => serverMetrics(s.url))));
    const redisBefore = redis === null ? 0 : await redisUsedBytes(redis.url);
    const assignMs: number[] = [];
    const ids: { c: Client; id: string; server: number }[] = [];
    const t0 = performance.now();
    for (let done = 0; done < count; done += BATCH) {
      const batch = Array.from({ length: Math.min(BATCH, count - done) }, async (_, k) => {
        const server = (done + k) % procs;
        const c = connectClient(urlOf(server));
        clients.push(c);
        await new Promise<void>((r) => c.once('connect', () => r()));
        const welcome = next<{ volunteerId: string }>(c, 'volunteer:welcome');
        const assign = next<unknown>(c, 'volunteer:assign');
        const s = performance.now();
        c.emit('volunteer:hello', { backend: 'wasm', adapter: null, fault: null, clientKey: null });
        const id = (await welcome).volunteerId;
        await assign;
        assignMs.push(performance.now() - s);
        ids[done + k] = { c, id, server };
      });
      await Promise.all(batch);
    }
    const joinS = (performance.now() - t0) / 1000;
    await new Promise((r) => setTimeout(r, 1500)); // the last coalesced status; every process has mirrored the others' volunteers
    const after = sum(await Promise.all(servers.map((s) => serverMetrics(s.url))));
    const redisAfter = redis === null ? 0 : await redisUsedBytes(redis.url);
    // Relay latency: pairs linked by a coordinator exchange signalling through the servers (on 3 processes, through
    // a's server, Redis and b's server: consecutive volunteers are on different processes). a's server links them.
    const relayMs: number[] = [];
    const pairs = ids.slice(0, RELAY_SAMPLES * 2);
    for (let i = 0; i + 1 < pairs.length; i += 2) {
      const a = pairs[i] as { id: string; server: number };
      servers[a.server]?.child.stdin?.write(`link ${a.id} ${pairs[i + 1]?.id}\n`);
    }
    for (const s of servers) {
      const linked = new Promise<void>((r) => s.lines.once('line', () => r()));
      s.child.stdin?.write('done\n');
      await linked;
    }
    await new Promise((r) => setTimeout(r, 200)); // the links reach the other processes
    for (let i = 0; i + 1 < pairs.length; i += 2) {
      const a = pairs[i] as { c: Client; id: string };
      const b = pairs[i + 1] as { c: Client; id: string };
      const s = performance.now();
      const got = next<unknown>(b.c, 'signal');
      a.c.emit('signal', { to: b.id, data: { probe: i } });
      await got;
      relayMs.push(performance.now() - s);
    }
    return [
      String(count),
      String(procs),
      ((after.rssBytes - before.rssBytes) / count / 1024).toFixed(1),
      redis === null ? '–' : ((redisAfter - redisBefore) / count / 1024).toFixed(2),
      (after.cpuS - before.cpuS).toFixed(2),
      joinS.toFixed(1),
      `${quantile(assignMs, 0.5).toFixed(1)} / ${quantile(assignMs, 0.99).toFixed(1)}`,
      `${quantile(relayMs, 0.5).toFixed(2)} / ${quantile(relayMs, 0.99).toFixed(2)}`,
      `${statusMessages} (${(statusBytes / 1024).toFixed(1)} KB)`,
    ];
  } finally {
    for (const c of clients) c.disconnect();
    for (const s of servers) s.child.kill('SIGTERM');
    await Promise.all(servers.map((s) => new Promise<void>((r) => (s.child.exitCode !== null ? r() : s.child.once('exit', () => r())))));
    await redis?.stop();
  }
}

/** The coordinator table of `npm run bench`. */
export async function benchCapacity(counts: readonly number[] = [1000, 5000, 10000]): Promise<void> {
  const rows: string[][] = [];
  for (const n of counts) rows.push(await run(n, 1));
  if (process.env.BENCH_CAPACITY_CLUSTER !== '0') for (const n of counts) rows.push(await run(n, CLUSTER_PROCESSES));
  printTable(
    `coordinator capacity, 1 process and ${CLUSTER_PROCESSES} with Redis: simulated volunteers join in batches of ${BATCH}; ${PAGES} pages follow swarm:status`,
    [
      'volunteers',
      'processes',
      'servers KB per volunteer',
      'redis KB per volunteer',
      'servers CPU s',
      'join s',
      'hello → assign ms p50 / p99',
      'signal relayed a → server → b, ms p50 / p99',
      'status to 50 pages',
    ],
    rows,
  );
}

const isMain = process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'));
if (isMain) {
  const counts = process.argv
    .slice(2)
    .map(Number)
    .filter((n) => n > 0);
  await benchCapacity(counts.length > 0 ? counts : undefined);
  process.exit(0);
}
