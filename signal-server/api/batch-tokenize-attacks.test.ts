// Red-team tests of a batch of prompts in one POST /v1/completions and of POST /tokenize's chat form, from outside:
// a real server on port 0 whose two volunteers run the real replica in Node (testing/api-swarm.ts, one stage, r = 2),
// API_MAX_CONCURRENT = 2, raw HTTP clients (fetch, node:http). After each attack nothing may run on the swarm and the
// client must hold none of its slots (n = MAX fits again).
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReferenceRunner } from '../reference/reference-runner.js';
import type { SignalServer } from '../server.js';
import {
  API_MODEL,
  type ApiSwarm,
  expectAllSlotsBack as expectAllSlotsBackOn,
  mostSessionsDuring,
  postRaw,
  type RawAnswer,
  startApiSwarm,
  streamEvents,
} from '../testing/api-swarm.js';
import { MAX_CHAT_MESSAGES, MAX_PROMPT_IDS, MAX_PROMPTS } from './openai-params.js';

const MODEL = API_MODEL;
const MAX = 2;
const TEST_MS = 60_000;

let rig: ApiSwarm | undefined;
let server: SignalServer;
let reference: ReferenceRunner;
let url: string;

beforeAll(async () => {
  rig = await startApiSwarm('webswarm-batch-attacks-', { redundancy: 2, apiMaxConcurrent: MAX });
  ({ server, reference } = rig);
  url = server.address().url;
}, 60_000);

afterAll(() => rig?.close());

const post = (path: string, body: unknown, signal?: AbortSignal): Promise<RawAnswer> => postRaw(`${url}${path}`, body, signal);
const complete = (body: unknown, signal?: AbortSignal) => post('/v1/completions', body, signal);

/**
 * A raw POST /v1/completions that goes away: `half` sends the headers and half the body and is destroyed 100 ms
 * later; else the whole body, destroyed once it is written. Resolves when it is gone.
 */
function abandon(body: string, half: boolean): Promise<void> {
  const { port } = new URL(url);
  return new Promise<void>((resolve) => {
    const req = request({
      host: '127.0.0.1',
      port: Number(port),
      path: '/v1/completions',
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': String(body.length) },
    });
    const gone = () => {
      req.destroy();
      resolve();
    };
    req.on('error', () => resolve());
    if (half) {
      req.write(body.slice(0, body.length >> 1));
      setTimeout(gone, 100);
    } else req.end(body, gone);
  });
}
const encode = (text: string) => reference.tokenizer.encode(text);

const expectAllSlotsBack = () => expectAllSlotsBackOn(server, MAX);

describe('a batch of prompts, attacked', () => {
  it(
    'odd shapes are a 400 naming prompt, nothing run, every slot back',
    async () => {
      const e = encode('e')[0] as number;
      const bad: [string, unknown, RegExp][] = [
        ['33 prompts', Array.from({ length: MAX_PROMPTS + 1 }, () => 'a'), /holds 33 prompts; at most 32/],
        ['mixed', ['Emma', [e]], /mixes strings and lists of token ids/],
        ['an empty string', ['Emma', ''], /prompt\[1\] has 0 characters/],
        ['an empty id list', [[e], []], /prompt/],
        ['nested lists', [[[e]]], /prompt/],
        ['a float id', [[e], [1.5]], /prompt/],
        ['a negative id', [[e], [-1]], /prompt/],
        ['null in the list', ['Emma', null], /prompt/],
        ['a number among strings', ['Emma', 7], /prompt/],
        ['an object', { 0: 'Emma' }, /prompt/],
        [`${MAX_PROMPT_IDS + 1} ids`, [new Array(4000).fill(e), new Array(MAX_PROMPT_IDS - 3999).fill(e)], /8001 token ids together/],
        [`${MAX_PROMPT_IDS + 1} characters`, ['a'.repeat(4000), 'b'.repeat(MAX_PROMPT_IDS - 3999)], /8001 characters together/],
      ];
      for (const [what, prompt, message] of bad) {
        const r = await complete({ model: MODEL, prompt, max_tokens: 1 });
        expect(r.status, `${what}: ${r.raw}`).toBe(400);
        expect(r.body.error, what).toMatchObject({ param: expect.stringMatching(/^prompt/) });
        expect(r.body.error.message, what).toMatch(message);
      }
      // A number past any id, written as JSON (1e400 parses to Infinity; 2^53 + 1 is no safe integer).
      for (const big of ['1e400', '9007199254740993', '-0.0e0', '1e-400']) {
        const r = await complete(`{"model":"${MODEL}","max_tokens":1,"prompt":[[${e}],[${big}]]}`);
        // -0 and 1e-400 (0) are the id 0: the model has it; the others are refused by name.
        if (big === '-0.0e0' || big === '1e-400') expect(r.status, `${big}: ${r.raw}`).toBe(200);
        else {
          expect(r.status, `${big}: ${r.raw}`).toBe(400);
          expect(r.body.error.param).toMatch(/^prompt/);
        }
      }
      expect(server.coordinator?.activeSessions).toBe(0);
      await expectAllSlotsBack();
    },
    TEST_MS,
  );

  it(
    'duplicate keys: the last one counts, as JSON.parse reads it (a 33-prompt list hidden before a good one runs nothing twice)',
    async () => {
      const many = JSON.stringify(Array.from({ length: 33 }, () => 'a'));
      const r = await complete(`{"model":"${MODEL}","max_tokens":1,"temperature":0,"prompt":${many},"prompt":["Emma","Jane"]}`);
      expect(r.status, r.raw).toBe(200);
      expect(r.body.choices).toHaveLength(2);
      const back = await complete(`{"model":"${MODEL}","max_tokens":1,"prompt":["Emma","Jane"],"prompt":${many}}`);
      expect(back.status, back.raw).toBe(400);
      await expectAllSlotsBack();
    },
    TEST_MS,
  );

  it(
    `${MAX_PROMPTS} tiny prompts, streamed with echo + logprobs + include_usage (max_tokens 0): each index echoes its own prompt, usage sums once`,
    async () => {
      const prompts = Array.from({ length: MAX_PROMPTS }, (_, i) => `Mr ${i}`);
      const body = { model: MODEL, prompt: prompts, max_tokens: 0, echo: true, logprobs: 0, temperature: 0 };
      const whole = await complete(body);
      expect(whole.status, whole.raw).toBe(200);
      expect(whole.body.choices.map((c: { index: number }) => c.index)).toEqual(prompts.map((_, i) => i));
      for (const [i, text] of prompts.entries()) {
        const c = whole.body.choices[i];
        expect(c.text, `prompt ${i}`).toBe(text);
        expect(c.logprobs.tokens.join(''), `prompt ${i}`).toBe(text);
        expect(c.logprobs.token_logprobs).toHaveLength(encode(text).length);
        expect(whole.body.webswarm.choices[i]).toMatchObject({ index: i, prompt: i, prompt_tokens: encode(text), tokens: [] });
      }
      const promptTokens = prompts.reduce((a, t) => a + encode(t).length, 0);
      expect(whole.body.usage).toEqual({ prompt_tokens: promptTokens, completion_tokens: 0, total_tokens: promptTokens });

      const r = await complete({ ...body, stream: true, stream_options: { include_usage: true } });
      expect(r.status, r.raw).toBe(200);
      const all = streamEvents(r.raw);
      expect(all.at(-1)).toBe('[DONE]');
      // biome-ignore lint/suspicious/noExplicitAny: chunks checked field by field
      const chunks = all.slice(0, -1) as any[];
      expect(chunks.filter((c) => c.usage !== null)).toHaveLength(1);
      expect(chunks.at(-1).usage).toEqual(whole.body.usage);
      const texts = new Map<number, string>();
      const lps = new Map<number, number[]>();
      for (const c of chunks.slice(0, -1)) {
        expect(c.choices).toHaveLength(1);
        const { index, text, logprobs } = c.choices[0];
        texts.set(index, (texts.get(index) ?? '') + text);
        if (logprobs !== null) lps.set(index, [...(lps.get(index) ?? []), ...logprobs.token_logprobs]);
      }
      for (const c of whole.body.choices) {
        expect(texts.get(c.index), `index ${c.index}`).toBe(c.text);
        expect(lps.get(c.index), `index ${c.index}`).toEqual(c.logprobs.token_logprobs);
      }
      await expectAllSlotsBack();
    },
    TEST_MS,
  );

  it(
    'lone surrogates in a batch’s text prompts: echoed as U+FFFD, the text of the ids run (whole and streamed), each at its own index',
    async () => {
      // Written as JSON escapes, as a client's JSON may carry them.
      const prompts = ['a\uD800b', '\uDC00x', 'Emma \uD83D\uD83D\uDE00'];
      const want = ['a\uFFFDb', '\uFFFDx', 'Emma \uFFFD\uD83D\uDE00'];
      const body = { model: MODEL, prompt: prompts, max_tokens: 0, echo: true, logprobs: 0 };
      const whole = await complete(body);
      expect(whole.status, whole.raw).toBe(200);
      // The JSON itself holds no lone surrogate's escape (strict decoders refuse one).
      expect(whole.raw).not.toMatch(/\\ud[89ab][0-9a-f](?!\\ud[c-f])/i);
      for (const [i, text] of want.entries()) {
        const c = whole.body.choices[i];
        expect(c.index).toBe(i);
        expect(c.text, `prompt ${i}`).toBe(text);
        // The ids run are those of the text echoed.
        expect(whole.body.webswarm.choices[i].prompt_tokens, `prompt ${i}`).toEqual(encode(text));
        expect(c.logprobs.token_logprobs).toHaveLength(encode(text).length);
      }
      const r = await complete({ ...body, stream: true });
      expect(r.status, r.raw).toBe(200);
      const texts = new Map<number, string>();
      for (const ev of streamEvents(r.raw))
        if (typeof ev === 'object')
          for (const c of (ev as { choices: { index: number; text: string }[] }).choices)
            texts.set(c.index, (texts.get(c.index) ?? '') + c.text);
      expect([0, 1, 2].map((i) => texts.get(i))).toEqual(want);
      await expectAllSlotsBack();
    },
    TEST_MS,
  );

  it(
    'best_of = 2 (n = 1), echo + logprobs over 3 prompts: each prompt’s choice is exactly what it gets alone, at its index',
    async () => {
      const prompts = ['Emma', 'It is a truth', 'Mr. Knightley'];
      const params = { model: MODEL, max_tokens: 4, best_of: 2, echo: true, logprobs: 2, temperature: 1, seed: 17 };
      const batch = await complete({ ...params, prompt: prompts });
      expect(batch.status, batch.raw).toBe(200);
      expect(batch.body.choices).toHaveLength(3);
      let promptTokens = 0;
      let completionTokens = 0;
      for (const [p, prompt] of prompts.entries()) {
        const alone = await complete({ ...params, prompt });
        expect(alone.status, alone.raw).toBe(200);
        promptTokens += alone.body.usage.prompt_tokens;
        completionTokens += alone.body.usage.completion_tokens;
        const got = batch.body.choices[p];
        const want = alone.body.choices[0];
        expect(got.index).toBe(p);
        expect(got.text, `prompt ${p}`).toBe(want.text);
        expect(got.text.startsWith(prompt)).toBe(true);
        expect(got.logprobs.tokens).toEqual(want.logprobs.tokens);
        expect(got.logprobs.text_offset).toEqual(want.logprobs.text_offset);
        const close = (a: (number | null)[], b: (number | null)[]) =>
          a.every((x, j) => (x === null ? b[j] === null : Math.abs(x - (b[j] as number)) < 1e-5));
        expect(close(got.logprobs.token_logprobs, want.logprobs.token_logprobs), `prompt ${p}`).toBe(true);
        expect(batch.body.webswarm.choices[p]).toMatchObject({
          index: p,
          prompt: p,
          candidate: alone.body.webswarm.candidate,
          tokens: alone.body.webswarm.tokens,
        });
      }
      // Every candidate's tokens count, each prompt's once.
      expect(batch.body.usage).toEqual({
        prompt_tokens: promptTokens,
        completion_tokens: completionTokens,
        total_tokens: promptTokens + completionTokens,
      });
      await expectAllSlotsBack();
    },
    TEST_MS,
  );

  it(
    'the same prompt twice and its ids: the same draws at indexes of their own (no cache mixes them up)',
    async () => {
      const ids = encode('Emma');
      const r = await complete({ model: MODEL, prompt: ['Emma', 'Emma'], max_tokens: 5, n: 2, seed: 3, temperature: 1 });
      const byIds = await complete({ model: MODEL, prompt: [ids, ids], max_tokens: 5, n: 2, seed: 3, temperature: 1 });
      for (const a of [r, byIds]) {
        expect(a.status, a.raw).toBe(200);
        const t = a.body.webswarm.choices.map((c: { tokens: number[] }) => c.tokens);
        expect(t[0]).toEqual(t[2]);
        expect(t[1]).toEqual(t[3]);
        expect(a.body.webswarm.choices.map((c: { index: number; prompt: number }) => [c.index, c.prompt])).toEqual([
          [0, 0],
          [1, 0],
          [2, 1],
          [3, 1],
        ]);
      }
      expect(byIds.body.webswarm.choices.map((c: { tokens: number[] }) => c.tokens)).toEqual(
        r.body.webswarm.choices.map((c: { tokens: number[] }) => c.tokens),
      );
      await expectAllSlotsBack();
    },
    TEST_MS,
  );

  it(
    'a later prompt too long for the positions (n = 2, include_usage): a 400, or streamed an error event naming prompt, no [DONE], no usage; nothing left running, every slot back',
    async () => {
      const e = encode('e')[0] as number;
      for (const stream of [true, false]) {
        const r = await complete({
          model: MODEL,
          prompt: [[e, e], [e], [e, e, e], new Array(500).fill(e)],
          max_tokens: 20,
          n: 2,
          stream,
          ...(stream ? { stream_options: { include_usage: true } } : {}),
        });
        // n = 2 at MAX = 2 is one lane: prompts 0..2 run first, so a stream has begun when prompt 3 is refused (until
        // such a prompt is refused before any runs: then a 400 as not streamed).
        expect([200, 400], r.raw).toContain(r.status);
        if (r.status === 200) {
          expect(stream).toBe(true);
          const all = streamEvents(r.raw);
          expect(all).not.toContain('[DONE]');
          // biome-ignore lint/suspicious/noExplicitAny: the last event checked field by field
          const last = all.at(-1) as any;
          // The field at fault named as a whole answer names it.
          expect(last.error).toMatchObject({ code: 'context_length_exceeded', type: 'invalid_request_error', param: 'prompt' });
          expect(last.error.message).toMatch(/^prompt\[3\]: /);
          expect(all.filter((c) => (c as { usage?: unknown }).usage !== undefined && (c as { usage: unknown }).usage !== null)).toEqual([]);
        } else {
          expect(r.body.error).toMatchObject({ code: 'context_length_exceeded', param: 'prompt' });
          expect(r.body.error.message).toMatch(/^prompt\[3\]: /);
        }
        await expectAllSlotsBack();
      }
    },
    TEST_MS,
  );

  it(
    'a client that sends its headers and half its batch body, then goes: its slot is back, nothing runs',
    async () => {
      const body = JSON.stringify({ model: MODEL, prompt: ['Emma', 'Jane', 'Harriet'], max_tokens: 50, n: 2 });
      for (let round = 0; round < 3; round++) await abandon(body, true);
      // The server hears of the last one going a moment after it went.
      await expect
        .poll(async () => (await complete({ model: MODEL, prompt: 'Emma', max_tokens: 1, n: MAX })).status, { timeout: 2_000 })
        .toBe(200);
      await expectAllSlotsBack();
    },
    TEST_MS,
  );

  it(
    'clients that send a whole batch body and go at once (20 of them): no generation runs for nobody, every slot back',
    async () => {
      const body = JSON.stringify({ model: MODEL, prompt: ['Emma', 'Jane', 'Harriet'], max_tokens: 200, temperature: 0 });
      await Promise.all(Array.from({ length: 20 }, () => abandon(body, false)));
      let most = 0;
      const until = Date.now() + 1_500;
      while (Date.now() < until) {
        most = Math.max(most, server.coordinator?.activeSessions ?? 0);
        await new Promise((r) => setTimeout(r, 5));
      }
      // A batch left running would take seconds (3 × 200 tokens); the limit holds whatever ran.
      expect(most).toBeLessThanOrEqual(MAX);
      await expect.poll(() => server.coordinator?.activeSessions ?? -1, { timeout: 2_000 }).toBe(0);
      await expect
        .poll(async () => (await complete({ model: MODEL, prompt: 'Emma', max_tokens: 1, n: MAX })).status, { timeout: 2_000 })
        .toBe(200);
    },
    TEST_MS,
  );

  it(
    'a client that goes between prompts (after the first prompt’s last chunk): the rest never runs, every slot back',
    async () => {
      const prompts = ['Emma', 'Jane', 'Harriet', 'Miss Bates'];
      const ac = new AbortController();
      const res = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        // n = 2 at MAX = 2: one lane, one prompt at a time.
        body: JSON.stringify({ model: MODEL, prompt: prompts, max_tokens: 4, n: 2, stream: true, temperature: 0 }),
        signal: ac.signal,
      });
      expect(res.status).toBe(200);
      const reader = (res.body as ReadableStream<Uint8Array>).getReader();
      const decoder = new TextDecoder();
      let seen = '';
      const finished = new Set<number>();
      while (finished.size < 2) {
        const { value, done } = await reader.read();
        if (done) break;
        seen += decoder.decode(value, { stream: true });
        for (const ev of streamEvents(seen.slice(0, seen.lastIndexOf('\n\n') + 2)))
          if (typeof ev === 'object')
            for (const c of (ev as { choices: { index: number; finish_reason: unknown }[] }).choices)
              if (c.finish_reason !== null) finished.add(c.index);
      }
      expect([...finished].sort()).toEqual([0, 1]);
      ac.abort();
      await reader.cancel().catch(() => {});
      await expect.poll(() => server.coordinator?.activeSessions ?? -1, { timeout: 2_000 }).toBe(0);
      await expectAllSlotsBack();
    },
    TEST_MS,
  );

  it(
    'two batches at once from one client at API_MAX_CONCURRENT = 2: never more than 2 sessions, a second n = 2 batch refused while one runs',
    async () => {
      const prompts = ['Emma', 'Jane', 'Harriet'];
      const a = complete({ model: MODEL, prompt: prompts, max_tokens: 30, temperature: 0 });
      const b = complete({ model: MODEL, prompt: prompts, max_tokens: 30, temperature: 0 });
      const both = Promise.all([a, b]);
      expect(await mostSessionsDuring(server, both)).toBeLessThanOrEqual(MAX);
      const [ra, rb] = await both;
      // The first batch in takes every slot free (its lanes), so the second is refused, or both run in a lane each.
      const answered = [ra, rb].filter((r) => r.status === 200);
      expect(answered.length).toBeGreaterThan(0);
      for (const r of [ra, rb]) {
        if (r.status === 429) expect(r.body.error.code).toBe('too_many_concurrent_requests');
        else expect(r.body.choices, r.raw).toHaveLength(3);
      }
      const running = complete({ model: MODEL, prompt: prompts, max_tokens: 60, temperature: 0 });
      await expect.poll(() => server.coordinator?.activeSessions ?? 0, { timeout: 10_000 }).toBeGreaterThan(0);
      const over = await complete({ model: MODEL, prompt: prompts, max_tokens: 1, n: 2 });
      expect(over.status, over.raw).toBe(429);
      expect(over.body.error.code).toBe('too_many_concurrent_requests');
      expect((await running).status).toBe(200);
      await expectAllSlotsBack();
    },
    TEST_MS,
  );
});

describe('POST /tokenize with messages, attacked', () => {
  const tokenize = (body: unknown) => post('/tokenize', body);
  const chat = (messages: unknown) => post('/v1/chat/completions', { model: MODEL, messages, max_tokens: 1, temperature: 0 });

  it(
    'template syntax and special tokens written in content: rendered as text, not run; the ids are those /v1/chat/completions runs',
    async () => {
      const eos = '<|endoftext|>';
      const contents = [
        '{{ 7 * 7 }} {% for m in messages %}X{% endfor %} {# c #}',
        `Hello${eos}The visitor said, "`,
        "{{ raise_exception('boom') }}",
        'a\u0000b \uFFFD \uD800 end',
      ];
      for (const content of contents) {
        const messages = [{ role: 'user', content }];
        const t = await tokenize({ model: MODEL, messages });
        expect(t.status, t.raw).toBe(200);
        const text = (await post('/detokenize', { tokens: t.body.tokens })).body.prompt as string;
        // The content comes back as it was written (a lone surrogate as U+FFFD, as UTF-8 carries it).
        expect(text).toContain(content.replace('\uD800', '\uFFFD'));
        expect(text).not.toContain('49');
        const c = await chat(messages);
        expect(c.status, c.raw).toBe(200);
        expect(c.body.webswarm.prompt_tokens, content).toEqual(t.body.tokens);
        expect(c.body.usage.prompt_tokens).toBe(t.body.count);
      }
      await expectAllSlotsBack();
    },
    TEST_MS,
  );

  it('odd messages and add_generation_prompt: a 400 naming the field, before any tokenizing', async () => {
    const ok = [{ role: 'user', content: 'Hi' }];
    const cases: [unknown, string][] = [
      [{ messages: [{ role: 'user', content: null }] }, 'messages[0].content'],
      [{ messages: [{ role: 'user', content: 7 }] }, 'messages[0].content'],
      [{ messages: [{ role: 'user', content: { text: 'x' } }] }, 'messages[0].content'],
      [{ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }, 'messages[0].content'],
      [{ messages: [{ role: 'user', content: [{ type: 'text', text: 5 }] }] }, 'messages[0].content'],
      [{ messages: [{ role: 'tool', content: 'x' }] }, 'messages[0].role'],
      [{ messages: [{ role: '{{ 1 }}', content: 'x' }] }, 'messages[0].role'],
      [{ messages: ['Hi'] }, 'messages[0]'],
      [{ messages: [] }, 'messages'],
      [{ messages: 'Hi' }, 'messages'],
      [{ messages: Array.from({ length: MAX_CHAT_MESSAGES + 1 }, () => ({ role: 'user', content: 'a' })) }, 'messages'],
      [{ messages: [{ role: 'user', content: 'a'.repeat(MAX_PROMPT_IDS + 1) }] }, 'messages'],
      [{ messages: ok, prompt: 'Hi' }, 'messages'],
      [{ messages: ok, add_generation_prompt: 'true' }, 'add_generation_prompt'],
      [{ messages: ok, add_generation_prompt: 1 }, 'add_generation_prompt'],
      [{ messages: ok, add_generation_prompt: [true] }, 'add_generation_prompt'],
      [{ messages: ok, continue_final_message: true }, 'continue_final_message'],
      [{ messages: ok, chat_template: '{{ 1 }}' }, 'chat_template'],
      [{ messages: ok, chat_template_kwargs: { x: 1 } }, 'chat_template_kwargs'],
      [{ prompt: ['Hi', 'there'] }, 'prompt'],
      [{ prompt: 7 }, 'prompt'],
    ];
    for (const [body, param] of cases) {
      const r = await tokenize(body);
      expect(r.status, `${JSON.stringify(body).slice(0, 80)}: ${r.raw}`).toBe(400);
      expect(r.body.error.param, JSON.stringify(body).slice(0, 80)).toBe(param);
    }
    // 10 000 messages are past the body's limit before they are read.
    const many = await tokenize({ messages: Array.from({ length: 10_000 }, () => ({ role: 'user', content: 'a' })) });
    expect(many.status, many.raw).toBe(413);
    // /detokenize: no ids, ids that are not ids.
    for (const raw of ['{"tokens":[]}', '{"tokens":[1e400]}', '{"tokens":[-1]}', '{"tokens":[[1]]}', '{"tokens":"1"}']) {
      const r = await post('/detokenize', raw);
      expect(r.status, raw).toBe(400);
      expect(r.body.error.param, raw).toBe('tokens');
    }
    const past = await post('/detokenize', { tokens: [reference.manifest.model.vocabSize] });
    expect(past.status, past.raw).toBe(400);
    expect(past.body.error.param).toBe('tokens');
  });

  it('the most messages of the most characters render and tokenize, and agree with the chat route', async () => {
    const messages = Array.from({ length: 64 }, (_, i) => ({ role: i % 2 === 0 ? 'user' : 'assistant', content: 'x'.repeat(125) }));
    const t = await tokenize({ messages, add_generation_prompt: false });
    expect(t.status, t.raw).toBe(200);
    expect(t.body.count).toBe(t.body.tokens.length);
    const g = await tokenize({ messages });
    expect(g.status).toBe(200);
    // The generation prompt adds to the end only.
    expect(g.body.tokens.slice(0, t.body.tokens.length - 2)).toEqual(t.body.tokens.slice(0, -2));
    expect(g.body.count).toBeGreaterThan(t.body.count);
  });
});
