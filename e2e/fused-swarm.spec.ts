// A swarm whose stages are the fused graphs (GRAPH=fused): WASM replicas and
// one WebGPU replica (SwiftShader here) of the same files agree on every
// step, and the answer is the reference runner's, and the plain graphs'.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GREEDY } from '../shared/model/sampling.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';
import { goldenModelDir } from '../testing/golden.js';
import { fetchSwarmListing } from '../testing/swarm-listing.js';
import { E2E_MODEL, type E2eSwarm, startE2eSwarm } from './harness.js';

/** 2 stages × 3 replicas; volunteers fill stages 0, 1, 0, 1, …: the fourth holds stage 1, the last stage (logits). */
const WEBGPU_INDEX = 3;
const PROMPT = 'Emma Woodhouse, handsome, clever, and rich,';
const TOKENS = 12;

let e: E2eSwarm;
beforeAll(async () => {
  e = await startE2eSwarm({ volunteers: 6, stages: 2, graph: 'fused', backendOf: (i) => (i === WEBGPU_INDEX ? 'webgpu' : 'wasm') });
});
afterAll(() => e?.close());

describe('a swarm of fused stage graphs', () => {
  it("gives the reference's tokens, with a WebGPU replica agreeing with the WASM ones on every step", async () => {
    expect(e.reference.manifest.graph).toBe('fused');
    const gpu = await e.swarm.pages[WEBGPU_INDEX]?.evaluate(() => window.webswarmVolunteer);
    expect(gpu?.backend).toBe('webgpu');
    expect(gpu?.stage).toBe(1);
    const expected = await e.expected(PROMPT, TOKENS);
    const { json } = await e.complete({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0 });
    expect(json.webswarm.tokens).toEqual(expected);
    expect(json.webswarm.route[1]).toContain(gpu?.volunteerId);
    // The plain graphs (the reference form) give the same tokens.
    const cache = mkdtempSync(join(tmpdir(), 'webswarm-plain-'));
    const plain = await ReferenceRunner.fromModelDir(goldenModelDir(E2E_MODEL), { stages: 2 }, cache, { graph: 'plain' });
    try {
      expect((await plain.generateIds(plain.tokenizer.encode(PROMPT), TOKENS, GREEDY)).tokens).toEqual(expected);
    } finally {
      await plain.close();
      rmSync(cache, { recursive: true, force: true });
    }
    const listing = async () => (await fetchSwarmListing(e.server.address().url)).list;
    await expect
      .poll(async () => (await listing()).find((v) => v.id === gpu?.volunteerId), { timeout: 60_000 })
      .toMatchObject({ backend: 'webgpu', agreed: TOKENS, disagreed: 0 });
    expect(
      (await listing()).filter((v) => v.disagreed !== 0),
      'volunteers with disagreements',
    ).toEqual([]);
  });
});
