// The official `openai` npm client against a real server and a local swarm of
// Chromium volunteer tabs (1 stage × 3 replicas on WASM): completions and chat
// completions, streamed and not, stop sequences and max_tokens; the reference
// runner's greedy tokens are the oracle. Then the same package bundled for a
// web page of another origin (http://localhost:PORT, against the swarm's
// http://127.0.0.1:PORT): its requests carry x-stainless-* headers, so each is
// preceded by a CORS preflight that must allow them.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { E2E_MODEL, type E2eSwarm, startE2eSwarm } from './harness.js';
import { BROWSER_MESSAGES, type ClientWindow, openHostPage } from './openai-browser-page.js';

const MODEL = E2E_MODEL;
const PROMPT = 'She was the youngest of the two daughters';
const TOKENS = 20;
const MESSAGES = [
  { role: 'system' as const, content: 'Chapter 1' },
  { role: 'user' as const, content: 'Good morning. Is your sister at home?' },
];

let e: E2eSwarm;
let client: OpenAI;
beforeAll(async () => {
  e = await startE2eSwarm({ volunteers: 3, stages: 1, redundancy: 3, quiet: true });
  client = new OpenAI({ baseURL: `${e.server.address().url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
afterAll(() => e?.close());

const decode = (ids: number[]) => e.reference.tokenizer.decode(ids);
const chatPrompt = () => e.server.coordinator?.chatPrompt(MESSAGES) as string;

interface VoteExtension {
  readonly webswarm?: { index: number; token: number; votes: { stage: number; agreed: number; replicas: number }[] };
}

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${e.server.address().url}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m === null ? Number.NaN : Number(m[1]);
}

describe(`the openai client against a swarm of ${MODEL}`, () => {
  it('completes a prompt like the reference runner, with usage and a vote for every token', async () => {
    const expected = await e.expected(PROMPT, TOKENS);
    const tokensBefore = await metric('webswarm_tokens_total');
    const r = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: TOKENS, temperature: 0 });
    expect(r.object).toBe('text_completion');
    expect(r.choices[0]?.text).toBe(decode(expected));
    expect(r.choices[0]?.finish_reason).toBe('length');
    expect(r.usage).toEqual({
      prompt_tokens: e.reference.tokenizer.encode(PROMPT).length,
      completion_tokens: TOKENS,
      total_tokens: e.reference.tokenizer.encode(PROMPT).length + TOKENS,
    });
    const ext = (r as unknown as { webswarm: { tokens: number[]; votes: { votes: { agreed: number; replicas: number }[] }[] } }).webswarm;
    expect(ext.tokens).toEqual(expected);
    expect(ext.votes).toHaveLength(TOKENS);
    for (const v of ext.votes) for (const s of v.votes) expect(s.agreed * 2).toBeGreaterThan(s.replicas);
    expect(await metric('webswarm_tokens_total')).toBe(tokensBefore + TOKENS);
  });

  it('logit_bias and n through the tabs: each choice is the reference runner’s draw with the same bias and seed + i', async () => {
    const greedy = await e.expected(PROMPT, TOKENS);
    const banned = [greedy[0] as number, greedy[1] as number];
    const sampling = { temperature: 0.8, topK: 0, topP: 1, logitBias: banned.map((t) => [t, -100] as const) };
    const r = await client.completions.create({
      model: MODEL,
      prompt: PROMPT,
      max_tokens: TOKENS,
      temperature: 0.8,
      seed: 7,
      n: 2,
      logit_bias: Object.fromEntries(banned.map((t) => [t, -100])),
    });
    const choices = (r as unknown as { webswarm: { choices: { tokens: number[] }[] } }).webswarm.choices;
    for (const [i, c] of choices.entries()) {
      expect(c.tokens).toEqual(await e.expected(PROMPT, TOKENS, { ...sampling, seed: 7 + i }));
      expect(c.tokens.some((t) => banned.includes(t))).toBe(false);
      expect(r.choices[i]?.text).toBe(decode(c.tokens));
    }
    // The tabs sampled with the bias in the mesh loop as the coordinator did: no step was rolled back.
    expect(e.server.coordinator?.meshRollBacks).toBe(0);
  });

  it('streams a completion as server-sent events that add up to the same text', async () => {
    const expected = await e.expected(PROMPT, TOKENS);
    const stream = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: TOKENS, temperature: 0, stream: true });
    let text = '';
    const voted: number[] = [];
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      const w = (chunk as unknown as VoteExtension).webswarm;
      if (w !== undefined && 'token' in w) {
        voted.push(w.token);
        for (const s of w.votes) expect(s.agreed * 2).toBeGreaterThan(s.replicas);
      }
    }
    expect(text).toBe(decode(expected));
    expect(voted).toEqual(expected);
    expect(finish).toBe('length');
  });

  it('answers a chat through the model’s chat template, streamed and not, with usage', async () => {
    const expected = await e.expected(chatPrompt(), TOKENS);
    const r = await client.chat.completions.create({ model: MODEL, messages: MESSAGES, max_tokens: TOKENS, temperature: 0 });
    expect(r.object).toBe('chat.completion');
    expect(r.choices[0]?.message).toMatchObject({ role: 'assistant', content: decode(expected) });
    expect(r.usage?.completion_tokens).toBe(TOKENS);

    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: MESSAGES,
      max_tokens: TOKENS,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    // The role comes once, on the first chunk.
    const roles: (string | undefined)[] = [];
    let usage: OpenAI.CompletionUsage | null | undefined;
    let finish: string | null = null;
    for await (const chunk of stream) {
      if (chunk.choices[0] !== undefined) roles.push(chunk.choices[0].delta.role);
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      usage = chunk.usage ?? usage;
    }
    expect(roles[0]).toBe('assistant');
    expect(roles.filter((r) => r !== undefined)).toEqual(['assistant']);
    expect(text).toBe(decode(expected));
    expect(finish).toBe('length');
    expect(usage?.completion_tokens).toBe(TOKENS);
    expect(usage?.prompt_tokens).toBe(e.reference.tokenizer.encode(chatPrompt()).length);
  });

  it('ends at a stop sequence, leaving it out, streamed and not', async () => {
    const full = decode(await e.expected(PROMPT, TOKENS));
    // A stop sequence from the middle of what the model will say.
    const words = full.trim().split(/\s+/);
    const stop = ` ${words[Math.min(3, words.length - 1)]}`;
    const cut = full.indexOf(stop);
    expect(cut).toBeGreaterThan(0);
    const r = await client.completions.create({
      model: MODEL,
      prompt: PROMPT,
      max_tokens: TOKENS,
      temperature: 0,
      stop: [stop, 'never appears'],
    });
    expect(r.choices[0]?.text).toBe(full.slice(0, cut));
    expect(r.choices[0]?.finish_reason).toBe('stop');
    expect(r.usage?.completion_tokens).toBeLessThan(TOKENS);

    const stream = await client.completions.create({
      model: MODEL,
      prompt: PROMPT,
      max_tokens: TOKENS,
      temperature: 0,
      stop,
      stream: true,
    });
    let text = '';
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(text).toBe(full.slice(0, cut));
    expect(finish).toBe('stop');
  });

  it('stops computing when the client goes away mid-stream', async () => {
    const ac = new AbortController();
    const stream = await client.completions.create(
      { model: MODEL, prompt: PROMPT, max_tokens: 400, temperature: 0, stream: true },
      { signal: ac.signal },
    );
    let chunks = 0;
    try {
      for await (const _ of stream) {
        chunks += 1;
        if (chunks === 3) ac.abort();
      }
    } catch (err) {
      // The client may end the iteration quietly or with its abort error: either is a client gone away; nothing else is.
      expect(err).toBeInstanceOf(OpenAI.APIUserAbortError);
    }
    expect(chunks).toBeLessThan(10);
    await expect.poll(() => metric('webswarm_sessions_active'), { timeout: 10_000 }).toBe(0);
    expect(await metric('webswarm_generations_total{outcome="ERR_CANCELLED"}')).toBe(1);
  });
});

describe('the openai package in a page of another origin', () => {
  it('gets through the CORS preflight and completes a chat like the reference runner, streamed and not, and through the Responses API; an unknown model is its NotFoundError', async () => {
    const browser = e.swarm.pages[0]?.context().browser();
    if (browser === null || browser === undefined) throw new Error('the local swarm has no browser');
    const errors: string[] = [];
    const host = await openHostPage(browser, errors);
    try {
      const tokens = 12;
      const r = await host.page.evaluate((a) => (window as unknown as ClientWindow).runClient(a), {
        baseURL: `${e.server.address().url}/v1`,
        model: MODEL,
        messages: BROWSER_MESSAGES,
        maxTokens: tokens,
      });
      const expected = await e.expected(e.server.coordinator?.chatPrompt(BROWSER_MESSAGES) as string, tokens);
      expect(r.tokens).toEqual(expected);
      expect(r.content).toBe(decode(expected));
      expect(r.streamed).toBe(r.content);
      expect(r.logprobs).toBe(tokens);
      // The Responses API in the browser, streamed, through its preflight: the same tokens.
      expect(r.responses).toEqual({ text: decode(expected), tokens: expected, status: 'incomplete' });
      expect(r.retrieved).toBe(MODEL);
      expect(r.unknown).toEqual({ name: 'NotFoundError', status: 404, code: 'model_not_found' });
      expect(errors).toEqual([]);
    } finally {
      await host.close();
    }
  });
});
