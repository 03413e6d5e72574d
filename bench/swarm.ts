/**
 * The swarm against the reference runner, side by side in one run: a local
 * server, headless Chromium volunteers on WASM; r = 1 and r = 3 (wall time
 * and CPU time per token), r = 1 on a WAN (a one-way delay on every hop),
 * each with the mesh loop on (the default) and off (MESH_LOOP=off: every
 * token through the coordinator), and where a token's time goes along its
 * path (r = 1, loop off, stamped by the tabs).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { GREEDY } from '../shared/model/sampling.js';
import type { GraphForm } from '../shared/model/stage-graph-fused.js';
import type { TokenUpdate } from '../signal-server/coordinator/coordinator.js';
import { ensureStages } from '../signal-server/models/model-folder.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';
import { startLocalServer } from '../tools/local-server.js';
import { startLocalSwarm } from '../tools/local-swarm.js';
import type { TraceEntry } from '../web/volunteer/step-trace.js';
import { cpuMsByKind, type ProcessKind } from './cpu.js';
import { benchGraph } from './env.js';
import { type StageTrace, stepPathRows, type TracedRun } from './step-path.js';
import { median, printTable } from './table.js';

const PROMPT = 'It is a truth universally acknowledged, that a single man in possession of a good fortune';
const WARMUP_TOKENS = 128;
/** The WAN row's one-way delay per hop, as issue #11 states it. */
export const WAN_DELAY_MS = 50;
/** How long the worker data path's last trace stamps take to reach the page (web/compute/worker-replica.ts flushes every 200 ms). */
const TRACE_SETTLE_MS = 500;

export interface SwarmBenchOptions {
  readonly modelDir: string;
  readonly stages: number;
  readonly tokens: number;
  readonly repeats: number;
  /** The stage graphs' form; BENCH_GRAPH's (npm start's default, auto) where absent: see bench/env.ts. */
  readonly graph?: GraphForm;
}

export interface Setup {
  readonly r: number;
  /** The mesh loop (MESH_LOOP): the last stage sends each token straight to stage 0. */
  readonly meshLoop: boolean;
  /** How replicas send frames (FANOUT): every sender to every receiver, or a majority's copies by the rotation. Default all. */
  readonly fanout?: 'all' | 'majority';
  readonly delayMs: number;
  readonly trace: boolean;
  readonly tokens: number;
  readonly repeats: number;
  /** Where the tabs run a step's data path (?datapath=); the page's default when absent. */
  readonly dataPath?: 'main' | 'worker';
  /** After the runs, how long to measure the swarm's CPU while it serves nothing (0 or absent: not measured). */
  readonly idleMs?: number;
}

export interface Measured {
  readonly msPerToken: number;
  /** Chromium's processes and this one (server, coordinator), per token. */
  readonly cpuMsPerToken: number;
  /** The same split by process kind (this process = 'server'; Chromium's by --type), per token. */
  readonly cpuByKind: ReadonlyMap<ProcessKind, number>;
  /** Socket.IO events per token by direction and name ("in step:digest"), counted by the server. */
  readonly socketEvents: ReadonlyMap<string, number>;
  /** Data-channel messages per token, every tab's sent summed (each is received by one tab). */
  readonly channelMessages: number;
  /** Frames the tabs counted as refused, per token (the status's framesRejected, summed). */
  readonly framesRejected: number;
  /** CPU ms per second of the whole swarm while it serves nothing (Setup.idleMs; NaN when not measured). */
  readonly idleCpuMsPerS: number;
  /** Median over tokens of the sum over stages of the fastest replica's session.run. */
  readonly computeMs: number;
  readonly traced: TracedRun[];
}

/** The sum of map values per key, b − a. */
function minus<K>(b: ReadonlyMap<K, number>, a: ReadonlyMap<K, number>): Map<K, number> {
  return new Map([...b].map(([k, v]) => [k, v - (a.get(k) ?? 0)]));
}

/** Data-channel messages every tab sent so far. */
async function sentByTabs(pages: readonly Page[]): Promise<number> {
  const sent = await Promise.all(pages.map((p) => p.evaluate(async () => (await window.webswarmChannelMessages?.())?.sent ?? 0)));
  return sent.reduce((a, b) => a + b, 0);
}

/** Frames every tab counted as refused so far. */
async function rejectedByTabs(pages: readonly Page[]): Promise<number> {
  const n = await Promise.all(pages.map((p) => p.evaluate(() => window.webswarmVolunteer?.framesRejected ?? 0)));
  return n.reduce((a, b) => a + b, 0);
}

async function tabTrace(page: Page): Promise<StageTrace> {
  return page.evaluate(() => ({ stage: window.webswarmVolunteer?.stage ?? -1, entries: [...(window.webswarmTrace ?? [])] }));
}

export async function measure(o: SwarmBenchOptions, cache: string, s: Setup, expected: readonly number[]): Promise<Measured> {
  // No spot checks: their challenge steps run on this process's onnxruntime, which the reference runner
  // also uses, and a session of it is not re-entrant (they failed each other mid-run).
  const tally = new Map<string, number>();
  const server = await startLocalServer([{ dir: o.modelDir, stages: o.stages, graph: benchGraph(o.modelDir, o.graph) }], cache, {
    redundancy: s.r,
    netDelayMs: s.delayMs,
    meshLoop: s.meshLoop,
    ...(s.fanout === undefined ? {} : { fanout: s.fanout }),
    spotCheckRate: 0,
    socketEventTally: tally,
  });
  const swarm = await startLocalSwarm({
    serverUrl: server.address().url,
    volunteers: o.stages * s.r,
    trace: s.trace,
    ...(s.dataPath === undefined ? {} : { dataPath: s.dataPath }),
  });
  try {
    const coordinator = server.coordinator;
    if (coordinator === null) throw new Error('no coordinator');
    const sampling = { ...GREEDY };
    // Warm-up: WASM tiers up over the first ~100 tokens in every tab.
    await coordinator.complete({ prompt: PROMPT, maxTokens: WARMUP_TOKENS, sampling });
    const perRun: number[] = [];
    const steps: TokenUpdate[] = [];
    const traced: TracedRun[] = [];
    let cpuKinds = new Map<ProcessKind, number>();
    let events = new Map<string, number>();
    let channelMessages = 0;
    let framesRejected = 0;
    let counted = 0;
    for (let i = 0; i < s.repeats; i++) {
      if (s.trace) {
        // The worker data path hands its stamps over in batches (TRACE_FLUSH_MS): let the last run's arrive before clearing.
        await new Promise((r) => setTimeout(r, TRACE_SETTLE_MS));
        for (const p of swarm.pages) await p.evaluate(() => void (window.webswarmTrace as TraceEntry[] | undefined)?.splice(0));
      }
      const updates: TokenUpdate[] = [];
      const tokenAt = new Map<number, number>();
      const dc0 = await sentByTabs(swarm.pages);
      const rejected0 = await rejectedByTabs(swarm.pages);
      const events0 = new Map(tally);
      const cpu0 = cpuMsByKind();
      const c = await coordinator.complete({ prompt: PROMPT, maxTokens: s.tokens, sampling }, (u) => {
        tokenAt.set(u.index, performance.timeOrigin + performance.now());
        updates.push(u);
      });
      const cpuRun = minus(cpuMsByKind(), cpu0);
      const eventsRun = minus(tally, events0);
      channelMessages += (await sentByTabs(swarm.pages)) - dc0;
      framesRejected += (await rejectedByTabs(swarm.pages)) - rejected0;
      cpuKinds = new Map([...cpuRun].map(([k, v]) => [k, v + (cpuKinds.get(k) ?? 0)]));
      events = new Map([...eventsRun].map(([k, v]) => [k, v + (events.get(k) ?? 0)]));
      counted += c.tokens.length;
      if (c.tokens.join() !== expected.slice(0, s.tokens).join())
        throw new Error(
          `r = ${s.r}, ${s.delayMs} ms, mesh loop ${s.meshLoop}, data path ${s.dataPath ?? 'default'}: the swarm's tokens differ from the reference runner's`,
        );
      perRun.push(median(updates.slice(1).map((u) => u.stepMs)));
      steps.push(...updates.slice(1));
      if (s.trace) {
        await new Promise((r) => setTimeout(r, TRACE_SETTLE_MS));
        traced.push({ tabs: await Promise.all(swarm.pages.map(tabTrace)), tokenAt });
      }
    }
    let idleCpuMsPerS = Number.NaN;
    if ((s.idleMs ?? 0) > 0) {
      const total = (m: ReadonlyMap<ProcessKind, number>) => [...m.values()].reduce((a, b) => a + b, 0);
      const before = total(cpuMsByKind());
      const t0 = performance.now();
      await new Promise((r) => setTimeout(r, s.idleMs));
      idleCpuMsPerS = ((total(cpuMsByKind()) - before) * 1000) / (performance.now() - t0);
    }
    return {
      idleCpuMsPerS,
      msPerToken: median(perRun),
      cpuMsPerToken: [...cpuKinds.values()].reduce((a, b) => a + b, 0) / counted,
      cpuByKind: new Map([...cpuKinds].map(([k, v]) => [k, v / counted])),
      socketEvents: new Map([...events].filter(([, v]) => v > 0).map(([k, v]) => [k, v / counted])),
      channelMessages: channelMessages / counted,
      framesRejected: framesRejected / counted,
      computeMs: median(steps.map((u) => u.computeMs.reduce((a, b) => a + b, 0))),
      traced,
    };
  } finally {
    await swarm.close();
    await server.close();
  }
}

/**
 * The reference runner on a stage directory: a warm-up, then the median over
 * `repeats` runs of each run's median decode ms, its greedy tokens (the
 * swarm's oracle) and the prompt's ids.
 */
export async function referenceDecode(
  dir: string,
  prompt: string,
  warmup: number,
  tokens: number,
  repeats: number,
): Promise<{ msPerToken: number; tokens: number[]; promptIds: number[] }> {
  const reference = await ReferenceRunner.fromStageDir(dir);
  try {
    const ids = reference.tokenizer.encode(prompt);
    await reference.generateIds(ids, warmup, GREEDY);
    const ms: number[] = [];
    let out: number[] = [];
    for (let i = 0; i < repeats; i++) {
      const r = await reference.generateIds(ids, tokens, GREEDY);
      ms.push(median(r.stepMs.slice(1)));
      out = r.tokens;
    }
    return { msPerToken: median(ms), tokens: out, promptIds: ids };
  } finally {
    await reference.close();
  }
}

export async function benchSwarm(o: SwarmBenchOptions): Promise<void> {
  const cache = mkdtempSync(join(tmpdir(), 'webswarm-bench-swarm-'));
  try {
    const partition = { stages: o.stages };
    const graph = benchGraph(o.modelDir, o.graph);
    const { dir, manifest } = await ensureStages(o.modelDir, partition, cache, { graph });
    const { msPerToken: refMedian, tokens: expected } = await referenceDecode(dir, PROMPT, WARMUP_TOKENS, o.tokens, o.repeats);
    const wanTokens = Math.min(o.tokens, 32);
    const wanRepeats = Math.min(o.repeats, 3);
    const full = { delayMs: 0, trace: false, tokens: o.tokens, repeats: o.repeats };
    const wanRun = { delayMs: WAN_DELAY_MS, trace: false, tokens: wanTokens, repeats: wanRepeats };
    // Each setup with the loop off and on, one right after the other.
    const r1off = await measure(o, cache, { ...full, r: 1, meshLoop: false, trace: true }, expected);
    const r1 = await measure(o, cache, { ...full, r: 1, meshLoop: true }, expected);
    const r3off = await measure(o, cache, { ...full, r: 3, meshLoop: false }, expected);
    const r3 = await measure(o, cache, { ...full, r: 3, meshLoop: true }, expected);
    const wanOff = await measure(o, cache, { ...wanRun, r: 1, meshLoop: false }, expected);
    const wan = await measure(o, cache, { ...wanRun, r: 1, meshLoop: true }, expected);
    const loop = (on: boolean) => (on ? 'mesh loop' : 'MESH_LOOP=off');
    const row = (r: number, on: boolean, m: Measured) => [
      `swarm, ${o.stages} stages × r = ${r} (${o.stages * r} tabs), ${loop(on)}`,
      String(r),
      m.msPerToken.toFixed(2),
      (1000 / m.msPerToken).toFixed(0),
      (m.msPerToken / refMedian).toFixed(1),
    ];
    printTable(
      `swarm vs reference, ${manifest.modelId}, ${graph} stage graphs, greedy, median of ${o.repeats} runs × ${o.tokens} tokens after ${WARMUP_TOKENS} warm-up tokens (output checked equal to the reference every run)`,
      ['setup', 'r', 'ms/token', 'tokens/s', '× reference'],
      [
        ['reference runner (1 process)', '—', refMedian.toFixed(2), (1000 / refMedian).toFixed(0), '1.0'],
        row(1, false, r1off),
        row(1, true, r1),
        row(3, false, r3off),
        row(3, true, r3),
      ],
    );
    const split = (label: string, m: Measured) => [
      label,
      m.msPerToken.toFixed(2),
      `${m.computeMs.toFixed(2)} (${((100 * m.computeMs) / m.msPerToken).toFixed(0)} %)`,
      `${(m.msPerToken - m.computeMs).toFixed(2)} (${((100 * (m.msPerToken - m.computeMs)) / m.msPerToken).toFixed(0)} %)`,
    ];
    printTable(
      'where a token’s time goes (median per token): compute = sum over stages of the fastest replica’s session.run in its worker; the rest = WebRTC hops, the Socket.IO legs, worker messaging, voting and sampling',
      ['swarm', 'ms/token', 'compute ms', 'rest ms'],
      [
        split(`r = 1, ${loop(false)}`, r1off),
        split(`r = 1, ${loop(true)}`, r1),
        split(`r = 3, ${loop(false)}`, r3off),
        split(`r = 3, ${loop(true)}`, r3),
      ],
    );
    printTable(
      `a token's path, ${o.stages} stages × r = 1, MESH_LOOP=off, stamped in the tabs (?trace=1) and at the coordinator on this machine's clock: ms per decode step over ${o.repeats} runs × ${o.tokens} tokens (the legs' means add up to the step's)`,
      ['leg', 'mean ms', 'of the step', 'median ms'],
      stepPathRows(r1off.traced, o.stages),
    );
    const cpu = (r: number, on: boolean, m: Measured, base: Measured) => [
      `${o.stages} stages × r = ${r}, ${loop(on)}`,
      String(o.stages * r),
      m.cpuMsPerToken.toFixed(1),
      m.msPerToken.toFixed(2),
      (m.cpuMsPerToken / base.cpuMsPerToken).toFixed(2),
    ];
    printTable(
      `redundancy: CPU time per token of the whole swarm (every Chromium process + the server process, from /proc and process.cpuUsage), ${o.repeats} runs × ${o.tokens} tokens`,
      ['setup', 'tabs', 'CPU ms/token', 'wall ms/token', 'CPU × r = 1 (same loop)'],
      [cpu(1, false, r1off, r1off), cpu(3, false, r3off, r1off), cpu(1, true, r1, r1), cpu(3, true, r3, r1)],
    );
    // Loop off: coordinator → stage 0 (socket), a data-channel hop between each two stages, last stage → coordinator
    // (socket). Loop on: the last stage's token goes to stage 0 over a data channel; the coordinator is off the path.
    const wanRow = (on: boolean, m: Measured) => {
      const hops = on ? o.stages : o.stages + 1;
      const bound = m.computeMs + hops * WAN_DELAY_MS;
      return [
        `${WAN_DELAY_MS} ms per hop, ${loop(on)}`,
        String(hops),
        m.msPerToken.toFixed(2),
        m.computeMs.toFixed(2),
        bound.toFixed(2),
        (m.msPerToken / bound).toFixed(2),
      ];
    };
    printTable(
      `latency on a WAN: ${WAN_DELAY_MS} ms one-way on every hop (netDelayMs: the server's messages to tabs, the tabs' to the server and to each other), ${o.stages} stages × r = 1, median of ${wanRepeats} runs × ${wanTokens} tokens; hops per token: ${o.stages + 1} with the loop off (socket, ${o.stages - 1} data channels, socket), ${o.stages} with it on (${o.stages} data channels)`,
      ['setup', 'hops', 'ms/token', 'Σ stage compute ms', `Σ compute + hops × ${WAN_DELAY_MS} ms`, 'ratio'],
      [
        [
          'no delay (same run), mesh loop',
          '—',
          r1.msPerToken.toFixed(2),
          r1.computeMs.toFixed(2),
          r1.computeMs.toFixed(2),
          (r1.msPerToken / r1.computeMs).toFixed(2),
        ],
        wanRow(false, wanOff),
        wanRow(true, wan),
      ],
    );
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
}
