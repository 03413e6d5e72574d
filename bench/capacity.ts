/**
 * Coordinator capacity (issue 13's table, one process): simulated volunteers
 * (socket.io clients in this process that speak the protocol: hello, then
 * idle; no WebRTC) join a server running in its own process, 1 000 / 5 000 /
 * 10 000 of them. Measured: the server's resident memory per volunteer (its own
 * /metrics), its CPU time, the time from hello to the stage assignment, the
 * signalling relay latency between linked peers (p50 / p99), and the
 * swarm:status traffic that 50 pages receive while the volunteers join.
 *
 *   npx tsx bench/capacity.ts [counts…]    (default 1000 5000 10000)
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { PROTOCOL_VERSION } from '../shared/protocol/version.js';
import { type Client, connectClient, next } from '../signal-server/testing/socket-client.js';
import { printTable } from './table.js';

const BATCH = 200;
const PAGES = 50;
const RELAY_SAMPLES = 400;

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? Number.NaN;
}

async function startServer(): Promise<{ child: ChildProcess; url: string; lines: ReturnType<typeof createInterface> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/capacity-server.ts'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const line = await new Promise<string>((resolve, reject) => {
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`the capacity server exited with ${code}`)));
  });
  return { child, url: line.trim(), lines };
}

async function serverMetrics(url: string): Promise<{ rssBytes: number; cpuS: number }> {
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

async function run(count: number): Promise<string[]> {
  const { child, url, lines } = await startServer();
  const clients: Client[] = [];
  try {
    // Pages that follow the status, as the landing page does.
    let statusMessages = 0;
    let statusBytes = 0;
    const pages: Client[] = [];
    for (let i = 0; i < PAGES; i++) {
      const p = connectClient(url, { protocol: PROTOCOL_VERSION, role: 'requester' });
      p.on('swarm:status', (m) => {
        statusMessages += 1;
        statusBytes += JSON.stringify(m).length;
      });
      await new Promise<void>((r) => p.once('connect', () => r()));
      p.emit('status:subscribe');
      pages.push(p);
    }
    clients.push(...pages);
    const before = await serverMetrics(url);
    const assignMs: number[] = [];
    const ids: { c: Client; id: string }[] = [];
    const t0 = performance.now();
    for (let done = 0; done < count; done += BATCH) {
      const batch = Array.from({ length: Math.min(BATCH, count - done) }, async () => {
        const c = connectClient(url);
        clients.push(c);
        await new Promise<void>((r) => c.once('connect', () => r()));
        const welcome = next<{ volunteerId: string }>(c, 'volunteer:welcome');
        const assign = next<unknown>(c, 'volunteer:assign');
        const s = performance.now();
        c.emit('volunteer:hello', { backend: 'wasm', adapter: null, fault: null, clientKey: null });
        const id = (await welcome).volunteerId;
        await assign;
        assignMs.push(performance.now() - s);
        ids.push({ c, id });
      });
      await Promise.all(batch);
    }
    const joinS = (performance.now() - t0) / 1000;
    await new Promise((r) => setTimeout(r, 1500)); // the last coalesced status
    const after = await serverMetrics(url);
    // Relay latency: pairs linked by the coordinator exchange signalling through the server.
    const relayMs: number[] = [];
    const pairs = ids.slice(0, RELAY_SAMPLES * 2);
    for (let i = 0; i + 1 < pairs.length; i += 2) child.stdin?.write(`link ${pairs[i]?.id} ${pairs[i + 1]?.id}\n`);
    const linked = new Promise<void>((r) => lines.once('line', () => r()));
    child.stdin?.write('done\n');
    await linked;
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
      ((after.rssBytes - before.rssBytes) / count / 1024).toFixed(1),
      (after.cpuS - before.cpuS).toFixed(2),
      joinS.toFixed(1),
      `${quantile(assignMs, 0.5).toFixed(1)} / ${quantile(assignMs, 0.99).toFixed(1)}`,
      `${quantile(relayMs, 0.5).toFixed(2)} / ${quantile(relayMs, 0.99).toFixed(2)}`,
      `${statusMessages} (${(statusBytes / 1024).toFixed(1)} KB)`,
    ];
  } finally {
    for (const c of clients) c.disconnect();
    child.kill('SIGTERM');
  }
}

/** The coordinator table of `npm run bench`. */
export async function benchCapacity(counts: readonly number[] = [1000, 5000, 10000]): Promise<void> {
  const rows: string[][] = [];
  for (const n of counts) rows.push(await run(n));
  printTable(
    `coordinator capacity, one process: simulated volunteers join in batches of ${BATCH}; ${PAGES} pages follow swarm:status`,
    [
      'volunteers',
      'server KB per volunteer',
      'server CPU s',
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
