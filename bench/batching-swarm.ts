/**
 * Batching across sessions through the real swarm: a local server and
 * headless Chromium volunteers on WASM (fused stages, r = 1), one request
 * alone vs 8 at once, aggregate tokens per second of wall time, with the tabs'
 * batching off (?batch=off) and on. Every request's tokens are checked
 * against the reference runner's.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { GREEDY } from '../shared/model/sampling.js';
import { ensureStages } from '../signal-server/models/model-folder.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';
import { budgetCounts } from '../testing/metrics-scrape.js';
import { startLocalServer } from '../tools/local-server.js';
import { startLocalSwarm } from '../tools/local-swarm.js';
import { cpuMsByKind, PROCESS_KINDS, type ProcessKind } from './cpu.js';
import { median, printTable } from './table.js';

const PROMPT = 'It is a truth universally acknowledged, that a single man in possession of a good fortune must be in want of a wife';
const CONCURRENT = 8;

export interface SwarmBatchingOptions {
  readonly modelDir: string;
  readonly stages: number;
  readonly tokens: number;
  readonly repeats: number;
}

export async function benchBatchingSwarm(o: SwarmBatchingOptions): Promise<void> {
  const cache = mkdtempSync(join(tmpdir(), 'webswarm-bench-batching-swarm-'));
  const partition = { stages: o.stages };
  try {
    const { dir, manifest } = await ensureStages(o.modelDir, partition, cache, { graph: 'fused' });
    const reference = await ReferenceRunner.fromStageDir(dir);
    const ids = reference.tokenizer.encode(PROMPT);
    // Prompts of 8 lengths, as text the coordinator tokenizes back to these ids.
    const prompts = Array.from({ length: CONCURRENT }, (_, i) => reference.tokenizer.decode(ids.slice(0, 9 + 2 * i)));
    const expected = new Map<string, string>();
    for (const p of prompts) expected.set(p, (await reference.generateIds(reference.tokenizer.encode(p), o.tokens, GREEDY)).tokens.join());
    await reference.close();
    const rows: string[][] = [];
    const cpuRows: string[][] = [];
    // A swarm of tabs per setting, one after the other (a tab's batching is set when its stage loads).
    for (const batching of [false, true]) {
      const server = await startLocalServer([{ dir: o.modelDir, stages: o.stages, graph: 'fused' }], cache, { redundancy: 1 });
      const swarm = await startLocalSwarm({ serverUrl: server.address().url, volunteers: o.stages, batching });
      try {
        const coordinator = server.coordinator;
        if (coordinator === null) throw new Error('no coordinator');
        /** CPU ms a token by process kind over the measured runs, per setting ('1' or '8'). */
        const cpu = new Map<string, Map<ProcessKind, number>>();
        const run = async (ps: readonly string[], tokens: number, measured = false): Promise<number> => {
          const c0 = cpuMsByKind();
          const t0 = performance.now();
          await Promise.all(
            ps.map(async (prompt) => {
              const c = await coordinator.complete({ prompt, maxTokens: tokens, sampling: { ...GREEDY } });
              if (tokens === o.tokens && c.tokens.join() !== expected.get(prompt))
                throw new Error(`"${prompt}": the swarm's tokens differ from the reference runner's`);
            }),
          );
          const wall = performance.now() - t0;
          if (measured) {
            const c1 = cpuMsByKind();
            const key = String(ps.length);
            const acc = cpu.get(key) ?? new Map<ProcessKind, number>();
            for (const k of PROCESS_KINDS)
              acc.set(k, (acc.get(k) ?? 0) + ((c1.get(k) ?? 0) - (c0.get(k) ?? 0)) / (ps.length * tokens * o.repeats));
            cpu.set(key, acc);
          }
          return (ps.length * tokens * 1000) / wall;
        };
        // Warm-up: WASM tiers up over the first hundred tokens in every tab, and a batch's kernels are other code.
        await run(prompts.slice(0, 1), 128);
        await run(prompts, 32);
        const one: number[] = [];
        const eight: number[] = [];
        for (let r = 0; r < o.repeats; r++) {
          one.push(await run(prompts.slice(0, 1), o.tokens, true));
          eight.push(await run(prompts, o.tokens, true));
        }
        for (const [key, byKind] of cpu) {
          const total = [...byKind.values()].reduce((a, b) => a + b, 0);
          cpuRows.push([
            batching ? 'on' : 'off',
            key === '1' ? '1 request' : `${CONCURRENT} at once`,
            ...PROCESS_KINDS.map((k) => (byKind.get(k) ?? 0).toFixed(2)),
            total.toFixed(2),
          ]);
        }
        const ratio = median(eight) / median(one);
        // Reports a fast swarm's volunteers owe are not counted by their sockets' budgets: nothing honest is dropped.
        const budget = await budgetCounts(server.address().url);
        rows.push([
          batching ? 'on' : 'off',
          median(one).toFixed(1),
          median(eight).toFixed(1),
          `${ratio.toFixed(2)}×`,
          `${budget.dropped} / ${budget.limited}`,
        ]);
      } finally {
        await swarm.close();
        await server.close();
      }
    }
    printTable(
      `batching across sessions through the swarm: ${manifest.modelId}, fused, ${o.stages} stages × r = 1 (${o.stages} Chromium tabs, WASM), aggregate tokens/s of 1 request and of ${CONCURRENT} at once (median of ${o.repeats} runs × ${o.tokens} tokens per request, every request's tokens the reference runner's; load average ${loadavg()[0]?.toFixed(1)} at the end)`,
      ['batching in the tabs', '1 request', `${CONCURRENT} at once`, `${CONCURRENT} / 1`, 'socket events dropped / sockets cut off'],
      rows,
    );
    printTable(
      `the same runs: CPU ms a token (mean over the measured runs) by process: the server (this process) and Chromium's by kind`,
      ['batching', 'requests', ...PROCESS_KINDS, 'all'],
      cpuRows,
    );
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
}
