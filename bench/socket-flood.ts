/**
 * A client that floods the server with 1 MB events (a `frame` each, the
 * largest thing a client may send, from a socket that never says hello) for
 * FLOOD_S seconds from an address other than the server's (127.0.0.2),
 * connecting again each time it is cut off, against the server with its byte
 * budget (SOCKET_BYTE_BUDGET, one per address) and without one (as before),
 * side by side in one run. The server runs in a process of its own
 * (bench/capacity-server.ts); while the flood runs, a prober asks /healthz
 * every 50 ms. Per row: what the flooder got served, how often it was cut off,
 * /healthz's latency idle and under the flood, and the server's CPU and memory
 * growth. Run alone: `node --import tsx bench/socket-flood.ts`;
 * BENCH_FLOOD_S (default 4), BENCH_FLOOD_REPEATS (default 3).
 */
import { PROTOCOL_VERSION } from '../shared/protocol/version.js';
import { connectClient } from '../signal-server/testing/socket-client.js';
import { quantile, type ServerChild, serverMetrics, startServer } from './capacity.js';
import { median, printTable } from './table.js';

const EVENT_BYTES = 1_000_000;
const PROBE_EVERY_MS = 50;
/** Not one of the server's LOCAL_ADDRESSES: counted as another machine's client. */
const FLOODER_ADDRESS = '127.0.0.2';

interface FloodRun {
  readonly servedMiB: number;
  readonly sentMiB: number;
  /** Times the server cut the flooder off. */
  readonly cuts: number;
  readonly idleMs: number[];
  readonly floodMs: number[];
  readonly cpuS: number;
  readonly rssMiB: number;
}

async function healthz(url: string): Promise<number> {
  const t0 = performance.now();
  await (await fetch(`${url}/healthz`)).text();
  return performance.now() - t0;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function floodOnce(server: ServerChild, seconds: number): Promise<FloodRun> {
  const url = server.url;
  const idleMs: number[] = [];
  for (let i = 0; i < 20; i++) idleMs.push(await healthz(url));
  const before = await serverMetrics(url);
  let served = 0;
  let sent = 0;
  let cuts = 0;
  const floodMs: number[] = [];
  const end = performance.now() + seconds * 1000;
  const prober = (async () => {
    while (performance.now() < end) {
      floodMs.push(await healthz(url));
      await sleep(PROBE_EVERY_MS);
    }
  })();
  const data = new Uint8Array(EVENT_BYTES);
  while (performance.now() < end) {
    const c = connectClient(url, { protocol: PROTOCOL_VERSION, role: 'volunteer' }, FLOODER_ADDRESS);
    c.on('server:error', (e) => {
      if (e.code === 'ERR_NOT_LINKED') served += 1;
      if (e.code === 'ERR_RATE_LIMITED') cuts += 1;
    });
    const up = await new Promise<boolean>((resolve) => {
      c.once('connect', () => resolve(true));
      c.once('connect_error', () => resolve(false));
    });
    // Sends until cut off (or the time is up), 8 events a turn, as fast as the client can.
    for (let i = 0; up && c.connected && performance.now() < end; i++) {
      c.emit('frame', { to: 'stage-1', data });
      sent += 1;
      if (i % 8 === 7) await sleep(1);
    }
    c.disconnect();
    if (!up) await sleep(10);
  }
  await prober;
  await sleep(500);
  const after = await serverMetrics(url);
  return {
    servedMiB: (served * EVENT_BYTES) / (1024 * 1024),
    sentMiB: (sent * EVENT_BYTES) / (1024 * 1024),
    cuts,
    idleMs,
    floodMs,
    cpuS: after.cpuS - before.cpuS,
    rssMiB: (after.rssBytes - before.rssBytes) / (1024 * 1024),
  };
}

export async function benchSocketFlood(o: { seconds: number; repeats: number }): Promise<void> {
  const setups = [
    { label: 'no byte budget (before)', env: { BENCH_BYTE_BUDGET: 'off' } },
    { label: 'SOCKET_BYTE_BUDGET (16 MiB/s an address, bursts of 64)', env: {} },
  ] as const;
  const runs = new Map<string, FloodRun[]>(setups.map((s) => [s.label, []]));
  for (let r = 0; r < o.repeats; r++) {
    // Alternated, each on a fresh server process: neither row gets the warmer machine.
    for (const s of setups) {
      const server = await startServer(s.env);
      try {
        runs.get(s.label)?.push(await floodOnce(server, o.seconds));
      } finally {
        server.child.kill();
      }
    }
  }
  const rows = setups.map((s) => {
    const xs = runs.get(s.label) ?? [];
    const flood = xs.flatMap((x) => x.floodMs);
    return [
      s.label,
      `${median(xs.map((x) => x.servedMiB)).toFixed(0)} of ${median(xs.map((x) => x.sentMiB)).toFixed(0)}`,
      median(xs.map((x) => x.cuts)).toFixed(0),
      median(xs.flatMap((x) => x.idleMs)).toFixed(1),
      `${median(flood).toFixed(1)} / ${quantile(flood, 0.9).toFixed(1)}`,
      median(xs.map((x) => x.cpuS)).toFixed(2),
      median(xs.map((x) => x.rssMiB)).toFixed(0),
    ];
  });
  printTable(
    `a client floods 1 MB events for ${o.seconds} s, connecting again when cut off (${o.repeats} runs each, medians; /healthz every ${PROBE_EVERY_MS} ms, server in its own process)`,
    ['server', 'MiB served of sent', 'cut off', '/healthz idle ms', 'under flood ms (median / p90)', 'server CPU s', 'RSS growth MiB'],
    rows,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await benchSocketFlood({ seconds: Number(process.env.BENCH_FLOOD_S ?? 4), repeats: Number(process.env.BENCH_FLOOD_REPEATS ?? 3) });
}
