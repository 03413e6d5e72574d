// Red team (83cd8ca): n choices with echo run alongside choice 0, their stream sends held until choice 0 scored the
// prompt. A real server on port 0 with two Node volunteers (one stage, r = 2) and the official `openai` client, as in
// logprobs-swarm.test.ts; API_MAX_CONCURRENT = 8 so that every choice holds a client slot.
import type OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReferenceRunner } from '../reference/reference-runner.js';
import type { SignalServer } from '../server.js';
import { API_MODEL, type ApiSwarm, startApiSwarm } from '../testing/api-swarm.js';

const MODEL = API_MODEL;
const PROMPT = 'It is a truth universally acknowledged';
const TOKENS = 8;
const MAX = 8;

let rig: ApiSwarm | undefined;
let server: SignalServer;
let reference: ReferenceRunner;
let client: OpenAI;

beforeAll(async () => {
  rig = await startApiSwarm('webswarm-rt-echo-', { redundancy: 2, apiMaxConcurrent: MAX });
  ({ server, reference, client } = rig);
}, 60_000);

afterAll(() => rig?.close());

type Chunk = { index: number; text: string; finish: string | null; lp: number };

async function collect(body: OpenAI.Completions.CompletionCreateParamsStreaming) {
  const stream = await client.completions.create(body);
  const chunks: Chunk[] = [];
  let usage: OpenAI.Completions.CompletionUsage | undefined;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices)
      chunks.push({ index: c.index, text: c.text, finish: c.finish_reason, lp: c.logprobs?.tokens?.length ?? 0 });
  }
  return { chunks, usage };
}

/** Per choice: first chunk the echoed prompt with every prompt position's log-probability, one finish chunk, last. */
function checkOrder(chunks: readonly Chunk[], n: number, promptLength: number) {
  for (let i = 0; i < n; i++) {
    const own = chunks.filter((c) => c.index === i);
    expect(own.length, `choice ${i} has chunks`).toBeGreaterThan(1);
    expect(own[0], `choice ${i}: first chunk the echo`).toMatchObject({ text: PROMPT, lp: promptLength, finish: null });
    expect(
      own.filter((c) => c.finish !== null),
      `choice ${i}: one finish`,
    ).toHaveLength(1);
    expect(own.at(-1)?.finish, `choice ${i}: finish last`).not.toBeNull();
    expect(
      own.filter((c) => c.text === PROMPT && c.lp === promptLength),
      `choice ${i}: one echo`,
    ).toHaveLength(1);
  }
}

describe('n choices with echo, streamed (red team)', () => {
  it('n = 6, logprobs, seed, a stop sequence one choice hits: each choice echoes first, once, draws seed + i, stops', async () => {
    const ids = reference.tokenizer.encode(PROMPT);
    const sampling = { temperature: 0.9, topK: 0, topP: 1 };
    const n = 6;
    const draws: string[] = [];
    for (let i = 0; i < n; i++)
      draws.push(reference.tokenizer.decode((await reference.generateIds(ids, TOKENS, { ...sampling, seed: 40 + i })).tokens));
    // A stop made of two characters of choice 3's draw that choice 0's does not contain.
    let stop = '';
    for (let k = 1; k + 2 <= (draws[3] as string).length && stop === ''; k++) {
      const s = (draws[3] as string).slice(k, k + 2);
      if (!(draws[0] as string).includes(s)) stop = s;
    }
    expect(stop).not.toBe('');
    const { chunks, usage } = await collect({
      model: MODEL,
      prompt: PROMPT,
      max_tokens: TOKENS,
      temperature: 0.9,
      seed: 40,
      n,
      echo: true,
      logprobs: 1,
      stop: [stop],
      stream: true,
      stream_options: { include_usage: true },
    });
    checkOrder(chunks, n, ids.length);
    for (let i = 0; i < n; i++) {
      const text = chunks
        .filter((c) => c.index === i)
        .map((c) => c.text)
        .join('');
      const draw = draws[i] as string;
      const cut = draw.indexOf(stop);
      expect(text, `choice ${i}`).toBe(PROMPT + (cut >= 0 ? draw.slice(0, cut) : draw));
    }
    expect(chunks.filter((c) => c.index === 3).at(-1)?.finish).toBe('stop');
    expect(usage?.prompt_tokens).toBe(ids.length);
    expect(usage?.completion_tokens).toBeGreaterThan(0);
    expect(usage?.completion_tokens).toBeLessThanOrEqual(n * TOKENS);
  }, 30_000);

  it('max_tokens 0, n = 8, streamed: each choice the echo then a finish (length), the prompt counted once', async () => {
    const ids = reference.tokenizer.encode(PROMPT);
    const { chunks, usage } = await collect({
      model: MODEL,
      prompt: PROMPT,
      max_tokens: 0,
      n: 8,
      echo: true,
      logprobs: 1,
      stream: true,
      stream_options: { include_usage: true },
    });
    checkOrder(chunks, 8, ids.length);
    for (let i = 0; i < 8; i++) expect(chunks.filter((c) => c.index === i).at(-1)?.finish).toBe('length');
    expect(usage).toMatchObject({ prompt_tokens: ids.length, completion_tokens: 0, total_tokens: ids.length });
  }, 30_000);

  it('a client gone mid-stream (after the first chunk, and before any): generations stop, slots released', async () => {
    for (const when of ['first chunk', 'at once'] as const) {
      const ac = new AbortController();
      const stream = await client.completions.create(
        { model: MODEL, prompt: PROMPT, max_tokens: 400, n: MAX, echo: true, logprobs: 1, stream: true },
        { signal: ac.signal },
      );
      if (when === 'at once') ac.abort();
      try {
        for await (const _ of stream) ac.abort();
      } catch {
        // the openai client ends or throws on an abort
      }
      // Every session ends soon (cancelled), not after 400 tokens each.
      const until = Date.now() + 5_000;
      while ((server.coordinator?.activeSessions ?? 0) > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      expect(server.coordinator?.activeSessions, `${when}: sessions left running`).toBe(0);
      // Every slot back: another n = MAX request is admitted.
      const r = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 1, n: MAX, echo: true });
      expect(r.choices).toHaveLength(MAX);
    }
  }, 30_000);

  it('choice 0 refused (prompt + max_tokens past the positions), streamed n = 4: an error event or status, quickly, slots back', async () => {
    const t0 = performance.now();
    await expect(
      (async () => {
        const s = await client.completions.create({
          model: MODEL,
          prompt: PROMPT,
          max_tokens: 510,
          echo: true,
          logprobs: 1,
          n: 4,
          stream: true,
        });
        for await (const _ of s);
      })(),
    ).rejects.toThrow();
    expect(performance.now() - t0).toBeLessThan(5_000);
    const r = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 1, n: MAX, echo: true });
    expect(r.choices).toHaveLength(MAX);
  }, 30_000);

  it('chat completions with n = 3 unaffected (no echo): each choice ends, seeds per choice', async () => {
    const r = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Good morning.' }],
      max_tokens: 4,
      n: 3,
      seed: 5,
      temperature: 0.9,
    });
    expect(r.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(r.choices.every((c) => c.finish_reason !== null)).toBe(true);
  }, 30_000);
  it('non-streamed n = 8 with echo, logprobs and a seed: choice i the reference draw for seed + i, verified, the prompt once in usage', async () => {
    const ids = reference.tokenizer.encode(PROMPT);
    const r = await client.completions.create({
      model: MODEL,
      prompt: PROMPT,
      max_tokens: 4,
      temperature: 1,
      seed: 4_294_967_293,
      n: 8,
      echo: true,
      logprobs: 2,
    });
    type Ext = { webswarm: { verified: boolean; choices: { tokens: number[]; verified: boolean; prompt_votes: unknown[] }[] } };
    const ext = (r as unknown as Ext).webswarm;
    expect(ext.verified).toBe(true);
    for (const [i, c] of r.choices.entries()) {
      // seed + i wraps at 2^32 (the server's (seed + i) >>> 0).
      const own = (await reference.generateIds(ids, 4, { temperature: 1, topK: 0, topP: 1, seed: (4_294_967_293 + i) >>> 0 })).tokens;
      expect(ext.choices[i]?.tokens, `choice ${i}`).toEqual(own);
      expect(c.text).toBe(PROMPT + reference.tokenizer.decode(own));
      expect(c.logprobs?.token_logprobs).toHaveLength(ids.length + 4);
      expect(c.logprobs?.top_logprobs?.[1]).toEqual(r.choices[0]?.logprobs?.top_logprobs?.[1]);
      expect(ext.choices[i]?.verified).toBe(true);
      expect(ext.choices[i]?.prompt_votes).toHaveLength(ids.length - 1);
    }
    expect(r.usage).toMatchObject({ prompt_tokens: ids.length, completion_tokens: 32, total_tokens: ids.length + 32 });
  }, 30_000);
});
