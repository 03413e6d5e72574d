// A model's stages run in a real Chromium tab with onnxruntime-web, on WASM and
// on WebGPU (SwiftShader here), against PyTorch's golden logits and tokens. On
// WebGPU, both of onnxruntime-web's WebGPU builds: JSPI (what Chromium loads)
// and asyncify (what a browser without JSPI loads: this Chromium's worker
// script is served with JSPI's two functions deleted, since no flag of
// Chromium 156 turns JSPI off); the two give the same outputs, bit for bit.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agrees, maxAbs, maxAbsDifference, RELATIVE_TOLERANCE } from '../shared/vote/tolerance.js';
import type { SignalServer } from '../signal-server/server.js';
import { goldenModelDir, lastRow, readGolden } from '../testing/golden.js';
import { servedWithoutJspi } from '../tools/local-swarm.js';
import { launchChromium, startTestServer } from './harness.js';

/** WASM is the same kernels as the Node reference: the 1e-4 bound holds. */
const WASM_LOGIT_TOLERANCE = 1e-4;
const LOAD_TIMEOUT_MS = 120_000;
const MODEL = 'austen-2m';
const STAGES = 3;

let cacheRoot: string;
let server: SignalServer;
let browser: Browser;
/** A backend, and on WebGPU the build: JSPI (as Chromium has it) or asyncify (as a browser without JSPI). */
const RUNS = ['wasm', 'webgpu', 'webgpu without JSPI'] as const;
type Run = (typeof RUNS)[number];
const traces: Record<Run, number[][][]> = { wasm: [], webgpu: [], 'webgpu without JSPI': [] };

async function openModel(run: Run): Promise<Page> {
  const backend = run === 'wasm' ? 'wasm' : 'webgpu';
  const page = await browser.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') process.stderr.write(`[${run} page] ${m.text()}\n`);
  });
  if (run === 'webgpu without JSPI') await servedWithoutJspi(page);
  await page.goto(`${server.address().url}/check?model=${MODEL}&backend=${backend}`);
  await page.waitForFunction(() => window.webswarmCheck !== undefined || document.querySelector('[role=alert]') !== null, null, {
    timeout: LOAD_TIMEOUT_MS,
  });
  const failure = await page.locator('[role=alert]').count();
  if (failure > 0) throw new Error(`page failed: ${await page.locator('[role=alert]').textContent()}`);
  return page;
}

beforeAll(async () => {
  cacheRoot = mkdtempSync(join(tmpdir(), 'webswarm-e2e-'));
  server = await startTestServer([{ dir: goldenModelDir(MODEL), stages: STAGES }], cacheRoot);
  browser = await launchChromium({ webgpu: true });
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
  rmSync(cacheRoot, { recursive: true, force: true });
});

describe.each(RUNS)(`${MODEL} in Chromium on %s`, (run) => {
  it('loads the verified stages on the asked backend', async () => {
    const page = await openModel(run);
    const backend = run === 'wasm' ? 'wasm' : 'webgpu';
    const status = (await page.getByTestId('status').textContent()) ?? '';
    expect(status).toContain(`${STAGES} stages on ${backend}`);
    if (backend === 'webgpu') expect(status.toLowerCase()).toContain('swiftshader');
    if (backend === 'webgpu') expect(status).toContain(`onnxruntime-web's ${run === 'webgpu' ? 'jspi' : 'asyncify'} build`);
    const golden = readGolden(MODEL);
    for (const p of golden.prompts) {
      const outs = await page.evaluate((ids) => (window.webswarmCheck as NonNullable<typeof window.webswarmCheck>).trace(ids), p.ids);
      expect(outs).toHaveLength(STAGES);
      traces[run].push(outs);
      const logits = outs[STAGES - 1] as number[];
      const diff = maxAbsDifference(logits, lastRow(p));
      if (backend === 'wasm') expect(diff, `"${p.text}"`).toBeLessThan(WASM_LOGIT_TOLERANCE);
      else expect(agrees(logits, lastRow(p)), `"${p.text}": max diff ${diff}, max |PyTorch| ${maxAbs(lastRow(p))}`).toBe(true);
    }
    // Greedy decoding with the KV cache in the tab gives PyTorch's tokens.
    const first = golden.prompts[0] as (typeof golden.prompts)[number];
    const n = backend === 'wasm' ? first.greedy.length : 8;
    const r = await page.evaluate(([ids, max]) => (window.webswarmCheck as NonNullable<typeof window.webswarmCheck>).greedy(ids, max), [
      first.ids,
      n,
    ] as const);
    expect(r.tokens).toEqual(first.greedy.slice(0, n));
    process.stdout.write(`${MODEL} ${run}: ${r.msPerToken.toFixed(2)} ms per token (all ${STAGES} stages, one tab)\n`);
    await page.close();
  });
});

describe('WebGPU against WASM', () => {
  it("onnxruntime-web's two WebGPU builds give the same outputs, bit for bit", () => {
    expect(traces.webgpu.length).toBeGreaterThan(0);
    expect(traces['webgpu without JSPI']).toEqual(traces.webgpu);
  });

  it('differs by far less than the vote tolerance, at every stage', () => {
    expect(traces.wasm.length).toBeGreaterThan(0);
    expect(traces.webgpu.length).toBe(traces.wasm.length);
    const rows: string[] = [];
    for (let s = 0; s < STAGES; s++) {
      let absDiff = 0;
      let rel = 0;
      for (let p = 0; p < traces.wasm.length; p++) {
        const a = (traces.webgpu[p] as number[][])[s] as number[];
        const b = (traces.wasm[p] as number[][])[s] as number[];
        const d = maxAbsDifference(a, b);
        absDiff = Math.max(absDiff, d);
        rel = Math.max(rel, d / Math.max(1, maxAbs(b)));
        expect(agrees(a, b), `stage ${s}, prompt ${p}: max diff ${d}, max |wasm| ${maxAbs(b)}`).toBe(true);
        // The vote's tolerance must sit well above what backends differ by.
        expect(d / Math.max(1, maxAbs(b)), `stage ${s}, prompt ${p}`).toBeLessThan(RELATIVE_TOLERANCE / 5);
      }
      rows.push(
        `stage ${s} (${s === STAGES - 1 ? 'logits' : 'hidden'}): max |webgpu − wasm| = ${absDiff.toExponential(2)}, relative ${rel.toExponential(2)}`,
      );
    }
    process.stdout.write(`WebGPU (SwiftShader) vs WASM on ${MODEL}:\n${rows.join('\n')}\n`);
  });
});
