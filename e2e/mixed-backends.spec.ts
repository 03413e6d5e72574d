// One WebGPU replica (SwiftShader here, onnxruntime-web's JSPI build) among
// WASM replicas of a stage: it must agree with them on every step, and the
// answer must not change.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchSwarmListing } from '../testing/swarm-listing.js';
import { type E2eSwarm, startE2eSwarm } from './harness.js';

/** 2 stages × 3 replicas; volunteers fill stages 0, 1, 0, 1, …: the third holds stage 0, whose outputs stage 1 votes on. */
const WEBGPU_INDEX = 2;
const PROMPT = 'Emma Woodhouse, handsome, clever, and rich,';
const TOKENS = 12;

let e: E2eSwarm;
beforeAll(async () => {
  e = await startE2eSwarm({ volunteers: 6, stages: 2, backendOf: (i) => (i === WEBGPU_INDEX ? 'webgpu' : 'wasm') });
});
afterAll(() => e?.close());

describe('mixed backends', () => {
  it('a WebGPU replica agrees with the WASM replicas of its stage on every step', async () => {
    const gpu = await e.swarm.pages[WEBGPU_INDEX]?.evaluate(() => window.webswarmVolunteer);
    expect(gpu?.backend).toBe('webgpu');
    expect(gpu?.stage).toBe(0);
    // Chromium has JSPI: the WebGPU tab runs onnxruntime-web's JSPI build, the others its plain WASM build.
    expect(gpu?.ortBuild).toBe('jspi');
    const others = await Promise.all(
      e.swarm.pages.filter((_, i) => i !== WEBGPU_INDEX).map((p) => p.evaluate(() => window.webswarmVolunteer?.ortBuild)),
    );
    expect(others).toEqual(others.map(() => 'wasm'));
    const expected = await e.expected(PROMPT, TOKENS);
    const { json } = await e.complete({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0 });
    expect(json.webswarm.tokens).toEqual(expected);
    expect(json.webswarm.route[0]).toContain(gpu?.volunteerId);
    // The slow GPU replica's fingerprints may land after the token was accepted; the audit still counts them.
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
