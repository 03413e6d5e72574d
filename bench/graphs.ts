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

export const PROMPT = 'It is a truth universally acknowledged, that a single man in possession of a good fortune';
/** Positions of the prompt: decoding starts at position 9. */
export const PROMPT_POSITIONS = 9;
/** The windows whose median is reported: positions [10, 20) and [250, 260). */
export const NEAR = 10;
export const FAR = 250;
export const WINDOW = 10;
export const TOKENS = FAR + WINDOW - PROMPT_POSITIONS;

export interface GraphsBenchOptions {
  readonly modelDir: string;
  readonly stages: number;
  readonly repeats: number;
  /** Also in one Chromium tab (needs a built web app). */
  readonly browser: boolean;
  /** Also on WebGPU in that tab (SwiftShader without a GPU: slow), short context only. */
  readonly webgpu: boolean;
}

/** Decode tokens timed per WebGPU row. */
const WEBGPU_TOKENS = 8;

/**
 * Each window's median per run (index i of a run is position
 * PROMPT_POSITIONS + i), the lowest over the runs: other work on the machine
 * only ever adds time, so the quietest run is the closest to the cost.
 */
export function windows(runs: readonly (readonly number[])[]): { near: number; far: number } {
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

let gpuAdapter = 'no adapter';

/**
 * One graph form on WebGPU: the worker's session path (present.* stay GPU
 * buffers) against the page's PipelineSession over plain runs (every KV
 * tensor read back and posted to the page each step, as before).
 */
async function webgpuRow(opening: Promise<Page>, url: string, modelId: string, graph: string, ids: number[]): Promise<string[]> {
  const page = await opening;
  try {
    await page.goto(`${url}/check?model=${modelId}&backend=webgpu`);
    await page.waitForFunction(() => window.webswarmCheck !== undefined || document.querySelector('[role=alert]') !== null, null, {
      timeout: 120_000,
    });
    if ((await page.locator('[role=alert]').count()) > 0) return [graph, 'WebGPU unavailable', ''];
    gpuAdapter = (await page.evaluate(() => window.webswarmCheck?.adapter)) ?? 'unknown adapter';
    const onGpu = () =>
      page.evaluate(([i, t]) => (window.webswarmCheck as NonNullable<typeof window.webswarmCheck>).timeSteps(1, [...i], t), [
        ids,
        WEBGPU_TOKENS,
      ] as const);
    const readBack = () =>
      page.evaluate(([i, t]) => (window.webswarmCheck as NonNullable<typeof window.webswarmCheck>).greedy([...i], t + 1), [
        ids,
        WEBGPU_TOKENS,
      ] as const);
    // Warm-up (shader compilation for the prompt's and a token's shapes), then the two paths in turn, twice.
    await onGpu();
    const a: number[] = [];
    const b: number[] = [];
    for (let r = 0; r < 2; r++) {
      a.push(median(await onGpu()));
      b.push((await readBack()).msPerToken);
    }
    return [graph, Math.min(...a).toFixed(0), Math.min(...b).toFixed(0)];
  } finally {
    await page.close();
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
  const gpuRows: string[][] = [];
  const row = (where: string, graph: string, w: { near: number; far: number }) =>
    rows.push([where, graph, w.near.toFixed(2), w.far.toFixed(2), (w.far / w.near).toFixed(2)]);
  try {
    const dirs = new Map<string, string>();
    for (const graph of GRAPH_FORMS) dirs.set(graph, (await ensureStages(o.modelDir, { stages: o.stages }, cache, { graph: graph })).dir);
    for (const graph of GRAPH_FORMS) row('WASM in Node', graph, windows(await nodeRuns(dirs.get(graph) as string, o.repeats)));
    if (o.browser) {
      const browser = await launchChromium({ webgpu: o.webgpu });
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
            if (o.webgpu) gpuRows.push(await webgpuRow(browser.newPage(), server.address().url, modelId, graph, ids));
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
    if (gpuRows.length > 0) {
      printTable(
        `one Chromium tab on WebGPU (${gpuAdapter}), ${o.stages} stages, median ms per token over ${WEBGPU_TOKENS} tokens after the prompt, the quieter of 2 runs each after a warm-up run`,
        ['graph', 'KV cache on the GPU (the worker)', 'KV read back every step'],
        gpuRows,
      );
    }
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
}
