/**
 * The two stage graph forms side by side, and what a longer context costs:
 * ms per decoded token near position 10 and near position 250, plain and
 * fused graphs, on WASM in Node (the reference runner's onnxruntime-web, 1
 * thread, KV caches in a CachingExecutor as a volunteer's worker keeps them)
 * and in one Chromium tab (the /check page: every stage in one worker).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { CachingExecutor, type TensorData } from '../shared/model/pipeline.js';
import { argmax } from '../shared/model/sampling.js';
import { GRAPH_FORMS } from '../shared/model/stage-graph-fused.js';
import { ensureStages } from '../signal-server/models/model-folder.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';
import { startLocalServer } from '../tools/local-server.js';
import { launchChromium } from '../tools/local-swarm.js';
import { median, printTable } from './table.js';

const PROMPT = 'It is a truth universally acknowledged, that a single man in possession of a good fortune';
/** Positions of the prompt: decoding starts at position 9. */
const PROMPT_POSITIONS = 9;
/** The windows whose median is reported: positions [10, 20) and [250, 260). */
const NEAR = 10;
const FAR = 250;
const WINDOW = 10;
const TOKENS = FAR + WINDOW - PROMPT_POSITIONS;

export interface GraphsBenchOptions {
  readonly modelDir: string;
  readonly stages: number;
  readonly repeats: number;
  /** Also in one Chromium tab (needs a built web app). */
  readonly browser: boolean;
}

/**
 * Each window's median per run (index i of a run is position
 * PROMPT_POSITIONS + i), the lowest over the runs: other work on the machine
 * only ever adds time, so the quietest run is the closest to the cost.
 */
function windows(runs: readonly (readonly number[])[]): { near: number; far: number } {
  const at = (p: number) => Math.min(...runs.map((ms) => median(ms.slice(p - PROMPT_POSITIONS, p - PROMPT_POSITIONS + WINDOW))));
  return { near: at(NEAR), far: at(FAR) };
}

async function nodeRuns(dir: string, repeats: number): Promise<number[][]> {
  const runner = await ReferenceRunner.fromStageDir(dir);
  try {
    const ids = runner.tokenizer.encode(PROMPT).slice(0, PROMPT_POSITIONS);
    const caches = new CachingExecutor(runner.manifest, runner.stageExecutor);
    const n = runner.manifest.stages.length;
    const forward = async (session: number, tokens: number[]): Promise<number> => {
      let carry: TensorData = { dtype: 'int64', dims: [1, tokens.length], data: BigInt64Array.from(tokens, (t) => BigInt(t)) };
      for (let s = 0; s < n; s++) carry = await caches.step(session, s, carry);
      return argmax((carry.data as Float32Array).subarray(carry.data.length - runner.manifest.model.vocabSize));
    };
    const runs: number[][] = [];
    // The first run warms WASM up (it tiers up over the first hundred tokens).
    for (let r = -1; r < repeats; r++) {
      let next = await forward(1, ids);
      const ms: number[] = [];
      for (let i = 0; i < TOKENS; i++) {
        const t0 = performance.now();
        next = await forward(1, [next]);
        ms.push(performance.now() - t0);
      }
      caches.release(1);
      if (r >= 0) runs.push(ms);
    }
    return runs;
  } finally {
    await runner.close();
  }
}

async function tabRuns(page: Page, ids: number[], repeats: number): Promise<number[][]> {
  const runs: number[][] = [];
  for (let r = -1; r < repeats; r++) {
    const ms = await page.evaluate(([i, t]) => (window.webswarmCheck as NonNullable<typeof window.webswarmCheck>).timeSteps(1, [...i], t), [
      ids,
      TOKENS,
    ] as const);
    if (r >= 0) runs.push(ms);
  }
  return runs;
}

export async function benchGraphs(o: GraphsBenchOptions): Promise<void> {
  const cache = mkdtempSync(join(tmpdir(), 'webswarm-bench-graphs-'));
  const rows: string[][] = [];
  const row = (where: string, graph: string, w: { near: number; far: number }) =>
    rows.push([where, graph, w.near.toFixed(2), w.far.toFixed(2), (w.far / w.near).toFixed(2)]);
  try {
    const dirs = new Map<string, string>();
    for (const graph of GRAPH_FORMS) dirs.set(graph, (await ensureStages(o.modelDir, { stages: o.stages }, cache, graph)).dir);
    for (const graph of GRAPH_FORMS) row('WASM in Node', graph, windows(await nodeRuns(dirs.get(graph) as string, o.repeats)));
    if (o.browser) {
      const browser = await launchChromium({ webgpu: false });
      try {
        for (const graph of GRAPH_FORMS) {
          const server = await startLocalServer([{ dir: o.modelDir, stages: o.stages, graph }], cache, { redundancy: 1 });
          try {
            const runner = await ReferenceRunner.fromStageDir(dirs.get(graph) as string);
            const ids = runner.tokenizer.encode(PROMPT).slice(0, PROMPT_POSITIONS);
            const modelId = runner.manifest.modelId;
            await runner.close();
            const page = await browser.newPage();
            await page.goto(`${server.address().url}/check?model=${modelId}&backend=wasm`);
            await page.waitForFunction(() => window.webswarmCheck !== undefined, null, { timeout: 120_000 });
            row('Chromium tab, WASM', graph, windows(await tabRuns(page, ids, o.repeats)));
            await page.close();
          } finally {
            await server.close();
          }
        }
      } finally {
        await browser.close();
      }
    }
    printTable(
      `stage graph forms and context length (${o.stages} stages, 1 thread, ms per token: median of positions ${NEAR}–${NEAR + WINDOW - 1} and of ${FAR}–${FAR + WINDOW - 1}, the quietest of ${o.repeats} runs after a warm-up run)`,
      ['where', 'graph', `ms/token at ${NEAR}`, `ms/token at ${FAR}`, 'growth'],
      rows,
    );
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
}
