/**
 * A volunteer's cold start: the bytes it downloads for its stage against the
 * whole checkpoint (its layers by range requests, measured at a static server
 * that counts what it sends), and the time from opening /volunteer to ready
 * in Chromium, with the browser's cache cold (a fresh context) and warm (a
 * reload), for the default model and a SmolLM-135M-shaped random checkpoint.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { sha256Hex } from '../shared/model/sha256.js';
import { buildStageGraph } from '../shared/model/stage-graph.js';
import { stageTensorNames } from '../shared/model/tensor-index.js';
import { WeightReader } from '../shared/model/weights.js';
import { ensureStages, readTensorIndex } from '../signal-server/models/model-folder.js';
import { ensureRandomCheckpoint, SMOLLM_135M_SHAPE } from '../testing/random-checkpoint.js';
import { startStaticFolderServer } from '../testing/static-folder-server.js';
import { startLocalServer } from '../tools/local-server.js';
import { consent, launchChromium } from '../tools/local-swarm.js';
import { fetchStageTensors } from '../web/compute/layer-fetch.js';
import { median, printTable } from './table.js';

const STAGES = 3;
const READY_TIMEOUT_MS = 180_000;
/** Where the 135M-shaped checkpoint is written (about 215 MB of BF16); never committed. */
const SMOLLM_DIR = '.cache/bench-models/smollm-135m-shaped';
const SMOLLM_SEED = 135;

export interface ColdStartBenchOptions {
  readonly defaultModelDir: string;
  /** Cold and warm starts per stage. */
  readonly repeats: number;
}

const mb = (b: number) => (b / 1e6).toFixed(2);

/** Bytes each stage's volunteer downloads, counted by the server that sends them; each stage checked byte-identical to the server's. */
async function bytesPerStage(modelDir: string, cache: string): Promise<string[][]> {
  const { dir, manifest } = await ensureStages(modelDir, { stages: STAGES }, cache);
  const index = readTensorIndex(dir);
  const folder = await startStaticFolderServer(modelDir);
  const checkpoint = statSync(join(modelDir, 'model.safetensors')).size;
  const embed = index.tensors.find((t) => t.name === 'model.embed_tokens.weight')?.sizeBytes ?? 0;
  const rows: string[][] = [];
  try {
    for (const s of manifest.stages) {
      folder.reset();
      const spec = { index: s.index, count: STAGES, layers: s.layers };
      const fetched = await fetchStageTensors({
        index: { ...index, weightsUrl: folder.url },
        indexUrl: `${folder.url}tensors.json`,
        names: stageTensorNames(manifest.model, spec),
        store: null,
      });
      const built = buildStageGraph(manifest.model, new WeightReader('fetched', fetched.tensors), spec);
      if ((await sha256Hex(built)) !== s.sha256)
        throw new Error(`${manifest.modelId} stage ${s.index}: built stage differs from the server's`);
      const target = checkpoint / STAGES + embed;
      rows.push([
        manifest.modelId,
        String(s.index),
        `[${s.layers.start}, ${s.layers.end})`,
        mb(folder.bytesSent),
        String(folder.log.length),
        mb(s.sizeBytes),
        mb(checkpoint),
        `${((100 * folder.bytesSent) / checkpoint).toFixed(1)} %`,
        mb(target),
        folder.bytesSent <= target ? 'yes' : 'NO',
      ]);
    }
  } finally {
    await folder.close();
  }
  return rows;
}

/**
 * Records, in the page, when the consent button was clicked and when the
 * volunteer first reached each state (ms since navigation start). A string:
 * tsx would wrap a function's inner functions in helpers the page lacks.
 */
const MARK_STATES = `(() => {
  const marks = {};
  let status;
  Object.defineProperty(window, 'webswarmVolunteer', {
    configurable: true,
    get: () => status,
    set: (s) => {
      status = s;
      if (s !== undefined && !(s.state in marks)) marks[s.state] = performance.now();
    },
  });
  document.addEventListener('click', (e) => {
    const t = e.target;
    if (t instanceof Element && t.closest('[data-testid=consent]') && !('click' in marks)) marks.click = performance.now();
  }, true);
  window.benchMarks = marks;
})();`;

interface Start {
  readonly stage: number;
  readonly openMs: number;
  readonly clickMs: number;
  readonly fetchMs: number;
  /** From the click to the compute worker's runtime being started (it starts at the click, alongside the rest). */
  readonly runtimeMs: number;
  readonly buildMs: number;
  readonly fromCache: boolean;
}

async function start(page: Page, url: string | null): Promise<Start> {
  if (url === null) await page.reload();
  else await page.goto(url);
  await consent(page);
  await page.waitForFunction(() => window.webswarmVolunteer?.state === 'ready' || window.webswarmVolunteer?.state === 'error', null, {
    timeout: READY_TIMEOUT_MS,
    polling: 10,
  });
  const r = await page.evaluate(() => ({
    marks: (window as unknown as { benchMarks: Record<string, number> }).benchMarks,
    runtimeReady: performance.getEntriesByName('webswarm:runtime-ready')[0]?.startTime ?? Number.NaN,
    status: window.webswarmVolunteer,
  }));
  if (r.status?.state !== 'ready') throw new Error(`volunteer failed: ${r.status?.lastError ?? 'unknown'}`);
  const m = r.marks;
  const at = (k: string) => m[k] ?? Number.NaN;
  return {
    stage: r.status.stage ?? -1,
    openMs: at('ready'),
    clickMs: at('ready') - at('click'),
    fetchMs: at('loading') - at('downloading'),
    runtimeMs: r.runtimeReady - at('click'),
    buildMs: at('ready') - at('loading'),
    fromCache: r.status.progress?.fromCache === true,
  };
}

/** Cold (fresh context) and warm (reload) starts of one volunteer per stage, `repeats` times. */
async function coldStarts(browser: Browser, modelDir: string, cache: string, repeats: number): Promise<string[][]> {
  const server = await startLocalServer([{ dir: modelDir, stages: STAGES }], cache, { redundancy: 1 });
  const url = `${server.address().url}/volunteer?backend=wasm`;
  const modelId = basename(modelDir);
  const cold: Start[] = [];
  const warm: Start[] = [];
  try {
    for (let r = 0; r < repeats; r++) {
      const contexts: BrowserContext[] = [];
      const pages: Page[] = [];
      for (let i = 0; i < STAGES; i++) {
        const context = await browser.newContext();
        contexts.push(context);
        await context.addInitScript(MARK_STATES);
        const page = await context.newPage();
        pages.push(page);
        cold.push(await start(page, url));
      }
      for (const page of pages) warm.push(await start(page, null));
      for (const c of contexts) await c.close();
    }
  } finally {
    await server.close();
  }
  const rows: string[][] = [];
  for (const [kind, starts] of [
    ['cold', cold],
    ['warm', warm],
  ] as const) {
    for (let s = 0; s < STAGES; s++) {
      const xs = starts.filter((x) => x.stage === s);
      if (xs.length === 0) continue;
      const med = (f: (x: Start) => number) => median(xs.map(f)).toFixed(0);
      rows.push([
        modelId,
        kind,
        String(s),
        med((x) => x.openMs),
        med((x) => x.clickMs),
        med((x) => x.fetchMs),
        med((x) => x.runtimeMs),
        med((x) => x.buildMs),
        `${xs.filter((x) => x.fromCache).length}/${xs.length}`,
      ]);
    }
  }
  return rows;
}

export async function benchColdStart(o: ColdStartBenchOptions): Promise<void> {
  const cache = mkdtempSync(join(tmpdir(), 'webswarm-bench-cold-'));
  const smollm = ensureRandomCheckpoint(SMOLLM_DIR, SMOLLM_135M_SHAPE, SMOLLM_SEED);
  try {
    const bytes = [...(await bytesPerStage(o.defaultModelDir, cache)), ...(await bytesPerStage(smollm, cache))];
    printTable(
      `bytes a volunteer downloads for its stage (${STAGES} stages; range requests counted at the server; target: a third of the checkpoint plus the embedding)`,
      ['model', 'stage', 'layers', 'downloaded MB', 'requests', 'stage file MB (before)', 'checkpoint MB', 'share', 'target MB', 'within'],
      bytes,
    );
    const browser = await launchChromium({ webgpu: false });
    try {
      const rows = [
        ...(await coldStarts(browser, o.defaultModelDir, cache, o.repeats)),
        ...(await coldStarts(browser, smollm, cache, o.repeats)),
      ];
      printTable(
        `volunteer cold start in Chromium on WASM, loopback, median of ${o.repeats} per stage (load average ${loadavg()
          .map((x) => x.toFixed(1))
          .join(
            ' ',
          )} on ${cpus().length} cores at the end): page open → ready, consent click → ready, fetch (tensors fetched or taken from the cache, verified), runtime start (click → onnxruntime-web's WebAssembly started in the worker, alongside joining and fetching), build (stage graph built and checked in the worker, session created, one step measured)`,
        ['model', 'cache', 'stage', 'open → ready ms', 'click → ready ms', 'fetch ms', 'runtime start ms', 'build ms', 'from cache'],
        rows,
      );
    } finally {
      await browser.close();
    }
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
}
