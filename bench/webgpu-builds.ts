/**
 * onnxruntime-web's two WebGPU builds side by side in Chromium: JSPI (what a
 * browser with JSPI loads: Chromium 137 and later) and asyncify (what one
 * without loads; here Chromium's compute worker served with JSPI's functions
 * deleted, tools/local-swarm.ts servedWithoutJspi). The /check page, every
 * stage in one tab's worker, KV caches on the GPU, plain and fused graphs: the
 * time from opening the page to its stages ready (the runtime's download and
 * compile, the sessions' creation), and decode ms per token of one session and
 * aggregate of four at once. The tabs take turns; every session's tokens are
 * the reference runner's. Without a GPU, WebGPU is SwiftShader (the CPU): the
 * kernels' time is the CPU's too, so what the runtime's own overhead is worth
 * shows less than on a GPU.
 *
 *   node --import tsx bench/webgpu-builds.ts (after npm run build), or in npm run bench (BENCH_WEBGPU_BUILDS=0 skips it)
 *   BENCH_WEBGPU_BUILDS_TOKENS (default 12), BENCH_WEBGPU_BUILDS_REPEATS (default 3)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { GREEDY } from '../shared/model/sampling.js';
import { GRAPH_FORMS } from '../shared/model/stage-graph-fused.js';
import { ensureStages } from '../signal-server/models/model-folder.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';
import { startLocalServer } from '../tools/local-server.js';
import { launchChromium, servedWithoutJspi } from '../tools/local-swarm.js';
import { decode, openCheck } from './gpu-batching.js';
import { median, printTable } from './table.js';

const PROMPT = 'It is a truth universally acknowledged, that a single man in possession of a good fortune must be in want of a wife';
const BUILDS = ['jspi', 'asyncify'] as const;
type Build = (typeof BUILDS)[number];
const AT_ONCE = 4;

/** Opens the page in a fresh tab; the ms until its stages are ready, and the build it reports. */
async function open(browser: Browser, url: string, build: Build): Promise<{ page: Page; readyMs: number }> {
  const page = await browser.newPage();
  if (build === 'asyncify') await servedWithoutJspi(page);
  const t0 = performance.now();
  await openCheck(page, url);
  const readyMs = performance.now() - t0;
  const got = await page.evaluate(() => window.webswarmCheck?.build);
  if (got !== build) throw new Error(`the tab meant for the ${build} build runs ${String(got)}`);
  return { page, readyMs };
}

export async function benchWebgpuBuilds(o: { modelDir: string; stages: number; tokens: number; repeats: number }): Promise<void> {
  const cache = mkdtempSync(join(tmpdir(), 'webswarm-bench-webgpu-builds-'));
  const rows: string[][] = [];
  let adapter = 'unknown adapter';
  let modelId = '';
  try {
    for (const graph of GRAPH_FORMS) {
      const { dir, manifest } = await ensureStages(o.modelDir, { stages: o.stages }, cache, { graph });
      modelId = manifest.modelId;
      const reference = await ReferenceRunner.fromStageDir(dir);
      const ids = reference.tokenizer.encode(PROMPT);
      // One length for all (the plain form batches sessions of one length only).
      const prompts = Array.from({ length: AT_ONCE }, (_, i) => [...ids.slice(0, 12), i + 5]);
      const expected: string[] = [];
      for (const p of prompts) expected.push((await reference.generateIds(p, o.tokens, GREEDY)).tokens.join());
      await reference.close();
      const server = await startLocalServer([{ dir: o.modelDir, stages: o.stages, graph }], cache, { redundancy: 1 });
      const browser = await launchChromium({ webgpu: true });
      const ready = new Map<Build, number[]>(BUILDS.map((b) => [b, []]));
      const one = new Map<Build, number[]>(BUILDS.map((b) => [b, []]));
      const four = new Map<Build, number[]>(BUILDS.map((b) => [b, []]));
      try {
        const url = `${server.address().url}/check?model=${manifest.modelId}&backend=webgpu`;
        let nextId = 1;
        for (let r = 0; r < o.repeats; r++) {
          // The builds in turn, the first alternating: each repeat opens its tab afresh (its load is timed).
          for (const build of r % 2 === 0 ? BUILDS : [...BUILDS].reverse()) {
            const { page, readyMs } = await open(browser, url, build);
            adapter = (await page.evaluate(() => window.webswarmCheck?.adapter)) ?? adapter;
            // A warm-up (shader compilation for each batch size's shapes), then the timed runs.
            for (const timed of [false, true]) {
              for (const n of [1, AT_ONCE]) {
                const run = await decode(page, prompts.slice(0, n), o.tokens, nextId);
                nextId += n;
                run.tokens.forEach((t, i) => {
                  if (t.join() !== expected[i])
                    throw new Error(`${build}, ${graph}: session ${i}'s tokens differ from the reference runner's`);
                });
                // Per session: 1000 / the aggregate tokens/s is a step's ms ÷ the sessions in it.
                if (timed) (n === 1 ? one : four).get(build)?.push(1000 / run.tokensPerS);
              }
            }
            ready.get(build)?.push(readyMs);
            await page.close();
          }
        }
      } finally {
        await browser.close();
        await server.close();
      }
      const med = (m: Map<Build, number[]>, b: Build) => median(m.get(b) ?? []);
      for (const b of BUILDS) rows.push([graph, b, med(ready, b).toFixed(0), med(one, b).toFixed(1), med(four, b).toFixed(1)]);
      rows.push([
        graph,
        'asyncify ÷ jspi',
        `${(med(ready, 'asyncify') / med(ready, 'jspi')).toFixed(2)}×`,
        `${(med(one, 'asyncify') / med(one, 'jspi')).toFixed(2)}×`,
        `${(med(four, 'asyncify') / med(four, 'jspi')).toFixed(2)}×`,
      ]);
    }
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
  printTable(
    `onnxruntime-web's WebGPU builds in one Chromium tab (${adapter}): ${modelId}, ${o.stages} stages in one worker, KV caches on the GPU; medians of ${o.repeats} runs × ${o.tokens} tokens after a warm-up, every session's tokens the reference runner's; load average ${loadavg()[0]?.toFixed(1)} at the end`,
    ['graph', 'build', 'page open → stages ready, ms', '1 session, ms/token', `${AT_ONCE} at once, ms/token each`],
    rows,
  );
}

if (process.argv[1]?.endsWith('webgpu-builds.ts')) {
  await benchWebgpuBuilds({
    modelDir: 'models/austen-2m',
    stages: 3,
    tokens: Number(process.env.BENCH_WEBGPU_BUILDS_TOKENS ?? 12),
    repeats: Number(process.env.BENCH_WEBGPU_BUILDS_REPEATS ?? 3),
  });
}
