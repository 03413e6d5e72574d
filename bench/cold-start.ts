/**
 * A volunteer's cold start: the bytes it downloads for its stage against the
 * whole checkpoint (its layers by range requests, measured at a static server
 * that counts what it sends), and the time from opening /volunteer to ready
 * in Chromium, with the browser's cache cold (a fresh context) and warm (a
 * reload: the runtime from the HTTP cache, the built stage from the stage
 * cache), for the default model and a SmolLM-135M-shaped random checkpoint in
 * float32 and in q4 (the swarm's --weights q4).
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type { WeightPrecision } from '../shared/model/quantize.js';
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

/** A model folder served in one weight precision (stage files written in it, tensors fetched as the checkpoint stores them). */
interface Variant {
  readonly dir: string;
  readonly weights: WeightPrecision;
}

const label = (modelId: string, weights: WeightPrecision) => (weights === 'f32' ? modelId : `${modelId} ${weights}`);

/** Bytes each stage's volunteer downloads, counted by the server that sends them; each stage checked byte-identical to the server's. */
async function bytesPerStage({ dir: modelDir, weights }: Variant, cache: string): Promise<string[][]> {
  const { dir, manifest } = await ensureStages(modelDir, { stages: STAGES }, cache, { weights, graph: 'plain' });
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
      const built = buildStageGraph(manifest.model, new WeightReader('fetched', fetched.tensors), spec, manifest.weights);
      if ((await sha256Hex(built)) !== s.sha256)
        throw new Error(`${manifest.modelId} stage ${s.index}: built stage differs from the server's`);
      const target = checkpoint / STAGES + embed;
      rows.push([
        label(manifest.modelId, weights),
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
  /** The built stage came from the stage cache (web/compute/stage-cache.ts), not from its tensors. */
  readonly stageCached: boolean;
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
    stageCached: r.status.stageSource?.from === 'cache',
  };
}

/** Cold (fresh context) and warm (reload) starts of one volunteer per stage, `repeats` times. */
export async function coldStarts(browser: Browser, { dir, weights }: Variant, cache: string, repeats: number): Promise<string[][]> {
  const server = await startLocalServer([{ dir, stages: STAGES, weights }], cache, { redundancy: 1 });
  const url = `${server.address().url}/volunteer?backend=wasm`;
  const modelId = label(basename(dir), weights);
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
        `${xs.filter((x) => x.stageCached).length}/${xs.length}`,
      ]);
    }
  }
  return rows;
}

export async function benchColdStart(o: ColdStartBenchOptions): Promise<void> {
  const cache = mkdtempSync(join(tmpdir(), 'webswarm-bench-cold-'));
  const smollm = ensureRandomCheckpoint(SMOLLM_DIR, SMOLLM_135M_SHAPE, SMOLLM_SEED);
  try {
    const variants: Variant[] = [
      { dir: o.defaultModelDir, weights: 'f32' },
      { dir: smollm, weights: 'f32' },
      { dir: smollm, weights: 'q4' },
    ];
    const bytes: string[][] = [];
    for (const v of variants) bytes.push(...(await bytesPerStage(v, cache)));
    printTable(
      `bytes a volunteer downloads for its stage (${STAGES} stages; range requests counted at the server; target: a third of the checkpoint plus the embedding)`,
      ['model', 'stage', 'layers', 'downloaded MB', 'requests', 'stage file MB (before)', 'checkpoint MB', 'share', 'target MB', 'within'],
      bytes,
    );
    const browser = await launchChromium({ webgpu: false });
    try {
      const rows: string[][] = [];
      for (const v of variants) rows.push(...(await coldStarts(browser, v, cache, o.repeats)));
      printTable(
        `volunteer cold start in Chromium on WASM, loopback, median of ${o.repeats} per stage (load average ${loadavg()
          .map((x) => x.toFixed(1))
          .join(
            ' ',
          )} on ${cpus().length} cores at the end): page open → ready, consent click → ready, fetch (the manifest, then the built stage read from the stage cache and hashed, or else its tensors fetched or read from their cache and verified), runtime start (click → onnxruntime-web's WebAssembly started in the worker, alongside joining and fetching), build (the stage built from its tensors and checked, unless it came from the stage cache; its session created once the runtime has started; one first step run)`,
        ['model', 'cache', 'stage', 'open → ready ms', 'click → ready ms', 'fetch ms', 'runtime start ms', 'build ms', 'stage from cache'],
        rows,
      );
    } finally {
      await browser.close();
    }
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
}
