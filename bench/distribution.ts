/**
 * What distribution costs on a model that needs a swarm: a seeded random
 * checkpoint shaped like SmolLM-135M (testing/random-checkpoint.ts, written
 * under .cache/bench-models/, never committed) through the stage builder, the
 * reference runner, one Chromium tab running every stage, and a swarm of one
 * tab per stage (r = 1), side by side in one run, all on WASM.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GREEDY, type SamplingParams } from '../shared/model/sampling.js';
import type { GraphForm } from '../shared/model/stage-graph-fused.js';
import type { TokenUpdate } from '../signal-server/coordinator/coordinator.js';
import { buildStagesToDir, ensureStages, readModelFolder } from '../signal-server/models/model-folder.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';
import { type CheckpointShape, ensureRandomCheckpoint, SMOLLM_135M_SHAPE } from '../testing/random-checkpoint.js';
import { startLocalServer } from '../tools/local-server.js';
import { launchChromium, startLocalSwarm } from '../tools/local-swarm.js';
import { benchGraph } from './env.js';
import { referenceDecode } from './swarm.js';
import { median, printTable } from './table.js';

/** The cold-start bench's checkpoint (same shape and seed): generated once, shared. */
export const SMOLLM_SHAPED_DIR = '.cache/bench-models/smollm-135m-shaped';
export const SMOLLM_SHAPED_SEED = 135;
const PROMPT = 'It is a truth universally acknowledged, that a single man in possession of a good fortune';

export interface DistributionBenchOptions {
  readonly stages: number;
  /** Decode tokens timed per run. */
  readonly tokens: number;
  readonly repeats: number;
  /** Tokens decoded before timing, in every set-up. */
  readonly warmup: number;
  /** Another random checkpoint than the SmolLM-135M-shaped one (its folder, shape, seed, and how the table names it). */
  readonly checkpoint?: { readonly dir: string; readonly shape: CheckpointShape; readonly seed: number; readonly label: string };
  /** Also a swarm row at these settings (the tokens checked equal to the reference runner's seeded ones). */
  readonly sampled?: SamplingParams;
  /** The stage graphs' form; BENCH_GRAPH's (npm start's default, auto) where absent. */
  readonly graph?: GraphForm;
}

/** What a run measured (ms/token, medians): the reference runner, one tab, the swarm, and the swarm's Σ stage compute. */
export interface DistributionResult {
  readonly ref: number;
  readonly tab: number;
  readonly swarm: number;
  readonly swarmComputeMs: number;
  /** Each repeat's one tab ÷ swarm (ms/token), the two timed in turn seconds apart. */
  readonly pairRatios: readonly number[];
}

export async function benchDistribution(o: DistributionBenchOptions): Promise<DistributionResult> {
  const c = o.checkpoint;
  const modelDir =
    c === undefined
      ? ensureRandomCheckpoint(SMOLLM_SHAPED_DIR, SMOLLM_135M_SHAPE, SMOLLM_SHAPED_SEED)
      : ensureRandomCheckpoint(c.dir, c.shape, c.seed);
  const cache = mkdtempSync(join(tmpdir(), 'webswarm-bench-dist-'));
  try {
    const t0 = performance.now();
    const graph = benchGraph(modelDir, o.graph);
    await buildStagesToDir(readModelFolder(modelDir), { stages: o.stages }, join(cache, 'build-timed'), { graph });
    const buildMs = performance.now() - t0;
    const { dir, manifest } = await ensureStages(modelDir, { stages: o.stages }, cache, { graph });

    const { msPerToken: ref, tokens: expected, promptIds: ids } = await referenceDecode(dir, PROMPT, o.warmup, o.tokens, o.repeats);
    const runs: { label: string; sampling: SamplingParams; expected: readonly number[]; ms: number[] }[] = [
      { label: `swarm, ${o.stages} tabs × r = 1`, sampling: { ...GREEDY }, expected, ms: [] },
    ];
    if (o.sampled !== undefined) {
      const reference = await ReferenceRunner.fromStageDir(dir);
      const seeded = (await reference.generateIds(ids, o.tokens, o.sampled)).tokens;
      await reference.close();
      const { temperature, seed } = o.sampled;
      runs.push({
        label: `swarm, ${o.stages} tabs × r = 1, temperature ${temperature}, seed ${seed}`,
        sampling: o.sampled,
        expected: seeded,
        ms: [],
      });
    }

    // One tab, every stage in one worker (the /check page), and one tab per stage, both open at once and timed in
    // turn: each repeat times the one tab and then the swarm, seconds apart, so that each pair's ratio is measured
    // side by side (this machine's speed drifts by ±15 % between runs minutes apart). Idle, each costs the other little.
    const server = await startLocalServer([{ dir: modelDir, stages: o.stages, graph }], cache, { redundancy: 1, spotCheckRate: 0 });
    const tabMs: number[] = [];
    const pairRatios: number[] = [];
    const computeMs: number[] = [];
    try {
      const browser = await launchChromium({ webgpu: false });
      const swarm = await startLocalSwarm({ serverUrl: server.address().url, volunteers: o.stages });
      try {
        const page = await browser.newPage();
        await page.goto(`${server.address().url}/check?model=${manifest.modelId}&backend=wasm`);
        await page.waitForFunction(() => window.webswarmCheck !== undefined, null, { timeout: 300_000 });
        const time = (n: number) =>
          page.evaluate(([i, t]) => (window.webswarmCheck as NonNullable<typeof window.webswarmCheck>).timeSteps(1, [...i], t), [
            ids,
            n,
          ] as const);
        const coordinator = server.coordinator;
        if (coordinator === null) throw new Error('no coordinator');
        await time(o.warmup);
        await coordinator.complete({ prompt: PROMPT, maxTokens: o.warmup, sampling: { ...GREEDY } });
        for (let i = 0; i < o.repeats; i++) {
          const tabRun = median(await time(o.tokens));
          tabMs.push(tabRun);
          for (const run of runs) {
            const updates: TokenUpdate[] = [];
            const c = await coordinator.complete({ prompt: PROMPT, maxTokens: o.tokens, sampling: run.sampling }, (u) => updates.push(u));
            if (c.tokens.join() !== run.expected.join())
              throw new Error(`${run.label}: the swarm's tokens differ from the reference runner's`);
            const ms = median(updates.slice(1).map((u) => u.stepMs));
            run.ms.push(ms);
            if (run === runs[0]) {
              computeMs.push(...updates.slice(1).map((u) => u.computeMs.reduce((a, b) => a + b, 0)));
              pairRatios.push(tabRun / ms);
            }
          }
        }
      } finally {
        await swarm.close();
        await browser.close();
      }
    } finally {
      await server.close();
    }
    const tab = median(tabMs);
    const sw = median(runs[0]?.ms ?? []);
    const row = (label: string, ms: number) => [label, ms.toFixed(1), (1000 / ms).toFixed(2), (tab / ms).toFixed(2)];
    printTable(
      `distribution cost: ${c?.label ?? `a SmolLM-135M-shaped random checkpoint (30 layers, hidden 576, 9/3 heads, SwiGLU 1536, vocabulary cut to 2048; seed ${SMOLLM_SHAPED_SEED})`}, ${o.stages} stages (${graph} graphs), WASM, greedy where a row does not say otherwise, median of ${o.repeats} runs × ${o.tokens} tokens after ${o.warmup} warm-up tokens, the one tab and the swarm timed in turn (each run's one tab ÷ swarm: ${pairRatios.map((x) => x.toFixed(2)).join(', ')}); stage build ${(buildMs / 1000).toFixed(1)} s; the swarm's tokens checked equal to the reference runner's`,
      ['setup', 'ms/token', 'tokens/s', 'tokens/s ÷ one tab'],
      [
        row('reference runner (Node, 1 thread)', ref),
        row('one Chromium tab, every stage (the /check page)', tab),
        ...runs.map((run) => row(run.label, median(run.ms))),
      ],
    );
    return { ref, tab, swarm: sw, swarmComputeMs: median(computeMs), pairRatios };
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
}
