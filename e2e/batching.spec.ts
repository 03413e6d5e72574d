// Batching across sessions in a real Chromium tab: the /check page's worker
// (one CachingExecutor for every stage, as a volunteer's) steps several
// sessions at once; on WASM their decode steps share runtime calls (the
// worker's stats count them) and every session still gets the reference
// runner's greedy tokens. On WebGPU each step stays its own call (README
// "Batching across sessions"), with the same tokens.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GREEDY } from '../shared/model/sampling.js';
import type { GraphForm } from '../shared/model/stage-graph-fused.js';
import { ensureStages } from '../signal-server/models/model-folder.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';
import type { SignalServer } from '../signal-server/server.js';
import { goldenModelDir, readGolden } from '../testing/golden.js';
import { launchChromium, startTestServer } from './harness.js';

const MODEL = 'austen-2m';
const STAGES = 3;
const TOKENS = 8;
const LOAD_TIMEOUT_MS = 120_000;
const golden = readGolden(MODEL);
/** Prompts of three lengths, the first twice (the plain graph batches only equal lengths). */
const PROMPTS = [0, 1, 2, 0].map((i) => (golden.prompts[i] as { ids: number[] }).ids);

let cacheRoot: string;
let browser: Browser;
const servers = new Map<GraphForm, SignalServer>();
/** The reference runner's greedy tokens for each prompt, per graph form. */
const expected = new Map<GraphForm, number[][]>();

beforeAll(async () => {
  cacheRoot = mkdtempSync(join(tmpdir(), 'webswarm-batching-'));
  for (const graph of ['plain', 'fused'] as const) {
    servers.set(graph, await startTestServer([{ dir: goldenModelDir(MODEL), stages: STAGES, graph }], cacheRoot, { quiet: true }));
    const { dir } = await ensureStages(goldenModelDir(MODEL), { stages: STAGES }, cacheRoot, { graph });
    const runner = await ReferenceRunner.fromStageDir(dir);
    const tokens: number[][] = [];
    for (const p of PROMPTS) tokens.push((await runner.generateIds(p, TOKENS, GREEDY)).tokens);
    await runner.close();
    expected.set(graph, tokens);
  }
  browser = await launchChromium({ webgpu: true });
});

afterAll(async () => {
  await browser?.close();
  for (const s of servers.values()) await s.close();
  rmSync(cacheRoot, { recursive: true, force: true });
});

async function openCheck(graph: GraphForm, backend: 'wasm' | 'webgpu'): Promise<Page> {
  const page = await browser.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') process.stderr.write(`[${graph} ${backend} page] ${m.text()}\n`);
  });
  await page.goto(`${servers.get(graph)?.address().url}/check?model=${MODEL}&backend=${backend}`);
  await page.waitForFunction(() => window.webswarmCheck !== undefined || document.querySelector('[role=alert]') !== null, null, {
    timeout: LOAD_TIMEOUT_MS,
  });
  if ((await page.locator('[role=alert]').count()) > 0) throw new Error(`page failed: ${await page.locator('[role=alert]').textContent()}`);
  return page;
}

type Check = NonNullable<typeof window.webswarmCheck>;

describe.each([
  ['fused', 'wasm'],
  ['plain', 'wasm'],
  ['fused', 'webgpu'],
] as const)('%s stage graphs on %s', (graph, backend) => {
  it("concurrent sessions in one tab give each the reference runner's greedy tokens", async () => {
    const page = await openCheck(graph, backend);
    // Every session generates greedily at once, in the page: their steps reach the worker together.
    const got = await page.evaluate(
      async ([prompts, n]) => {
        const check = window.webswarmCheck as Check;
        const argmax = (xs: number[]) => xs.reduce((best, x, i) => (x > (xs[best] as number) ? i : best), 0);
        return Promise.all(
          prompts.map(async (ids, i) => {
            const tokens: number[] = [];
            let logits = await check.step(i + 1, ids);
            while (tokens.length < n) {
              tokens.push(argmax(logits));
              if (tokens.length < n) logits = await check.step(i + 1, [tokens[tokens.length - 1] as number]);
            }
            return tokens;
          }),
        );
      },
      [PROMPTS, TOKENS] as const,
    );
    expect(got).toEqual(expected.get(graph));
    const stats = await (page.evaluate(() => (window.webswarmCheck as Check).stats()) as Promise<{
      steps: number;
      batchedSteps: number;
      calls: number;
    }>);
    process.stdout.write(`${graph} on ${backend}: ${JSON.stringify(stats)}\n`);
    const steps = PROMPTS.length * TOKENS * STAGES;
    expect(stats.steps).toBe(steps);
    if (backend === 'webgpu') {
      // Each session's KV cache stays in its own GPU buffers: no call is shared.
      expect(stats).toMatchObject({ batchedSteps: 0, calls: steps });
    } else {
      expect(stats.batchedSteps).toBeGreaterThan(0);
      expect(stats.calls).toBeLessThan(steps);
      // The fused graph batches sessions of any lengths: most decode steps share a call.
      if (graph === 'fused') expect(stats.batchedSteps).toBeGreaterThan(steps / 2);
    }
    await page.close();
  });
});
