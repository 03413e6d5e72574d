/**
 * Batching across sessions on WebGPU: one Chromium tab (the /check page,
 * every stage in its worker, KV caches on the GPU) decoding 1 session alone
 * and N sessions at once, with the worker's batching on and off (?batch=off),
 * the two tabs taking turns within each repeat. Aggregate tokens per second
 * of decode steps (the prompts' prefills are not timed), every session's
 * tokens checked against the reference runner's. Without a GPU, Chromium's
 * WebGPU is SwiftShader, i.e. the CPU: what batching gains there is what one
 * call's fixed cost is worth, not what a GPU's parallelism would give.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { GREEDY } from '../shared/model/sampling.js';
import { ensureStages } from '../signal-server/models/model-folder.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';
import { startLocalServer } from '../tools/local-server.js';
import { launchChromium } from '../tools/local-swarm.js';
import { median, printTable } from './table.js';

const PROMPT = 'It is a truth universally acknowledged, that a single man in possession of a good fortune must be in want of a wife';

export interface GpuBatchingOptions {
  readonly modelDir: string;
  readonly stages: number;
  /** Decode steps per session per run. */
  readonly tokens: number;
  readonly repeats: number;
  /** Sessions at once, besides 1 (e.g. 4 and 8). */
  readonly concurrency: readonly number[];
}

type Check = NonNullable<typeof window.webswarmCheck>;

export async function openCheck(page: Page, url: string): Promise<void> {
  await page.goto(url);
  await page.waitForFunction(() => window.webswarmCheck !== undefined || document.querySelector('[role=alert]') !== null, null, {
    timeout: 180_000,
  });
  if ((await page.locator('[role=alert]').count()) > 0) throw new Error(`${url}: ${await page.locator('[role=alert]').textContent()}`);
}

/**
 * The sessions decode greedily at once in rounds (each round's steps reach the
 * worker in one task); the decode rounds are timed in the page. Sessions get
 * fresh ids from `firstId` and are closed after.
 */
export async function decode(page: Page, prompts: readonly number[][], tokens: number, firstId: number) {
  return page.evaluate(
    // No named function inside: tsx (esbuild's keepNames) would wrap it in a helper the page does not have.
    async ([all, n, first]) => {
      const check = window.webswarmCheck as Check;
      let logits = await Promise.all(all.map((ids, i) => check.step(first + i, ids)));
      const out = all.map(() => [] as number[]);
      const t0 = performance.now();
      for (let round = 0; round < n; round++) {
        for (const [i, l] of logits.entries()) out[i]?.push(l.reduce((best, x, j) => (x > (l[best] as number) ? j : best), 0));
        logits = await Promise.all(out.map((t, i) => check.step(first + i, [t[t.length - 1] as number])));
      }
      const ms = performance.now() - t0;
      for (let i = 0; i < all.length; i++) await check.release(first + i);
      return { tokens: out, tokensPerS: (all.length * n * 1000) / ms };
    },
    [prompts, tokens, firstId] as const,
  );
}

export async function benchGpuBatching(o: GpuBatchingOptions): Promise<void> {
  const cache = mkdtempSync(join(tmpdir(), 'webswarm-bench-gpu-batching-'));
  const most = Math.max(...o.concurrency);
  try {
    const { dir, manifest } = await ensureStages(o.modelDir, { stages: o.stages }, cache, { graph: 'fused' });
    const reference = await ReferenceRunner.fromStageDir(dir);
    const ids = reference.tokenizer.encode(PROMPT);
    // Prompts of different lengths: the fused graph batches them all.
    const prompts = Array.from({ length: most }, (_, i) => ids.slice(0, 9 + 2 * i));
    const expected: string[] = [];
    for (const p of prompts) expected.push((await reference.generateIds(p, o.tokens, GREEDY)).tokens.join());
    await reference.close();
    const server = await startLocalServer([{ dir: o.modelDir, stages: o.stages, graph: 'fused' }], cache, { redundancy: 1 });
    const browser = await launchChromium({ webgpu: true });
    try {
      const base = `${server.address().url}/check?model=${manifest.modelId}&backend=webgpu`;
      const tabs = { on: await browser.newPage(), off: await browser.newPage() };
      await openCheck(tabs.on, base);
      await openCheck(tabs.off, `${base}&batch=off`);
      const adapter = (await tabs.on.evaluate(() => window.webswarmCheck?.adapter)) ?? 'unknown adapter';
      const sizes = [1, ...o.concurrency];
      const rates = new Map<string, number[]>();
      let nextId = 1;
      // A warm-up in each tab (shader compilation for every batch size's shapes), then the repeats, the tabs in turn.
      for (let r = -1; r < o.repeats; r++) {
        for (const [setting, page] of Object.entries(tabs)) {
          // The tab in the foreground: a background tab's renderer runs at a lower priority.
          await page.bringToFront();
          for (const n of sizes) {
            const run = await decode(page, prompts.slice(0, n), o.tokens, nextId);
            nextId += n;
            run.tokens.forEach((t, i) => {
              if (t.join() !== expected[i])
                throw new Error(`batching ${setting}, ${n} sessions: session ${i}'s tokens differ from the reference runner's`);
            });
            if (r >= 0) rates.set(`${setting}/${n}`, [...(rates.get(`${setting}/${n}`) ?? []), run.tokensPerS]);
          }
        }
      }
      const at = (setting: string, n: number) => median(rates.get(`${setting}/${n}`) ?? []);
      const rows = (['off', 'on'] as const).map((setting) => [
        setting,
        ...sizes.map((n) => at(setting, n).toFixed(2)),
        ...o.concurrency.map((n) => `${(at(setting, n) / at(setting, 1)).toFixed(2)}×`),
      ]);
      rows.push(['on ÷ off', ...sizes.map((n) => `${(at('on', n) / at('off', n)).toFixed(2)}×`), ...o.concurrency.map(() => '')]);
      printTable(
        `batching across sessions on WebGPU in one Chromium tab (${adapter}; SwiftShader is the CPU, so this is what one call's fixed cost is worth, not a GPU's gain): ${manifest.modelId}, fused, ${o.stages} stages in one worker, aggregate decode tokens/s (median of ${o.repeats} runs × ${o.tokens} tokens per session after a warm-up, the two tabs in turn; every session's tokens the reference runner's; load average ${loadavg()[0]?.toFixed(1)} at the end)`,
        ['batching in the tab', ...sizes.map((n) => `${n} at once`), ...o.concurrency.map((n) => `${n} / 1`)],
        rows,
      );
    } finally {
      await browser.close();
      await server.close();
    }
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
}
