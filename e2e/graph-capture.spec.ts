// The WebGPU worker's captured decode path (web/compute/captured-stages.ts) in
// a real Chromium tab, on SwiftShader: each stage's step recorded once by
// onnxruntime and replayed, the KV cache in rows of GPU buffers the worker
// owns. Against the reference runner (WASM in Node, the fused graphs): the
// same greedy tokens and logits within the vote's tolerance through a prompt,
// a wrong step rolled back, a multi-position step, a second session alongside
// and closed, sessions stepping at once (one replay for all of them), and a
// row filled to its last position while others step. The rows here are 64
// positions long (?capturePositions=64), not the model's 512: a call's work on
// SwiftShader follows the rows' length, and a full row is 64 calls, not 512.
// A volunteer's rows are the model's whole length (e2e/captured-swarm.spec.ts).
// This is also the test that onnxruntime-web's graph-capture mend
// (tools/patch-onnxruntime-web.ts) holds: without it the second run throws.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { argmax } from '../shared/model/sampling.js';
import { agrees, maxAbsDifference } from '../shared/vote/tolerance.js';
import { ensureStages } from '../signal-server/models/model-folder.js';
import type { SignalServer } from '../signal-server/server.js';
import { goldenModelDir, readGolden } from '../testing/golden.js';
import { type GreedyReference, greedyReference } from '../testing/greedy-reference.js';
import type { WorkerStats } from '../web/compute/messages.js';
import { launchChromium, startTestServer } from './harness.js';

const MODEL = 'austen-2m';
const STAGES = 3;
const TOKENS = 8;
const WRONG_AT = 3;
const LOAD_TIMEOUT_MS = 180_000;
/** Keys and values of austen-2m's 6 layers, over its 3 stages: a session's KV tensors. */
const KV_TENSORS = 2 * 6;
/** Positions a captured row holds on this page. */
const ROW = 64;
/** How long a session's first step waits for a row on this page when all are held. */
const ROW_WAIT_MS = 2_000;

const golden = readGolden(MODEL);
const prompts = golden.prompts.map((p) => p.ids);
let cacheRoot: string;
let server: SignalServer;
let browser: Browser;
let page: Page;
/** The reference runner's greedy tokens and last-position logits after each, per prompt. */
const reference: GreedyReference[] = [];
/** The same for a prompt and tokens that fill a row: its last logits are at position ROW − 1. */
let fullRow: GreedyReference;

type Check = NonNullable<typeof window.webswarmCheck>;

beforeAll(async () => {
  cacheRoot = mkdtempSync(join(tmpdir(), 'webswarm-capture-'));
  server = await startTestServer([{ dir: goldenModelDir(MODEL), stages: STAGES, graph: 'fused' }], cacheRoot, { quiet: true });
  const { dir } = await ensureStages(goldenModelDir(MODEL), { stages: STAGES }, cacheRoot, { graph: 'fused' });
  for (const ids of prompts.slice(0, 2)) reference.push(await greedyReference(dir, ids, TOKENS));
  // The third prompt carried on until its last fed position is the row's last.
  const third = prompts[2] as number[];
  fullRow = await greedyReference(dir, third, ROW - third.length + 1);
  browser = await launchChromium({ webgpu: true });
  page = await browser.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') process.stderr.write(`[capture page] ${m.text()}\n`);
  });
  await page.goto(
    `${server.address().url}/check?model=${MODEL}&backend=webgpu&capture=on&capturePositions=${ROW}&captureRowWaitMs=${ROW_WAIT_MS}&captureReservedRows=1`,
  );
  await page.waitForFunction(() => window.webswarmCheck !== undefined || document.querySelector('[role=alert]') !== null, null, {
    timeout: LOAD_TIMEOUT_MS,
  });
  if ((await page.locator('[role=alert]').count()) > 0) throw new Error(`page failed: ${await page.locator('[role=alert]').textContent()}`);
}, LOAD_TIMEOUT_MS + 60_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
  rmSync(cacheRoot, { recursive: true, force: true });
});

async function step(session: number, ids: number[], everyRow = false): Promise<Float32Array> {
  return Float32Array.from(
    await page.evaluate(([s, i, e]) => (window.webswarmCheck as Check).step(s, [...i], e), [session, ids, everyRow] as const),
  );
}

async function stats(): Promise<WorkerStats> {
  return page.evaluate(() => (window.webswarmCheck as Check).stats());
}

function agree(got: Float32Array, want: Float32Array, what: string): void {
  expect(agrees(got, want), `${what}: max diff ${maxAbsDifference(got, want)}`).toBe(true);
}

describe('graph capture on WebGPU (SwiftShader)', () => {
  it("gives the reference's tokens through a roll-back, a multi-position step and a close", async () => {
    const ref = reference[0] as (typeof reference)[number];
    const prompt = prompts[0] as number[];
    let logits = await step(1, prompt);
    agree(logits, ref.logits[0] as Float32Array, 'prompt');
    const tokens = [argmax(logits)];
    // A second session alongside, closed: its row is free again.
    agree(await step(2, prompt), ref.logits[0] as Float32Array, 'second session');
    expect(await stats()).toMatchObject({ sessions: 2, kvOnDevice: 2 * KV_TENSORS, kvOnHost: 0 });
    await page.evaluate(() => (window.webswarmCheck as Check).release(2));
    expect(await stats()).toMatchObject({ sessions: 1, kvOnDevice: KV_TENSORS });

    while (tokens.length < TOKENS) {
      const i = tokens.length;
      if (i === WRONG_AT) {
        // A step on an input later found wrong, undone: the row's count drops, its stale position is overwritten.
        await step(1, [((tokens[i - 1] as number) + 1) % 2048]);
        await page.evaluate(([s, p]) => (window.webswarmCheck as Check).truncate(s, p), [1, prompt.length + i - 1] as const);
      }
      if (i === WRONG_AT + 2 && i + 1 < TOKENS) {
        // Two positions in one step, a row of logits for each (a replay, a scored prompt's chunk).
        const vocab = (ref.logits[0] as Float32Array).length;
        const rows = await step(1, [tokens[i - 1] as number, ref.tokens[i] as number], true);
        expect(rows.length).toBe(2 * vocab);
        agree(rows.subarray(0, vocab), ref.logits[i] as Float32Array, `step ${i}`);
        logits = rows.subarray(vocab);
        agree(logits, ref.logits[i + 1] as Float32Array, `step ${i + 1}`);
        tokens.push(ref.tokens[i] as number, argmax(logits));
        continue;
      }
      logits = await step(1, [tokens[i - 1] as number]);
      agree(logits, ref.logits[i] as Float32Array, `step ${i}`);
      tokens.push(argmax(logits));
    }
    expect(tokens).toEqual(ref.tokens);
    await page.evaluate(() => (window.webswarmCheck as Check).release(1));
    expect(await stats()).toMatchObject({ sessions: 0, kvOnDevice: 0 });
  });

  it('steps sessions that wait together in one replay, each its own tokens', async () => {
    const before = await stats();
    const decode = async (session: number, k: number) => {
      let logits = await step(session, prompts[k] as number[]);
      const tokens = [argmax(logits)];
      while (tokens.length < 4) {
        logits = await step(session, [tokens[tokens.length - 1] as number]);
        tokens.push(argmax(logits));
      }
      return tokens;
    };
    // Different prompts of different lengths, at once: the rows step at their own positions in the same calls.
    const [a, b] = await Promise.all([decode(10, 0), decode(11, 1)]);
    expect(a).toEqual((reference[0] as (typeof reference)[number]).tokens.slice(0, 4));
    expect(b).toEqual((reference[1] as (typeof reference)[number]).tokens.slice(0, 4));
    const after = await stats();
    expect(after.batchedSteps - before.batchedSteps).toBeGreaterThan(0);
    expect(after.calls - before.calls).toBeLessThan(after.steps - before.steps);
    for (const s of [10, 11]) await page.evaluate((id) => (window.webswarmCheck as Check).release(id), s);
    expect((await stats()).sessions).toBe(0);
  });

  it("refuses a session past the rows it has, by name, keeping one for sessions below 0 (a replica's challenges)", async () => {
    // DEFAULT_CAPTURE_SLOTS rows, one of them reserved: three sessions hold the others, the fourth is refused and the
    // others are untouched.
    for (const s of [20, 21, 22]) await step(s, [1]);
    const t0 = Date.now();
    await expect(step(23, [1])).rejects.toThrow(/all 3 captured rows are held/);
    // It waited for a row first (a volunteer's session closed while it computes frees its row after).
    expect(Date.now() - t0).toBeGreaterThanOrEqual(ROW_WAIT_MS - 100);
    // A challenge (a session below 0) takes the reserved row at once, and its answer is the reference's.
    agree(await step(-7, prompts[0] as number[]), (reference[0] as GreedyReference).logits[0] as Float32Array, 'a challenge');
    // A row freed while a session waits is its: the step goes on.
    const waiting = step(23, [1]);
    await new Promise((r) => setTimeout(r, 300));
    await page.evaluate(() => (window.webswarmCheck as Check).release(20));
    await waiting;
    for (const s of [-7, 21, 22, 23]) await page.evaluate((id) => (window.webswarmCheck as Check).release(id), s);
    expect((await stats()).sessions).toBe(0);
  });

  it("the check page's own generation runs as sessions of the captured stages, and frees them", async () => {
    const ref = reference[0] as GreedyReference;
    const prompt = prompts[0] as number[];
    const got = await page.evaluate(([ids, n]) => (window.webswarmCheck as Check).greedy([...ids], n), [prompt, 4] as const);
    expect(got.tokens).toEqual(ref.tokens.slice(0, 4));
    agree(
      Float32Array.from(await page.evaluate((ids) => (window.webswarmCheck as Check).forward([...ids]), prompt)),
      ref.logits[0] as Float32Array,
      'forward',
    );
    expect((await stats()).sessions).toBe(0);
  });

  it('refuses a step that cannot fit in a row whole, before computing any of it, and frees the row it took', async () => {
    const before = await stats();
    const tooLong = Array.from({ length: ROW + 1 }, (_, i) => i % 2048);
    await expect(page.evaluate((ids) => (window.webswarmCheck as Check).stepStage(40, 0, ids), tooLong)).rejects.toThrow(
      new RegExp(`${ROW + 1} positions after 0 pass the ${ROW} a captured row holds`),
    );
    const after = await stats();
    expect(after.calls).toBe(before.calls);
    expect(after.sessions).toBe(0);
  });

  it('holds a row to its last position; other rows stepping meanwhile leave what it holds, and a roll-back recomputes the last', async () => {
    const prompt = prompts[2] as number[];
    const n = fullRow.tokens.length;
    // The prompt and the reference's tokens but the last, in one step: ROW positions, the row full.
    const fed = [...prompt, ...fullRow.tokens.slice(0, n - 1)];
    expect(fed.length).toBe(ROW);
    agree(await step(50, fed), fullRow.logits[n - 1] as Float32Array, 'the last position of a full row');
    await expect(step(50, [fullRow.tokens[n - 1] as number])).rejects.toThrow(
      new RegExp(`1 positions after ${ROW} pass the ${ROW} a captured row holds`),
    );
    // Another session's calls: the full row writes over its last position in each, and nothing before it.
    let logits = await step(51, prompts[0] as number[]);
    for (let i = 0; i < 3; i++) logits = await step(51, [argmax(logits)]);
    // The last position taken back and fed again: the same logits, from the positions the row still holds.
    await page.evaluate(([s, p]) => (window.webswarmCheck as Check).truncate(s, p), [50, ROW - 1] as const);
    agree(await step(50, [fullRow.tokens[n - 2] as number]), fullRow.logits[n - 1] as Float32Array, 'the last position again');
    for (const s of [50, 51]) await page.evaluate((id) => (window.webswarmCheck as Check).release(id), s);
    expect((await stats()).sessions).toBe(0);
  });

  it('gives no result after its device is lost (the last test: the page has no device after it)', async () => {
    await step(30, [1]);
    await page.evaluate(() => (window.webswarmCheck as Check).loseDevice());
    await expect(step(30, [2])).rejects.toThrow(/device was lost/);
    await expect(step(31, [1])).rejects.toThrow(/device was lost/);
  });
});
