// One WebGPU replica (SwiftShader here) among WASM replicas of a stage: it
// must agree with them on every step, and the answer must not change.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GREEDY } from '../shared/model/sampling.js';
import { ensureStages } from '../signal-server/models/model-folder.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';
import type { SignalServer } from '../signal-server/server.js';
import { GOLDEN_MODELS } from '../signal-server/testing/golden.js';
import { type LocalSwarm, startLocalSwarm } from '../tools/local-swarm.js';
import { startTestServer } from './harness.js';

const MODEL = existsSync(GOLDEN_MODELS['austen-2m'] as string) ? 'austen-2m' : 'tiny-gqa-bias';
const STAGES = 3;
const REDUNDANCY = 3;
/** Volunteers fill stages 0, 1, 2, 0, 1, …: the fifth holds stage 1. */
const WEBGPU_INDEX = 4;
const PROMPT = 'Emma Woodhouse, handsome, clever, and rich,';
const TOKENS = 12;

let cache: string;
let server: SignalServer;
let swarm: LocalSwarm;
let reference: ReferenceRunner;

beforeAll(async () => {
  cache = mkdtempSync(join(tmpdir(), 'webswarm-mixed-'));
  const dir = GOLDEN_MODELS[MODEL] as string;
  server = await startTestServer([{ dir, stages: STAGES }], cache, { redundancy: REDUNDANCY });
  reference = await ReferenceRunner.fromStageDir((await ensureStages(dir, { stages: STAGES }, cache)).dir);
  swarm = await startLocalSwarm({
    serverUrl: server.address().url,
    volunteers: STAGES * REDUNDANCY,
    backendOf: (i) => (i === WEBGPU_INDEX ? 'webgpu' : 'wasm'),
  });
});

afterAll(async () => {
  await swarm?.close();
  await reference?.close();
  await server?.close();
  rmSync(cache, { recursive: true, force: true });
});

interface SwarmListing {
  list: { id: string; stage: number; backend: string; agreed: number; disagreed: number }[];
}

describe('mixed backends', () => {
  it('a WebGPU replica agrees with the WASM replicas of its stage on every step', async () => {
    const gpu = await swarm.pages[WEBGPU_INDEX]?.evaluate(() => window.webswarmVolunteer);
    expect(gpu?.backend).toBe('webgpu');
    expect(gpu?.stage).toBe(1);
    const expected = (await reference.generateIds(reference.tokenizer.encode(PROMPT), TOKENS, GREEDY)).tokens;
    const res = await fetch(`${server.address().url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0 }),
    });
    const json = (await res.json()) as { webswarm: { tokens: number[]; route: string[][] } };
    expect(json.webswarm.tokens).toEqual(expected);
    expect(json.webswarm.route[1]).toContain(gpu?.volunteerId);
    // The slow GPU replica's fingerprints may land after the token was accepted; the audit still counts them.
    const audit = async () =>
      ((await (await fetch(`${server.address().url}/api/swarm`)).json()) as SwarmListing).list.find((v) => v.id === gpu?.volunteerId);
    await expect.poll(audit, { timeout: 60_000 }).toMatchObject({ backend: 'webgpu', agreed: TOKENS, disagreed: 0 });
    const all = ((await (await fetch(`${server.address().url}/api/swarm`)).json()) as SwarmListing).list;
    expect(all.every((v) => v.disagreed === 0)).toBe(true);
  });
});
