/**
 * The swarm against the reference runner, side by side in one run: a local
 * server, headless Chromium volunteers on WASM; r = 1 and r = 3 (wall time
 * and CPU time per token), r = 1 on a WAN (a one-way delay on every hop),
 * and where a token's time goes along its path (r = 1, stamped by the tabs).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { GREEDY } from '../shared/model/sampling.js';
import type { TokenUpdate } from '../signal-server/coordinator/coordinator.js';
import { ensureStages } from '../signal-server/models/model-folder.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';
import { startLocalServer } from '../tools/local-server.js';
import { startLocalSwarm } from '../tools/local-swarm.js';
import type { TraceEntry } from '../web/volunteer/step-trace.js';
import { descendantsCpuMs, selfCpuMs } from './cpu.js';
import { type StageTrace, stepPathRows, type TracedRun } from './step-path.js';
import { median, printTable } from './table.js';

const PROMPT = 'It is a truth universally acknowledged, that a single man in possession of a good fortune';
const WARMUP_TOKENS = 128;
/** The WAN row's one-way delay per hop, as issue #11 states it. */
export const WAN_DELAY_MS = 50;

export interface SwarmBenchOptions {
  readonly modelDir: string;
  readonly stages: number;
  readonly tokens: number;
  readonly repeats: number;
}

interface Setup {
  readonly r: number;
  readonly delayMs: number;
  readonly trace: boolean;
  readonly tokens: number;
  readonly repeats: number;
}

interface Measured {
  readonly msPerToken: number;
  /** Chromium's processes and this one (server, coordinator), per token. */
  readonly cpuMsPerToken: number;
  /** Median over tokens of the sum over stages of the fastest replica's session.run. */
  readonly computeMs: number;
  readonly traced: TracedRun[];
}

async function tabTrace(page: Page): Promise<StageTrace> {
  return page.evaluate(() => ({ stage: window.webswarmVolunteer?.stage ?? -1, entries: [...(window.webswarmTrace ?? [])] }));
}

export async function measure(o: SwarmBenchOptions, cache: string, s: Setup, expected: readonly number[]): Promise<Measured> {
  const server = await startLocalServer([{ dir: o.modelDir, stages: o.stages }], cache, { redundancy: s.r, netDelayMs: s.delayMs });
  const swarm = await startLocalSwarm({ serverUrl: server.address().url, volunteers: o.stages * s.r, trace: s.trace });
  try {
    const coordinator = server.coordinator;
    if (coordinator === null) throw new Error('no coordinator');
    const sampling = { ...GREEDY };
    // Warm-up: WASM tiers up over the first ~100 tokens in every tab.
    await coordinator.complete({ prompt: PROMPT, maxTokens: WARMUP_TOKENS, sampling });
    const perRun: number[] = [];
    const steps: TokenUpdate[] = [];
    const traced: TracedRun[] = [];
    let cpuMs = 0;
    let counted = 0;
    for (let i = 0; i < s.repeats; i++) {
      if (s.trace) for (const p of swarm.pages) await p.evaluate(() => void (window.webswarmTrace as TraceEntry[] | undefined)?.splice(0));
      const updates: TokenUpdate[] = [];
      const tokenAt = new Map<number, number>();
      const cpu0 = descendantsCpuMs() + selfCpuMs();
      const c = await coordinator.complete({ prompt: PROMPT, maxTokens: s.tokens, sampling }, (u) => {
        tokenAt.set(u.index, performance.timeOrigin + performance.now());
        updates.push(u);
      });
      cpuMs += descendantsCpuMs() + selfCpuMs() - cpu0;
      counted += c.tokens.length;
      if (c.tokens.join() !== expected.slice(0, s.tokens).join())
        throw new Error(`r = ${s.r}, ${s.delayMs} ms: the swarm's tokens differ from the reference runner's`);
      perRun.push(median(updates.slice(1).map((u) => u.stepMs)));
      steps.push(...updates.slice(1));
      if (s.trace) traced.push({ tabs: await Promise.all(swarm.pages.map(tabTrace)), tokenAt });
    }
    return {
      msPerToken: median(perRun),
      cpuMsPerToken: cpuMs / counted,
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
    const { dir, manifest } = await ensureStages(o.modelDir, partition, cache);
    const { msPerToken: refMedian, tokens: expected } = await referenceDecode(dir, PROMPT, WARMUP_TOKENS, o.tokens, o.repeats);
    const wanTokens = Math.min(o.tokens, 32);
    const wanRepeats = Math.min(o.repeats, 3);
    const r1 = await measure(o, cache, { r: 1, delayMs: 0, trace: true, tokens: o.tokens, repeats: o.repeats }, expected);
    const r3 = await measure(o, cache, { r: 3, delayMs: 0, trace: false, tokens: o.tokens, repeats: o.repeats }, expected);
    const wan = await measure(o, cache, { r: 1, delayMs: WAN_DELAY_MS, trace: false, tokens: wanTokens, repeats: wanRepeats }, expected);
    const row = (label: string, r: number, m: Measured) => [
      label,
      String(r),
      m.msPerToken.toFixed(2),
      (1000 / m.msPerToken).toFixed(0),
      (m.msPerToken / refMedian).toFixed(1),
    ];
    printTable(
      `swarm vs reference, ${manifest.modelId}, greedy, median of ${o.repeats} runs × ${o.tokens} tokens after ${WARMUP_TOKENS} warm-up tokens (output checked equal to the reference every run)`,
      ['setup', 'r', 'ms/token', 'tokens/s', '× reference'],
      [
        ['reference runner (1 process)', '—', refMedian.toFixed(2), (1000 / refMedian).toFixed(0), '1.0'],
        row(`swarm, ${o.stages} stages × r = 1 (${o.stages} tabs)`, 1, r1),
        row(`swarm, ${o.stages} stages × r = 3 (${o.stages * 3} tabs)`, 3, r3),
      ],
    );
    const split = (label: string, m: Measured) => [
      label,
      m.msPerToken.toFixed(2),
      `${m.computeMs.toFixed(2)} (${((100 * m.computeMs) / m.msPerToken).toFixed(0)} %)`,
      `${(m.msPerToken - m.computeMs).toFixed(2)} (${((100 * (m.msPerToken - m.computeMs)) / m.msPerToken).toFixed(0)} %)`,
    ];
    printTable(
      'where a token’s time goes (median per token): compute = sum over stages of the fastest replica’s session.run in its worker; the rest = WebRTC hops, the two Socket.IO legs, worker messaging, voting and sampling',
      ['swarm', 'ms/token', 'compute ms', 'rest ms'],
      [split('r = 1', r1), split('r = 3', r3)],
    );
    printTable(
      `a token's path, ${o.stages} stages × r = 1, stamped in the tabs (?trace=1) and at the coordinator on this machine's clock: ms per decode step over ${o.repeats} runs × ${o.tokens} tokens (the legs' means add up to the step's)`,
      ['leg', 'mean ms', 'of the step', 'median ms'],
      stepPathRows(r1.traced, o.stages),
    );
    printTable(
      `redundancy: CPU time per token of the whole swarm (every Chromium process + the server process, from /proc and process.cpuUsage), ${o.repeats} runs × ${o.tokens} tokens`,
      ['setup', 'tabs', 'CPU ms/token', 'wall ms/token', 'CPU × r = 1'],
      [
        [`${o.stages} stages × r = 1`, String(o.stages), r1.cpuMsPerToken.toFixed(1), r1.msPerToken.toFixed(2), '1.00'],
        [
          `${o.stages} stages × r = 3`,
          String(o.stages * 3),
          r3.cpuMsPerToken.toFixed(1),
          r3.msPerToken.toFixed(2),
          (r3.cpuMsPerToken / r1.cpuMsPerToken).toFixed(2),
        ],
      ],
    );
    // Today's loop: coordinator → stage 0 (socket), a data-channel hop between each two stages, last stage → coordinator (socket).
    const hops = o.stages + 1;
    const bound = wan.computeMs + hops * WAN_DELAY_MS;
    printTable(
      `latency on a WAN: ${WAN_DELAY_MS} ms one-way on every hop (netDelayMs: the server's messages to tabs, the tabs' to the server and to each other), ${o.stages} stages × r = 1, median of ${wanRepeats} runs × ${wanTokens} tokens; hops per token = ${hops} (socket, ${o.stages - 1} data channels, socket)`,
      ['setup', 'ms/token', 'Σ stage compute ms', `Σ compute + ${hops} × ${WAN_DELAY_MS} ms`, 'ratio'],
      [
        [
          'no delay (same run)',
          r1.msPerToken.toFixed(2),
          r1.computeMs.toFixed(2),
          r1.computeMs.toFixed(2),
          (r1.msPerToken / r1.computeMs).toFixed(2),
        ],
        [
          `${WAN_DELAY_MS} ms per hop`,
          wan.msPerToken.toFixed(2),
          wan.computeMs.toFixed(2),
          bound.toFixed(2),
          (wan.msPerToken / bound).toFixed(2),
        ],
      ],
    );
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
}
