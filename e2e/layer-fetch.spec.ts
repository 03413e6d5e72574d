// Volunteers fetch only their stage's tensors by range requests, from a model
// folder on a second static server of another origin (a tiny node:http server,
// not webswarm's), check each against the swarm's sha256, build their stage in
// the compute worker, and answer like the reference runner. A reload takes the
// built stage from the stage cache (one that does not hash to the manifest's
// sha256 is deleted and the stage rebuilt from the cached tensors); a server that tampers with a tensor, claims a huge header, or hides
// Content-Range from scripts, leaves the volunteer stopped with a named error.
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GREEDY } from '../shared/model/sampling.js';
import { ensureStages } from '../signal-server/models/model-folder.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';
import type { SignalServer } from '../signal-server/server.js';
import { goldenModelDir } from '../testing/golden.js';
import { type StaticFolderOptions, type StaticFolderServer, startStaticFolderServer } from '../testing/static-folder-server.js';
import { consent, type LocalSwarm, launchChromium, startLocalSwarm } from '../tools/local-swarm.js';
import { E2E_MODEL, startTestServer } from './harness.js';

const STAGES = 3;
const PROMPT = 'It is a truth universally acknowledged';
const TOKENS = 12;
const READY_TIMEOUT_MS = 60_000;
/** Three tries at loading (web/volunteer/replica.ts) with 2 s and 4 s between them. */
const ERROR_TIMEOUT_MS = 60_000;

const dir = goldenModelDir(E2E_MODEL);
const checkpointBytes = statSync(join(dir, 'model.safetensors')).size;
const cleanup: (() => Promise<void> | void)[] = [];

async function serverWith(weights: StaticFolderServer, cache: string): Promise<SignalServer> {
  const server = await startTestServer([{ dir, stages: STAGES, weightsUrl: weights.url }], cache, { redundancy: 1, quiet: true });
  cleanup.push(() => server.close());
  return server;
}

async function folderServer(o?: StaticFolderOptions): Promise<StaticFolderServer> {
  const s = await startStaticFolderServer(dir, o);
  cleanup.push(() => s.close());
  return s;
}

let cache: string;
beforeAll(() => {
  cache = mkdtempSync(join(tmpdir(), 'webswarm-layers-'));
});
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
  rmSync(cache, { recursive: true, force: true });
});

describe(`volunteers that fetch their layers of ${E2E_MODEL} from another origin`, () => {
  let weights: StaticFolderServer;
  let server: SignalServer;
  let swarm: LocalSwarm;

  beforeAll(async () => {
    weights = await folderServer();
    server = await serverWith(weights, cache);
    swarm = await startLocalSwarm({ serverUrl: server.address().url, volunteers: STAGES, log: (l) => process.stderr.write(`${l}\n`) });
    cleanup.push(() => swarm.close());
  });

  it('download only their stages’ tensors, build the server’s stages and answer like the reference runner', async () => {
    // Three tabs, one stage each: together about one checkpoint (the tied embedding twice), plus three header probes.
    expect(weights.bytesSent).toBeLessThan(checkpointBytes * 1.3);
    expect(
      weights.log.every((l) => /^GET model\.safetensors bytes=\d+-\d+$/.test(l)),
      weights.log.join('\n'),
    ).toBe(true);
    const reference = await ReferenceRunner.fromStageDir((await ensureStages(dir, { stages: STAGES }, cache)).dir);
    cleanup.push(() => reference.close());
    const expected = (await reference.generateIds(reference.tokenizer.encode(PROMPT), TOKENS, GREEDY)).tokens;
    const coordinator = server.coordinator;
    if (coordinator === null) throw new Error('no coordinator');
    const r = await coordinator.complete({ prompt: PROMPT, maxTokens: TOKENS, sampling: GREEDY });
    expect(r.tokens).toEqual(expected);
  });

  /** Reloads the page, consents, and waits for ready: its status then. */
  async function reloadToReady(page: Page) {
    await page.reload();
    await consent(page);
    await page.waitForFunction(() => window.webswarmVolunteer?.state === 'ready', null, { timeout: READY_TIMEOUT_MS });
    return page.evaluate(() => window.webswarmVolunteer);
  }

  /** The stage cache's entries, each with the sha256 of its bytes (its key names the sha256 it must have). */
  function stageCacheEntries(page: Page) {
    return page.evaluate(async () => {
      const cache = await caches.open('webswarm-stages-v1');
      const out: { key: string; sha256: string; bytes: number }[] = [];
      for (const req of await cache.keys()) {
        const bytes = await ((await cache.match(req)) as Response).arrayBuffer();
        const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
        const sha256 = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
        out.push({ key: req.url.split('/').pop() ?? '', sha256, bytes: bytes.byteLength });
      }
      return out;
    });
  }

  it('a reloaded volunteer takes its built stage from the stage cache: no request reaches the weights server, nothing is rebuilt', async () => {
    const page = swarm.pages[1] as Page;
    // The first load built the stage and kept it (written after ready, in the background), under its sha256.
    await expect.poll(() => stageCacheEntries(page)).toHaveLength(1);
    const kept = await stageCacheEntries(page);
    expect(kept[0]?.sha256).toBe(kept[0]?.key);
    weights.reset();
    const status = await reloadToReady(page);
    expect(status?.stageSource).toEqual({ from: 'cache' });
    expect(status?.progress).toMatchObject({ fromCache: true });
    expect(weights.log).toEqual([]);
    expect(weights.bytesSent).toBe(0);
  });

  it('a cached stage with one bit flipped is deleted, never run: the stage is rebuilt from the cached tensors and kept again', async () => {
    const page = swarm.pages[1] as Page;
    const key = await page.evaluate(async () => {
      const cache = await caches.open('webswarm-stages-v1');
      const [req] = await cache.keys();
      if (req === undefined) throw new Error('nothing in the stage cache');
      const bytes = new Uint8Array(await ((await cache.match(req)) as Response).arrayBuffer());
      const mid = bytes.byteLength >> 1;
      bytes[mid] = ((bytes[mid] as number) ^ 0x01) & 0xff;
      await cache.put(req, new Response(bytes));
      return req.url.split('/').pop() ?? '';
    });
    weights.reset();
    const status = await reloadToReady(page);
    expect(status?.stageSource).toMatchObject({ from: 'tensors' });
    const rejected = status?.stageSource?.from === 'tensors' ? status.stageSource.rejected : null;
    expect(rejected).toMatch(
      new RegExp(`^the cached stage 1 is \\d+ bytes with sha256 [0-9a-f]{64}; the manifest says \\d+ bytes, ${key}$`),
    );
    // Rebuilt from the tensors' own cache: still nothing from the weights server.
    expect(weights.log).toEqual([]);
    await expect.poll(async () => (await stageCacheEntries(page)).map((k) => k.sha256)).toEqual([key]);
    // The coordinator's challenge of the rebuilt stage passed: it counts the tab as ready.
    await expect.poll(() => server.coordinator?.serviceStatus().readyPerStage).toEqual([1, 1, 1]);
    // And the next reload takes it from the stage cache again.
    expect((await reloadToReady(page))?.stageSource).toEqual({ from: 'cache' });
  });
});

describe('a weights server that cannot be trusted', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium({ webgpu: false });
    cleanup.push(() => browser.close());
  });

  async function volunteerAgainst(weights: StaticFolderServer): Promise<{ page: Page; server: SignalServer }> {
    const server = await serverWith(weights, cache);
    const page = await (await browser.newContext()).newPage();
    await page.goto(`${server.address().url}/volunteer?backend=wasm`);
    await consent(page);
    await page.waitForFunction(() => window.webswarmVolunteer?.state === 'error', null, { timeout: ERROR_TIMEOUT_MS });
    return { page, server };
  }

  it('a tampered tensor: the volunteer refuses it by name and never becomes ready', async () => {
    // One bit flipped in every tensor range (the header's probe at offset 0 is left alone).
    const tampering = await folderServer({
      tamper: (_file, start, bytes) => {
        if (start > 0) bytes[bytes.byteLength >> 1] = ((bytes[bytes.byteLength >> 1] as number) ^ 0x01) & 0xff;
      },
    });
    const { page, server } = await volunteerAgainst(tampering);
    const status = await page.evaluate(() => window.webswarmVolunteer);
    expect(status?.lastError).toMatch(/^ERR_TENSOR_SHA256: tensor \S+ from http:\/\/127\.0\.0\.1:\d+\/model\.safetensors has sha256/);
    await expect.poll(() => page.getByRole('status').textContent()).toContain('ERR_TENSOR_SHA256');
    expect(server.coordinator?.serviceStatus().readyPerStage).toEqual([0, 0, 0]);
    // What was kept (the untouched tensors of a tampered range) is only what hashed to its key; the tampered one is not.
    const kept = await page.evaluate(async () => {
      const cache = await caches.open('webswarm-tensors-v1');
      const out: { key: string; sha256: string }[] = [];
      for (const req of await cache.keys()) {
        const bytes = await ((await cache.match(req)) as Response).arrayBuffer();
        const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
        out.push({ key: req.url.split('/').pop() ?? '', sha256: Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('') });
      }
      return out;
    });
    for (const k of kept) expect(k.sha256).toBe(k.key);
    const named = /^ERR_TENSOR_SHA256: tensor \S+ from \S+ has sha256 [0-9a-f]{64}, the swarm's index says ([0-9a-f]{64})/.exec(
      status?.lastError ?? '',
    );
    expect(named).not.toBeNull();
    expect(kept.map((k) => k.key)).not.toContain(named?.[1]);
  });

  it('a header longer than the bound: refused by name after one small probe', async () => {
    const hostileDir = mkdtempSync(join(tmpdir(), 'webswarm-hostile-'));
    cleanup.push(() => rmSync(hostileDir, { recursive: true, force: true }));
    const bytes = new Uint8Array(1024);
    new DataView(bytes.buffer).setBigUint64(0, 1n << 40n, true);
    writeFileSync(join(hostileDir, 'model.safetensors'), bytes);
    const hostile = await startStaticFolderServer(hostileDir);
    cleanup.push(() => hostile.close());
    const { page } = await volunteerAgainst(hostile);
    const status = await page.evaluate(() => window.webswarmVolunteer);
    expect(status?.lastError).toMatch(
      /^ERR_HEADER_TOO_LARGE: http:\/\/127\.0\.0\.1:\d+\/model\.safetensors has a 1099511627776-byte header/,
    );
    // Three tries, one probe each: the claimed terabyte is never asked for.
    expect(hostile.log).toHaveLength(3);
    expect(hostile.bytesSent).toBe(3 * 1024);
  });

  it('a server that hides Content-Range from scripts (no Access-Control-Expose-Headers): refused by name', async () => {
    const hiding = await folderServer({ hideContentRange: true });
    const { page } = await volunteerAgainst(hiding);
    const status = await page.evaluate(() => window.webswarmVolunteer);
    expect(status?.lastError).toMatch(/^ERR_WEIGHTS_RANGE: .*Access-Control-Expose-Headers/);
  });
});
