/**
 * The floor under a distributed token on this machine: what one hop costs
 * with nothing else on it. Two Chromium tabs of one browser (separate
 * contexts, so separate renderer processes, as the swarm's tabs) on loopback
 * ping-pong over a raw RTCDataChannel, main thread to main thread and worker
 * to worker (a negotiated channel transferred to a dedicated worker in the
 * task that made it, as web/volunteer/worker-path.ts does); for comparison a
 * MessageChannel between two workers, a page and its own worker, and
 * Socket.IO to a server on 127.0.0.1. One-way = round trip ÷ 2. Each set is
 * measured with this project's Chromium flags and again with the background
 * throttling flags, which the product cannot set for its volunteers.
 *
 * A ring of three tabs passes a message round as the mesh loop passes a
 * token, each worker busy for a stage's compute time before it forwards:
 * spinning, or reading through a stage's worth of weights in memory (which
 * evicts what the hop's other threads had cached): the hops as they cost
 * when the tabs compute between them.
 *
 * Then both #11 targets in one run against the best they allow here: Σ stage
 * compute + the 3 hops of a token at the floor (mesh loop: 0 → 1 and 1 → 2
 * carry hidden states, 2 → 0 a token).
 *
 *   node --import tsx bench/hop-floor.ts (after npm run build), or in npm run bench (BENCH_HOP_FLOOR=0 skips it)
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import type { Page } from 'playwright-core';
import { Server } from 'socket.io';
import { DEFAULT_MODEL, modelDir } from '../signal-server/defaults.js';
import { ensureRandomCheckpoint, SMOLLM_135M_SHAPE } from '../testing/random-checkpoint.js';
import { launchChromium } from '../tools/local-swarm.js';
import { benchDistribution, SMOLLM_SHAPED_DIR, SMOLLM_SHAPED_SEED } from './distribution.js';
import { PAGE_HTML, STREAM_MB, WORKER_JS } from './hop-floor-page.js';
import { median, printTable } from './table.js';
import { benchTokenBreakdown } from './token-breakdown.js';

/** The payloads: a mesh-loop token frame, about a hidden state of the SmolLM-shaped model (576 floats), and austen-2m's logits (2 048 floats). */
export const HOP_SIZES = [64, 2048, 8192] as const;
/** Flags that stop Chromium throttling background tabs' timers and renderers: measured with and without. */
export const THROTTLE_FLAGS = ['--disable-background-timer-throttling', '--disable-renderer-backgrounding'] as const;

type Loop = (size: number, n: number, warm: number, deadlineMs: number) => Promise<number[]>;

export interface FloorRow {
  readonly path: string;
  readonly size: number;
  /** One-way ms: half of each round trip. */
  readonly median: number;
  readonly p90: number;
  readonly count: number;
}

export interface FloorOptions {
  /** Timed round trips per row (at most: each loop also stops at deadlineMs). */
  readonly roundTrips: number;
  readonly warm: number;
  readonly deadlineMs: number;
  readonly extraArgs: readonly string[];
  /** The ring's stand-ins for a stage's compute before each tab forwards (0 ms: hops alone): spinning, or streaming memory. */
  readonly busy: readonly { readonly ms: number; readonly how: BusyHow }[];
}

/** How a ring tab is busy: spinning on the clock, or reading through STREAM_MB of memory (a stage's weights). */
export type BusyHow = 'spin' | 'stream';

/** The ring's payload: about a SmolLM-135M-shaped hidden state. */
const RING_BYTES = 2048;

/** The ring's rows: hops alone; busy as austen-2m's stage (1.5 ms, its weights in the caches); busy as a SmolLM-shaped stage (8 ms), spinning and streaming its weights. */
const RING_BUSY: FloorOptions['busy'] = [
  { ms: 0, how: 'spin' },
  { ms: 1.5, how: 'spin' },
  { ms: 8, how: 'spin' },
  { ms: 8, how: 'stream' },
];

/** A ring row's name, which the summary finds its hops by. */
function ringPath(ms: number, how: BusyHow): string {
  const doing = how === 'stream' ? `reading through ${STREAM_MB} MB for` : 'spinning';
  return `ring of 3 tabs, worker → worker, each ${doing} ${ms} ms before it forwards (lap − busy) ÷ 3`;
}

function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] as number;
}

/** A static server for the page and worker, with Socket.IO (its client served) echoing `hop`; cross-origin isolated for 5 µs timers. */
async function startPageServer(): Promise<{ url: string; close: () => Promise<void> }> {
  const http = createServer((req, res) => {
    const js = req.url === '/hop-worker.js';
    res.writeHead(js || req.url === '/' ? 200 : 404, {
      'content-type': js ? 'text/javascript' : 'text/html',
      'cross-origin-opener-policy': 'same-origin',
      'cross-origin-embedder-policy': 'require-corp',
    });
    res.end(js ? WORKER_JS : req.url === '/' ? PAGE_HTML : '');
  });
  const io = new Server(http, { serveClient: true });
  io.on('connection', (s) => s.on('hop', (b: unknown, ack: unknown) => typeof ack === 'function' && ack(b)));
  http.listen(0, '127.0.0.1');
  await once(http, 'listening');
  const { port } = http.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    close: async () => {
      await io.close();
    },
  };
}

async function pair(a: Page, b: Page, mode: 'main' | 'worker'): Promise<void> {
  const offer = await a.evaluate(([m]) => window.hop.connect(m, 'ping', null), [mode] as const);
  const answer = await b.evaluate(([m, o]) => window.hop.connect(m, 'echo', o), [mode, offer] as const);
  await a.evaluate((s) => window.hop.accept(s), answer);
  await Promise.all([a.evaluate(() => window.hop.open()), b.evaluate(() => window.hop.open())]);
}

/** Links page i's worker to page i+1's (the last to the first), as the mesh loop's token goes round. */
async function ring(pages: readonly Page[]): Promise<void> {
  for (let i = 0; i < pages.length; i++) {
    const from = pages[i] as Page;
    const to = pages[(i + 1) % pages.length] as Page;
    const offer = await from.evaluate(() => window.hop.ringLink('out', null));
    const answer = await to.evaluate((o) => window.hop.ringLink('in', o), offer);
    await from.evaluate((s) => window.hop.ringAccept('out', s), answer);
  }
  await Promise.all(pages.map((p) => p.evaluate(() => window.hop.ringReady())));
}

/** Every path × payload, one after the other in one browser; and what the tabs say of their own state. */
export async function measureHopFloor(o: FloorOptions): Promise<{ rows: FloorRow[]; conditions: string }> {
  const site = await startPageServer();
  const browser = await launchChromium({ webgpu: false, extraArgs: o.extraArgs });
  try {
    const [a, b, c] = await Promise.all(
      [0, 1, 2].map(async () => {
        const page = await (await browser.newContext()).newPage();
        await page.goto(site.url);
        return page;
      }),
    );
    if (a === undefined || b === undefined || c === undefined) throw new Error('three pages expected');
    const rows: FloorRow[] = [];
    const run = async (path: string, loop: Loop) => {
      for (const size of HOP_SIZES) {
        const rtts = await loop(size, o.roundTrips, o.warm, o.deadlineMs);
        const oneWay = rtts.map((x) => x / 2);
        rows.push({ path, size, median: median(oneWay), p90: quantile(oneWay, 0.9), count: rtts.length });
      }
    };
    const ping: Loop = (...args) => a.evaluate(([s, n, w, d]) => window.hop.ping(s, n, w, d), args);
    await pair(a, b, 'main');
    await run('RTCDataChannel, tab main thread → tab main thread', ping);
    await pair(a, b, 'worker');
    await run('RTCDataChannel, tab worker → tab worker (transferred)', ping);
    await run('MessageChannel, worker → worker (one tab)', (...args) => a.evaluate(([s, n, w, d]) => window.hop.ports(s, n, w, d), args));
    await run('postMessage, page → its own worker', (...args) => a.evaluate(([s, n, w, d]) => window.hop.self(s, n, w, d), args));
    await run('Socket.IO, page → server on 127.0.0.1', (...args) => a.evaluate(([s, n, w, d]) => window.hop.socket(s, n, w, d), args));
    await ring([a, b, c]);
    for (const { ms: busyMs, how } of o.busy) {
      for (const p of [b, c]) await p.evaluate(([ms, h]) => window.hop.ringFollow(ms, h), [busyMs, how] as const);
      const laps = await a.evaluate(([s, ms, h, n, w, d]) => window.hop.ringLead(s, ms, h, n, w, d), [
        RING_BYTES,
        busyMs,
        how,
        o.roundTrips,
        o.warm,
        o.deadlineMs,
      ] as const);
      // A lap: 3 hops and the two followers' spins (the leader spins before it starts the clock).
      const perHop = laps.map((x) => (x - 2 * busyMs) / 3);
      rows.push({
        path: ringPath(busyMs, how),
        size: RING_BYTES,
        median: median(perHop),
        p90: quantile(perHop, 0.9),
        count: laps.length,
      });
    }
    const seen = await Promise.all([a, b, c].map((p) => p.evaluate(() => window.hop.conditions())));
    const state = seen.map((c) => `${c.visibility}${c.focus ? ', focused' : ''}${c.isolated ? ', isolated' : ''}`).join(' / ');
    const flags = o.extraArgs.length === 0 ? "the project's flags (tools/local-swarm.ts)" : `+ ${o.extraArgs.join(' ')}`;
    return { rows, conditions: `${flags}; the tabs say: ${state}` };
  } finally {
    await browser.close();
    await site.close();
  }
}

export interface HopFloorBenchOptions {
  readonly roundTrips: number;
  /** austen-2m's swarm run (tokens, repeats) and the SmolLM-shaped one's (distTokens, distRepeats). */
  readonly tokens: number;
  readonly repeats: number;
  readonly distTokens: number;
  readonly distRepeats: number;
}

/**
 * The floor (with and without the throttling flags), then both #11 targets
 * side by side in one run against it: austen-2m's swarm against the reference
 * runner, its token broken down leg by leg; the SmolLM-shaped swarm against
 * one tab (bench/distribution.ts).
 */
export async function benchHopFloor(o: HopFloorBenchOptions): Promise<void> {
  const load0 = loadavg()[0] ?? 0;
  const floors: { conditions: string; rows: FloorRow[] }[] = [];
  for (const extraArgs of [[], [...THROTTLE_FLAGS]])
    floors.push(await measureHopFloor({ roundTrips: o.roundTrips, warm: 50, deadlineMs: 30_000, extraArgs, busy: RING_BUSY }));
  const load1 = loadavg()[0] ?? 0;
  for (const f of floors)
    printTable(
      `hop floor: one-way ms (round trip ÷ 2) over up to ${o.roundTrips} round trips after 50 warm-up ones, Chromium tabs on loopback; ${f.conditions}; load average ${load0.toFixed(1)} → ${load1.toFixed(1)}`,
      ['path', 'bytes', 'median ms', 'p90 ms', 'round trips'],
      f.rows.map((r) => [r.path, String(r.size), r.median.toFixed(3), r.p90.toFixed(3), String(r.count)]),
    );
  const base = floors[0]?.rows ?? [];
  const worker = (size: number) => base.find((r) => r.path.includes('tab worker') && r.size === size)?.median ?? Number.NaN;
  // A hidden state hop at the 2 KB figure (austen-2m's is 640 bytes), the mesh loop's token hop at 64 bytes.
  const floorOf = (_from: number, to: number) => (to === 0 ? worker(64) : worker(2048));
  const hops = 2 * worker(2048) + worker(64);
  // A token's 3 hops as the ring measured them between busy tabs: austen-2m's stages as the 1.5 ms spin (its weights
  // fit in the caches), the SmolLM-shaped model's as the 8 ms stream (its weights do not).
  const ringHop = (ms: number, how: BusyHow) => base.find((r) => r.path === ringPath(ms, how))?.median ?? Number.NaN;
  const austenBusyHops = 3 * ringHop(1.5, 'spin');
  const smolBusyHops = 3 * ringHop(8, 'stream');

  const austen = await benchTokenBreakdown({
    label: DEFAULT_MODEL,
    modelDir: modelDir(DEFAULT_MODEL),
    tokens: o.tokens,
    repeats: o.repeats,
    floorOf,
  });
  // The same legs on the model the distribution target is about: where its swarm's step goes beyond its compute.
  await benchTokenBreakdown({
    label: 'SmolLM-135M-shaped',
    modelDir: ensureRandomCheckpoint(SMOLLM_SHAPED_DIR, SMOLLM_135M_SHAPE, SMOLLM_SHAPED_SEED),
    tokens: o.distTokens,
    repeats: o.distRepeats,
    floorOf,
  });
  const smol = await benchDistribution({ stages: 3, tokens: o.distTokens, repeats: o.distRepeats, warmup: 16 });
  printTable(
    `the #11 targets in this run against the floor: 3 stages × r = 1, mesh loop, WASM; floor = Σ stage compute + 3 worker → worker hops at the floor (2 × 2 KB + 64 B: ${hops.toFixed(2)} ms); busy ring = Σ stage compute + 3 hops of the ring of busy tabs (austen-2m: spinning 1.5 ms, ${austenBusyHops.toFixed(2)} ms; SmolLM-135M-shaped: reading through ${STREAM_MB} MB for 8 ms, ${smolBusyHops.toFixed(2)} ms); load average now ${(loadavg()[0] ?? 0).toFixed(1)}`,
    ['target', 'measured', 'Σ stage compute ms', 'best at the floor', 'best with the busy ring', 'swarm ms/token', 'floor ms/token'],
    [
      // Against the reference runner on the swarm's own stages, and where they are fused, on plain ones too.
      ...[
        { on: `the same ${austen.graph}`, refMs: austen.refMs },
        ...(austen.graph === 'plain' ? [] : [{ on: 'plain', refMs: austen.plainRefMs }]),
      ].map(({ on, refMs }) => [
        `${DEFAULT_MODEL} (${austen.graph} graphs): swarm ≤ 3 × the reference runner on ${on} stages (${refMs.toFixed(2)} ms)`,
        `${(austen.msPerToken / refMs).toFixed(1)} ×`,
        `${austen.computeMs.toFixed(2)} (swarm)`,
        `${((austen.computeMs + hops) / refMs).toFixed(1)} ×`,
        `${((austen.computeMs + austenBusyHops) / refMs).toFixed(1)} ×`,
        austen.msPerToken.toFixed(2),
        (austen.computeMs + hops).toFixed(2),
      ]),
      [
        'SmolLM-135M-shaped: swarm ≥ 0.9 × one tab',
        `${(smol.tab / smol.swarm).toFixed(2)} × (each run: ${smol.pairRatios.map((x) => x.toFixed(2)).join(', ')})`,
        `${smol.tab.toFixed(2)} (one tab); ${smol.swarmComputeMs.toFixed(2)} (swarm)`,
        `${(smol.tab / (smol.tab + hops)).toFixed(2)} ×`,
        `${(smol.tab / (smol.tab + smolBusyHops)).toFixed(2)} ×`,
        smol.swarm.toFixed(2),
        (smol.tab + hops).toFixed(2),
      ],
    ],
  );
}

declare global {
  interface Window {
    hop: {
      conditions(): { visibility: string; focus: boolean; isolated: boolean };
      ringLink(slot: 'in' | 'out', offer: string | null): Promise<string>;
      ringAccept(slot: 'out', answer: string): Promise<void>;
      ringReady(): Promise<void>;
      ringFollow(busyMs: number, how: BusyHow): void;
      ringLead: (size: number, busyMs: number, how: BusyHow, n: number, warm: number, deadlineMs: number) => Promise<number[]>;
      connect(mode: 'main' | 'worker', role: 'ping' | 'echo', offer: string | null): Promise<string>;
      accept(answer: string): Promise<void>;
      open(): Promise<void>;
      ping: (size: number, n: number, warm: number, deadlineMs: number) => Promise<number[]>;
      ports: (size: number, n: number, warm: number, deadlineMs: number) => Promise<number[]>;
      self: (size: number, n: number, warm: number, deadlineMs: number) => Promise<number[]>;
      socket: (size: number, n: number, warm: number, deadlineMs: number) => Promise<number[]>;
    };
  }
}

const isMain = process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'));
if (isMain) {
  await benchHopFloor({
    roundTrips: Number(process.env.BENCH_HOP_ROUND_TRIPS ?? 1000),
    tokens: Number(process.env.BENCH_TOKENS ?? 64),
    repeats: Number(process.env.BENCH_REPEATS ?? 3),
    distTokens: Number(process.env.BENCH_DIST_TOKENS ?? 24),
    distRepeats: Number(process.env.BENCH_DIST_REPEATS ?? 5),
  });
}
