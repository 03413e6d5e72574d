// Stages in f16, q8 and q4 in a real Chromium tab (WASM and WebGPU on SwiftShader):
// WASM gives the Node reference runner's numbers for the same files, and the
// two backends differ, for the same precision, by far less than the vote's
// tolerance: replicas of one precision vote with the tolerance f32 uses.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WeightPrecision } from '../shared/model/quantize.js';
import { maxAbs, maxAbsDifference, RELATIVE_TOLERANCE } from '../shared/vote/tolerance.js';
import { ensureStages } from '../signal-server/models/model-folder.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';
import type { SignalServer } from '../signal-server/server.js';
import { goldenModelDir, readGolden } from '../testing/golden.js';
import { launchChromium, startTestServer } from './harness.js';

/** Same kernels as the Node reference runner. */
const WASM_BOUND = 1e-4;
const LOAD_TIMEOUT_MS = 120_000;
const MODEL = 'austen-2m';
const STAGES = 3;

let browser: Browser;
beforeAll(async () => {
  browser = await launchChromium({ webgpu: true });
});
afterAll(async () => {
  await browser?.close();
});

async function trace(server: SignalServer, backend: 'wasm' | 'webgpu', ids: readonly number[][]): Promise<number[][][]> {
  const page: Page = await browser.newPage();
  try {
    await page.goto(`${server.address().url}/check?model=${MODEL}&backend=${backend}`);
    await page.waitForFunction(() => window.webswarmCheck !== undefined || document.querySelector('[role=alert]') !== null, null, {
      timeout: LOAD_TIMEOUT_MS,
    });
    if ((await page.locator('[role=alert]').count()) > 0)
      throw new Error(`page failed: ${await page.locator('[role=alert]').textContent()}`);
    const out: number[][][] = [];
    for (const p of ids)
      out.push(await page.evaluate((x) => (window.webswarmCheck as NonNullable<typeof window.webswarmCheck>).trace(x), p));
    return out;
  } finally {
    await page.close();
  }
}

describe.each(['f16', 'q8', 'q4'] as WeightPrecision[])(`${MODEL} with %s weights in Chromium`, (weights) => {
  let cache: string;
  let server: SignalServer;
  beforeAll(async () => {
    cache = mkdtempSync(join(tmpdir(), 'webswarm-e2e-'));
    server = await startTestServer([{ dir: goldenModelDir(MODEL), stages: STAGES, weights }], cache, { quiet: true });
  });
  afterAll(async () => {
    await server?.close();
    rmSync(cache, { recursive: true, force: true });
  });

  it('runs on WASM as the reference runner does, and on WebGPU within a fifth of the vote tolerance of WASM', async () => {
    const prompts = readGolden(MODEL).prompts.map((p) => p.ids);
    const { dir } = await ensureStages(goldenModelDir(MODEL), { stages: STAGES }, cache, { weights: weights });
    const reference = await ReferenceRunner.fromStageDir(dir);
    expect(reference.manifest.weights).toBe(weights);
    const wasm = await trace(server, 'wasm', prompts);
    const webgpu = await trace(server, 'webgpu', prompts);
    const rows: string[] = [];
    try {
      for (const [i, ids] of prompts.entries()) {
        const logits = await reference.session().forward(ids);
        expect(maxAbsDifference(wasm[i]?.[STAGES - 1] as number[], logits), `prompt ${i}: WASM vs the reference`).toBeLessThan(WASM_BOUND);
      }
      for (let s = 0; s < STAGES; s++) {
        let rel = 0;
        for (let i = 0; i < prompts.length; i++) {
          const a = webgpu[i]?.[s] as number[];
          const b = wasm[i]?.[s] as number[];
          rel = Math.max(rel, maxAbsDifference(a, b) / Math.max(1, maxAbs(b)));
        }
        expect(rel, `stage ${s}`).toBeLessThan(RELATIVE_TOLERANCE / 5);
        rows.push(`stage ${s}: relative ${rel.toExponential(2)}`);
      }
    } finally {
      await reference.close();
    }
    process.stdout.write(`WebGPU (SwiftShader) vs WASM, ${MODEL} ${weights}: ${rows.join('; ')}\n`);
  });
});
