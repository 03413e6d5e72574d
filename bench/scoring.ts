/**
 * Scoring a prompt through the swarm (completions' echo, what evaluation
 * harnesses send): each position is a step whose logits the stages' majorities
 * agree on. Side by side in one run, r = 1 and r = 3, austen-2m in 3 stages on
 * Chromium tabs (WASM): the prompt's tokens sent to stage 0 as each step
 * before is decided (MESH_LOOP=off) against sent up to MESH_AHEAD steps ahead,
 * so that the stages compute them as a pipeline, and against several
 * positions a step, the last stage sending a row of logits each: 16 a step
 * (what a 12 288-token vocabulary allows), and the default (maxScoreRows: 96
 * at austen-2m's vocabulary), the prompt's first positions in step 0 and the
 * rest in chunks of as many, sent ahead. Every run's
 * log-probabilities are checked against the reference runner fed the prompt a
 * token at a time, which is timed too.
 *
 *   node --import tsx bench/scoring.ts (after npm run build)
 *   BENCH_REPEATS (runs per setup, default 3), BENCH_SCORING_R (the redundancies, default 1,3)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { GREEDY } from '../shared/model/sampling.js';
import { MESH_AHEAD } from '../shared/swarm/mesh-loop.js';
import { DEFAULT_MODEL, modelDir } from '../signal-server/defaults.js';
import { ensureStages } from '../signal-server/models/model-folder.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';
import { logprobOf, promptLogprobs } from '../signal-server/testing/prompt-logprobs.js';
import { startLocalServer } from '../tools/local-server.js';
import { startLocalSwarm } from '../tools/local-swarm.js';
import { median, printTable } from './table.js';

/** Pride and Prejudice's first lines: about 200 of austen-2m's tokens. */
const PROMPT =
  'It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife. ' +
  'However little known the feelings or views of such a man may be on his first entering a neighbourhood, this truth is so well ' +
  'fixed in the minds of the surrounding families, that he is considered the rightful property of some one or other of their ' +
  'daughters. "My dear Mr. Bennet," said his lady to him one day, "have you heard that Netherfield Park is let at last?" ' +
  'Mr. Bennet replied that he had not. "But it is," returned she; "for Mrs. Long has just been here, and she told me all about it."';
const WARMUP_TOKENS = 128;
/** Chromium's WASM against this process's: the same kernels, float32 rounding apart. */
const TOLERANCE = 1e-4;
const STAGES = 3;

/** How the prompt goes: a position a step (scoreRows 1), after the step before or sent ahead; or `scoreRows` positions a step. */
interface Setup {
  readonly meshLoop: boolean;
  readonly scoreRows?: number;
  readonly name: string;
}

const SETUPS: readonly Setup[] = [
  { meshLoop: false, scoreRows: 1, name: 'step by step (MESH_LOOP=off)' },
  { meshLoop: true, scoreRows: 1, name: `a position a step, sent ${MESH_AHEAD} steps ahead (pipeline)` },
  { meshLoop: true, scoreRows: 16, name: '16 positions a step, sent ahead' },
  { meshLoop: true, name: 'maxScoreRows (96) a step, the default' },
];

interface Run {
  /** Wall ms per scored position: the request's time over the positions scored. */
  readonly msPerPosition: number;
  /** Median ms from a position's input to its agreed logits, as the coordinator timed each step. */
  readonly stepMs: number;
}

async function scoreRuns(dir: string, cache: string, r: number, setup: Setup, repeats: number, want: readonly number[]): Promise<Run[]> {
  const { meshLoop, scoreRows } = setup;
  const server = await startLocalServer([{ dir, stages: STAGES }], cache, {
    redundancy: r,
    meshLoop,
    spotCheckRate: 0,
    ...(scoreRows === undefined ? {} : { scoreRows }),
  });
  const swarm = await startLocalSwarm({ serverUrl: server.address().url, volunteers: STAGES * r });
  try {
    const coordinator = server.coordinator;
    if (coordinator === null) throw new Error('no coordinator');
    // WASM tiers up over the first ~100 tokens in every tab.
    await coordinator.complete({ prompt: PROMPT, maxTokens: WARMUP_TOKENS, sampling: { ...GREEDY } });
    const runs: Run[] = [];
    for (let i = 0; i < repeats; i++) {
      const got: number[] = [];
      const stepMs: number[] = [];
      const t0 = performance.now();
      await coordinator.complete({ prompt: PROMPT, maxTokens: 0, sampling: { ...GREEDY }, scorePrompt: true }, undefined, (u) => {
        if (u.logits === null) return;
        got[u.position - 1] = logprobOf(u.logits, u.token);
        stepMs.push(u.stepMs);
      });
      const ms = performance.now() - t0;
      if (got.length !== want.length) throw new Error(`r = ${r}: ${got.length} positions scored, ${want.length} expected`);
      got.forEach((lp, k) => {
        if (Math.abs(lp - (want[k] as number)) > TOLERANCE)
          throw new Error(`r = ${r}, ${setup.name}: position ${k + 1}'s log-probability ${lp} is not the reference's ${want[k]}`);
      });
      runs.push({ msPerPosition: ms / want.length, stepMs: median(stepMs) });
    }
    return runs;
  } finally {
    await swarm.close();
    await server.close();
  }
}

export async function benchScoring(o: { modelDir: string; repeats: number; redundancies?: readonly number[] }): Promise<void> {
  const cache = mkdtempSync(join(tmpdir(), 'webswarm-bench-scoring-'));
  try {
    const { dir } = await ensureStages(o.modelDir, { stages: STAGES }, cache);
    const reference = await ReferenceRunner.fromStageDir(dir);
    let want: number[];
    const refMs: number[] = [];
    let positions: number;
    try {
      const ids = reference.tokenizer.encode(PROMPT);
      positions = ids.length - 1;
      want = await promptLogprobs(reference, ids);
      for (let i = 0; i < o.repeats; i++) {
        const t0 = performance.now();
        await promptLogprobs(reference, ids);
        refMs.push((performance.now() - t0) / positions);
      }
    } finally {
      await reference.close();
    }
    const load0 = loadavg()[0] ?? 0;
    const rows: { r: number; setup: Setup; runs: Run[] }[] = [];
    for (const r of o.redundancies ?? [1, 3])
      for (const setup of SETUPS) rows.push({ r, setup, runs: await scoreRuns(o.modelDir, cache, r, setup, o.repeats, want) });
    const load1 = loadavg()[0] ?? 0;
    const ref = median(refMs);
    printTable(
      `scoring a ${positions + 1}-token prompt (echo), ${o.modelDir}, ${STAGES} stages, Chromium tabs on WASM: ms per position, median of ${o.repeats} runs (load average ${load0.toFixed(1)} → ${load1.toFixed(1)}); every run's log-probabilities the reference's within ${TOLERANCE}`,
      ['setup', 'ms/position', 'each run', 'step ms (median)', '× step by step', '× reference'],
      [
        ['reference runner, a token at a time (one process)', ref.toFixed(2), refMs.map((x) => x.toFixed(2)).join(' '), '', '', '1.00'],
        ...rows.map((x) => {
          const ms = median(x.runs.map((m) => m.msPerPosition));
          const base = rows.find((y) => y.r === x.r && y.setup === SETUPS[0]);
          const baseMs = base === undefined ? Number.NaN : median(base.runs.map((m) => m.msPerPosition));
          return [
            `r = ${x.r}, ${x.setup.name}`,
            ms.toFixed(2),
            x.runs.map((m) => m.msPerPosition.toFixed(2)).join(' '),
            median(x.runs.map((m) => m.stepMs)).toFixed(2),
            (ms / baseMs).toFixed(2),
            (ms / ref).toFixed(1),
          ];
        }),
      ],
    );
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await benchScoring({
    modelDir: modelDir(DEFAULT_MODEL),
    repeats: Number(process.env.BENCH_REPEATS ?? 3),
    redundancies: (process.env.BENCH_SCORING_R ?? '1,3').split(',').map(Number),
  });
}
