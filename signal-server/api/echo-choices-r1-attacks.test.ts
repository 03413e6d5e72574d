// Red team (83cd8ca): n choices with echo at r = 1 (one volunteer): nothing is verified, neither any choice nor the
// prompt its scores came from (verifiedOf).
import type OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { API_MODEL, type ApiSwarm, startApiSwarm } from '../testing/api-swarm.js';

const MODEL = API_MODEL;
const PROMPT = 'It is a truth universally acknowledged';
const MAX = 8;
const R = 1;

let rig: ApiSwarm | undefined;
let client: OpenAI;

beforeAll(async () => {
  rig = await startApiSwarm('webswarm-rt-echo-r1-', { redundancy: R, apiMaxConcurrent: MAX });
  ({ client } = rig);
}, 60_000);

afterAll(() => rig?.close());

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
