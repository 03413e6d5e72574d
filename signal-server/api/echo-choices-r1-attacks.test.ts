// Red team (83cd8ca): n choices with echo at r = 1 (one volunteer): nothing is verified, neither any choice nor the
// prompt its scores came from (verifiedOf).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureStages, partitionKey } from '../models/model-folder.js';
import { createSignalServer, type SignalServer } from '../server.js';
import { NodeVolunteer } from '../testing/node-volunteer.js';

const MODEL = 'austen-2m';
const PROMPT = 'It is a truth universally acknowledged';
const READY_TIMEOUT_MS = 10_000;
const MAX = 8;
const R = 1;

let cache: string;
let server: SignalServer;
let client: OpenAI;
const volunteers: NodeVolunteer[] = [];

beforeAll(async () => {
  cache = mkdtempSync(join(tmpdir(), 'webswarm-rt-echo-r1-'));
  const { dir, manifest } = await ensureStages(`models/${MODEL}`, { stages: 1 }, cache);
  server = createSignalServer({
    port: 0,
    host: '127.0.0.1',
    webRoot: null,
    models: [{ dir, manifest, key: partitionKey(manifest.model.numLayers, { stages: 1 }) }],
    redundancy: R,
    routeWaitMs: READY_TIMEOUT_MS,
    ratePerMinute: 0,
    apiMaxConcurrent: MAX,
  });
  await server.ready;
  for (let i = 0; i < R; i++) volunteers.push(new NodeVolunteer(server.address().url));
  const until = Date.now() + READY_TIMEOUT_MS;
  while ((server.coordinator?.volunteers().filter((v) => v.ready).length ?? 0) < R) {
    if (Date.now() > until) throw new Error(`2 volunteers not ready within ${READY_TIMEOUT_MS} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
  client = new OpenAI({ baseURL: `${server.address().url}/v1`, apiKey: 'none', maxRetries: 0 });
}, 60_000);

afterAll(async () => {
  for (const v of volunteers) await v.close();
  await server?.close();
  rmSync(cache, { recursive: true, force: true });
});

describe('n choices with echo at r = 1 (red team)', () => {
  it('non-streamed and streamed: every choice unverified, each echoing the prompt once', async () => {
    type Ext = { webswarm: { verified: boolean; choices: { verified: boolean; prompt_votes: unknown[] }[] } };
    const r = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 3, n: 3, echo: true, logprobs: 1 });
    const ext = (r as unknown as Ext).webswarm;
    expect(ext.verified).toBe(false);
    expect(ext.choices.map((c) => c.verified)).toEqual([false, false, false]);
    const only = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 0, n: 3, echo: true });
    expect((only as unknown as Ext).webswarm.choices.map((c) => c.verified)).toEqual([false, false, false]);
    const stream = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 3, n: 3, echo: true, stream: true });
    const finals: unknown[] = [];
    for await (const chunk of stream)
      for (const c of chunk.choices)
        if (c.finish_reason !== null) finals[c.index] = (chunk as unknown as { webswarm?: { verified?: boolean } }).webswarm?.verified;
    expect(finals).toEqual([false, false, false]);
  }, 30_000);
});
