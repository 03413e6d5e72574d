// The server restarts: a request in flight fails with a clear error, the
// volunteer tabs reconnect by themselves (with back-off), are assigned again,
// load their stage, and a new request succeeds.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GREEDY } from '../shared/model/sampling.js';
import { ensureStages } from '../signal-server/models/model-folder.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';
import type { SignalServer } from '../signal-server/server.js';
import { goldenModelDir } from '../testing/golden.js';
import { fetchSwarmListing } from '../testing/swarm-listing.js';
import { type LocalSwarm, startLocalSwarm } from '../tools/local-swarm.js';
import { startTestServer } from './harness.js';

const MODEL_DIR = goldenModelDir('tiny-gqa-bias');
const PROMPT = 'It is a truth universally acknowledged';
const TOKENS = 16;
const BACK_TIMEOUT_MS = 60_000;

let cache: string;
let server: SignalServer;
let swarm: LocalSwarm;
let reference: ReferenceRunner;

beforeAll(async () => {
  cache = mkdtempSync(join(tmpdir(), 'webswarm-restart-'));
  server = await startTestServer([{ dir: MODEL_DIR, stages: 3 }], cache, { redundancy: 1 });
  reference = await ReferenceRunner.fromStageDir((await ensureStages(MODEL_DIR, { stages: 3 }, cache)).dir);
  swarm = await startLocalSwarm({ serverUrl: server.address().url, volunteers: 3 });
});

afterAll(async () => {
  await swarm?.close();
  await reference?.close();
  await server?.close();
  rmSync(cache, { recursive: true, force: true });
});

function complete(url: string, maxTokens: number): Promise<Response> {
  return fetch(`${url}/v1/completions`, {
    method: 'POST',
    body: JSON.stringify({ prompt: PROMPT, max_tokens: maxTokens, temperature: 0 }),
  });
}

describe('a server restart', () => {
  it('fails the request in flight by name, and the swarm comes back by itself', async () => {
    const { url, port } = server.address();
    const inFlight = complete(url, 400);
    await new Promise((r) => setTimeout(r, 300));
    await server.close();
    const failed = await inFlight;
    expect(failed.status).toBe(503);
    expect(((await failed.json()) as { error: { code: string } }).error.code).toBe('ERR_SHUTTING_DOWN');

    server = await startTestServer([{ dir: MODEL_DIR, stages: 3 }], cache, { redundancy: 1, port });
    await expect
      .poll(async () => (await fetchSwarmListing(url)).list.filter((v) => v.ready).length, {
        timeout: BACK_TIMEOUT_MS,
        interval: 500,
      })
      .toBe(3);
    const expected = (await reference.generateIds(reference.tokenizer.encode(PROMPT), TOKENS, GREEDY)).tokens;
    const res = await complete(url, TOKENS);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { webswarm: { tokens: number[] } }).webswarm.tokens).toEqual(expected);
  });
});
