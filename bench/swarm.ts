/**
 * The swarm against the reference runner, side by side in one run: a local
 * server, headless Chromium volunteers on WASM, r = 1 and r = 3, each with the
 * mesh loop on (the default) and off (MESH_LOOP=off: every token through the
 * coordinator). Alone: `node --import tsx bench/swarm.ts` (BENCH_MODEL,
 * BENCH_TOKENS, BENCH_REPEATS as for npm run bench).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GREEDY } from '../shared/model/sampling.js';
import type { TokenUpdate } from '../signal-server/coordinator/coordinator.js';
import { ensureStages } from '../signal-server/models/model-folder.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';
import { startLocalServer } from '../tools/local-server.js';
import { startLocalSwarm } from '../tools/local-swarm.js';
import { median, printTable } from './table.js';

const PROMPT = 'It is a truth universally acknowledged, that a single man in possession of a good fortune';

export interface SwarmBenchOptions {
  readonly modelDir: string;
  readonly stages: number;
  readonly tokens: number;
  readonly repeats: number;
}

export async function benchSwarm(o: SwarmBenchOptions): Promise<void> {
  const cache = mkdtempSync(join(tmpdir(), 'webswarm-bench-swarm-'));
  try {
    const partition = { stages: o.stages };
    const { dir, manifest } = await ensureStages(o.modelDir, partition, cache);
    const reference = await ReferenceRunner.fromStageDir(dir);
    const promptIds = reference.tokenizer.encode(PROMPT);
    const rows: string[][] = [];
    const breakdown: string[][] = [];
    // Warm-up, then the reference runner's decode time on the same prompt.
    await reference.generateIds(promptIds, 128, GREEDY);
    const refMs: number[] = [];
    for (let i = 0; i < o.repeats; i++) {
      const r = await reference.generateIds(promptIds, o.tokens, GREEDY);
      refMs.push(median(r.stepMs.slice(1)));
    }
    const refMedian = median(refMs);
    rows.push(['reference runner (1 process)', '—', refMedian.toFixed(2), (1000 / refMedian).toFixed(0), '1.00']);
    for (const [r, meshLoop] of [
      [1, true],
      [1, false],
      [3, true],
      [3, false],
    ] as const) {
      const loop = meshLoop ? 'mesh loop' : 'MESH_LOOP=off';
      // No spot checks: their challenge steps run on this process's onnxruntime, which the reference runner
      // below also uses, and a session of it is not re-entrant (they failed each other mid-run).
      const server = await startLocalServer([{ dir: o.modelDir, stages: o.stages }], cache, { redundancy: r, meshLoop, spotCheckRate: 0 });
      const swarm = await startLocalSwarm({ serverUrl: server.address().url, volunteers: o.stages * r });
      try {
        const coordinator = server.coordinator;
        if (coordinator === null) throw new Error('no coordinator');
        const sampling = { ...GREEDY };
        // Warm-up: WASM tiers up over the first ~100 tokens in every tab.
        await coordinator.complete({ prompt: PROMPT, maxTokens: 128, sampling });
        const perRun: number[] = [];
        const steps: TokenUpdate[] = [];
        for (let i = 0; i < o.repeats; i++) {
          const updates: TokenUpdate[] = [];
          const c = await coordinator.complete({ prompt: PROMPT, maxTokens: o.tokens, sampling }, (u) => updates.push(u));
          const expected = (await reference.generateIds(promptIds, o.tokens, GREEDY)).tokens;
          if (c.tokens.join() !== expected.join()) throw new Error(`r = ${r}: the swarm's tokens differ from the reference runner's`);
          perRun.push(median(updates.slice(1).map((u) => u.stepMs)));
          steps.push(...updates.slice(1));
        }
        const ms = median(perRun);
        rows.push([
          `swarm, ${o.stages} stages × r = ${r} (${o.stages * r} tabs), ${loop}`,
          String(r),
          ms.toFixed(2),
          (1000 / ms).toFixed(0),
          (ms / refMedian).toFixed(1),
        ]);
        const compute = median(steps.map((u) => u.computeMs.reduce((a, b) => a + b, 0)));
        breakdown.push([
          `r = ${r}, ${loop}`,
          ms.toFixed(2),
          `${compute.toFixed(2)} (${((100 * compute) / ms).toFixed(0)} %)`,
          `${(ms - compute).toFixed(2)} (${((100 * (ms - compute)) / ms).toFixed(0)} %)`,
        ]);
      } finally {
        await swarm.close();
        await server.close();
      }
    }
    await reference.close();
    printTable(
      `swarm vs reference, ${manifest.modelId}, greedy, median of ${o.repeats} runs × ${o.tokens} tokens after 128 warm-up tokens (output checked equal to the reference every run)`,
      ['setup', 'r', 'ms/token', 'tokens/s', '× reference'],
      rows,
    );
    printTable(
      'where a token’s time goes (median per token): compute = sum over stages of the fastest replica’s session.run in its worker; the rest = WebRTC hops, the Socket.IO legs (two per token with MESH_LOOP=off; off the critical path with the mesh loop), worker messaging, voting and sampling',
      ['swarm', 'ms/token', 'compute ms', 'rest ms'],
      breakdown,
    );
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
}

const isMain = process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'));
if (isMain) {
  const { DEFAULT_MODEL, modelDir } = await import('../signal-server/defaults.js');
  await benchSwarm({
    modelDir: modelDir(process.env.BENCH_MODEL ?? DEFAULT_MODEL),
    stages: 3,
    tokens: Number(process.env.BENCH_TOKENS ?? 64),
    repeats: Number(process.env.BENCH_REPEATS ?? 5),
  });
}
