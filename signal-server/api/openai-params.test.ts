import { describe, expect, it } from 'vitest';
import { MAX_GENERATE_TOKENS, MAX_PROMPT_CHARS } from '../../shared/protocol/validate.js';
import { type BodyError, MAX_CHAT_MESSAGES, MAX_PROMPT_IDS, MAX_PROMPTS, parseChatBody, parseCompletionBody } from './openai-params.js';
import { parseResponsesBody } from './responses-params.js';

const MODELS = ['austen-2m'];
const CHAT = { model: 'austen-2m', messages: [{ role: 'user', content: 'Good morning.' }] };
const COMPLETION = { model: 'austen-2m', prompt: 'Emma' };

const chat = (extra: Record<string, unknown>) => parseChatBody({ ...CHAT, ...extra }, MODELS);
const completion = (extra: Record<string, unknown>) => parseCompletionBody({ ...COMPLETION, ...extra }, MODELS);
const refusal = (r: ReturnType<typeof chat> | ReturnType<typeof completion>) =>
  'status' in r ? [r.status, r.code, r.param] : ['accepted', r.logprobs];

describe('parameters the swarm does not support are refused by name (400)', () => {
  // [field, a value that is refused, the error code, a value that changes nothing and is accepted]
  const both: [string, unknown, BodyError['code'], unknown][] = [
    ['frequency_penalty', 3, 'invalid_request', null],
    ['presence_penalty', '0', 'invalid_request', null],
    ['logit_bias', [1, 2], 'invalid_request', null],
    ['n', 9, 'invalid_request', 1],
    ['n', 0, 'invalid_request', null],
  ];
  const chatOnly: [string, unknown, BodyError['code'], unknown][] = [
    ['tools', [{ type: 'function', function: { name: 'f' } }], 'unsupported_parameter', null],
    ['tools', [], 'unsupported_parameter', null],
    ['tool_choice', 'auto', 'unsupported_value', 'none'],
    ['tool_choice', { type: 'function', function: { name: 'f' } }, 'unsupported_value', 'none'],
    ['functions', [{ name: 'f' }], 'unsupported_parameter', null],
    ['function_call', 'auto', 'unsupported_value', 'none'],
    ['parallel_tool_calls', true, 'unsupported_value', false],
    ['response_format', { type: 'json_object' }, 'unsupported_value', { type: 'text' }],
    ['response_format', { type: 'json_schema', json_schema: { name: 'x', schema: {} } }, 'unsupported_value', { type: 'text' }],
    ['modalities', ['text', 'audio'], 'unsupported_value', ['text']],
    ['audio', { voice: 'alloy', format: 'mp3' }, 'unsupported_parameter', null],
    ['prediction', { type: 'content', content: 'x' }, 'unsupported_parameter', null],
    ['reasoning_effort', 'high', 'unsupported_parameter', null],
    ['web_search_options', {}, 'unsupported_parameter', null],
    // Accepted and changing nothing before (a red-team find).
    ['verbosity', 'high', 'unsupported_parameter', null],
  ];
  const completionOnly: [string, unknown, BodyError['code'], unknown][] = [['suffix', ' the end', 'unsupported_parameter', '']];

  for (const [param, value, code, harmless] of both) {
    it(`${param}: ${JSON.stringify(value)} (chat and completions)`, () => {
      expect(refusal(chat({ [param]: value }))).toEqual([400, code, param]);
      expect(refusal(completion({ [param]: value }))).toEqual([400, code, param]);
      expect(refusal(chat({ [param]: harmless }))).toEqual(['accepted', null]);
      expect(refusal(completion({ [param]: harmless }))).toEqual(['accepted', null]);
    });
  }
  for (const [param, value, code, harmless] of chatOnly) {
    it(`${param}: ${JSON.stringify(value)} (chat)`, () => {
      expect(refusal(chat({ [param]: value }))).toEqual([400, code, param]);
      expect(refusal(chat({ [param]: harmless }))).toEqual(['accepted', null]);
    });
  }
  for (const [param, value, code, harmless] of completionOnly) {
    it(`${param}: ${JSON.stringify(value)} (completions)`, () => {
      expect(refusal(completion({ [param]: value }))).toEqual([400, code, param]);
      expect(refusal(completion({ [param]: harmless }))).toEqual(['accepted', null]);
    });
  }

  it('says why in the message', () => {
    const r = chat({ tools: [{ type: 'function', function: { name: 'f' } }] });
    expect('status' in r && r.message).toBe('tools is not supported: the swarm does not call tools');
  });

  it('accepts fields that change nothing in the answer (user, metadata, store)', () => {
    expect(refusal(chat({ user: 'u1', metadata: { a: 'b' }, store: false }))).toEqual(['accepted', null]);
    expect(refusal(chat({ service_tier: 'auto', prompt_cache_key: 'k', safety_identifier: 's', stream_options: null }))).toEqual([
      'accepted',
      null,
    ]);
    expect(refusal(completion({ user: 'u1', top_k: 5, max_completion_tokens: 3 }))).toEqual(['accepted', null]);
  });

  it('refuses a field of stream_options OpenAI does not have, as /v1/responses does (before, a misspelt include_usage left the stream without its usage)', () => {
    for (const parse of [chat, completion]) {
      expect(parse({ stream: true, stream_options: { include_usge: true } })).toEqual({
        status: 400,
        code: 'unknown_parameter',
        param: 'stream_options.include_usge',
        message:
          'Unrecognized request argument supplied: stream_options.include_usge (stream_options takes include_usage, include_obfuscation)',
      });
      expect(refusal(parse({ stream: true, stream_options: { include_obfuscation: 'yes' } }))).toEqual([
        400,
        'invalid_request',
        'stream_options.include_obfuscation',
      ]);
      const taken = parse({ stream: true, stream_options: { include_usage: true, include_obfuscation: false } });
      expect('status' in taken ? taken : taken.streamUsage).toBe(true);
    }
  });

  it('refuses a field OpenAI does not have, as OpenAI does: a typo or another server’s extension is never ignored', () => {
    // Before, each was ignored: max_token gave 16 tokens, repetition_penalty and min_tokens the same greedy text.
    expect(completion({ max_token: 100 })).toEqual({
      status: 400,
      code: 'unknown_parameter',
      param: 'max_token',
      message: 'Unrecognized request argument supplied: "max_token" (did you mean max_tokens?)',
    });
    for (const field of ['repetition_penalty', 'min_tokens', 'guided_json', 'min_p', 'prompt'])
      expect(chat({ [field]: 5 }), field).toMatchObject({ status: 400, code: 'unknown_parameter', param: field });
    for (const field of ['messages', 'top_logprobs'])
      expect(completion({ [field]: 5 }), field).toMatchObject({ status: 400, code: 'unknown_parameter', param: field });
    // A long or odd name is cut, never echoed whole.
    const long = completion({ ['x'.repeat(5_000)]: 1 });
    expect('status' in long && long.message.length).toBeLessThan(200);
    expect(chat({ tempreature: 0 })).toMatchObject({ message: expect.stringMatching(/did you mean temperature\?\)$/) });
  });

  it('refuses a conversation that holds tool calls, naming the message (the swarm calls no tools)', () => {
    const turns = (extra: Record<string, unknown>[]) => chat({ messages: [{ role: 'user', content: 'Hi' }, ...extra] });
    expect(turns([{ role: 'tool', content: '42', tool_call_id: 'a' }])).toEqual({
      status: 400,
      code: 'unsupported_value',
      param: 'messages[1].role',
      message: 'messages[1] is a tool message: the swarm does not call tools',
    });
    const call = { id: 'a', type: 'function', function: { name: 'f', arguments: '{}' } };
    expect(turns([{ role: 'assistant', content: null, tool_calls: [call] }])).toMatchObject({
      status: 400,
      code: 'unsupported_value',
      param: 'messages[1].tool_calls',
    });
    // No call at all: the plain assistant message it is.
    expect(turns([{ role: 'assistant', content: 'Hello', tool_calls: [] }])).toMatchObject({ kind: 'chat' });
  });

  it('takes an assistant turn without content (as OpenAI gives one back) as an empty turn; a user turn without it is refused', () => {
    const turns = (extra: Record<string, unknown>[]) => chat({ messages: [{ role: 'user', content: 'Hi' }, ...extra] });
    for (const m of [{ role: 'assistant', content: null }, { role: 'assistant' }, { role: 'assistant', content: null, refusal: null }])
      expect(turns([m, { role: 'user', content: 'And?' }])).toMatchObject({
        kind: 'chat',
        messages: [
          { role: 'user', content: 'Hi' },
          { role: 'assistant', content: '' },
          { role: 'user', content: 'And?' },
        ],
      });
    expect(turns([{ role: 'user', content: null }])).toMatchObject({ status: 400, param: 'messages[1].content' });
  });

  it("reads an assistant's refusal (OpenAI's answers give it beside content null) as what it said; refuses audio, and a refusal elsewhere (a red-team find: dropped without a word)", () => {
    const turns = (m: Record<string, unknown>) =>
      chat({ messages: [{ role: 'user', content: 'Hi' }, m, { role: 'user', content: 'And?' }] });
    expect(turns({ role: 'assistant', content: null, refusal: 'I will not say.' })).toMatchObject({
      messages: [{}, { role: 'assistant', content: 'I will not say.' }, {}],
    });
    // As the part form reads it: content, then refusal.
    expect(turns({ role: 'assistant', content: 'Well. ', refusal: 'No.' })).toMatchObject({
      messages: [{}, { role: 'assistant', content: 'Well. No.' }, {}],
    });
    expect(turns({ role: 'assistant', content: null, audio: { id: 'audio_1' } })).toMatchObject({
      status: 400,
      code: 'unsupported_value',
      param: 'messages[1].audio',
    });
    expect(turns({ role: 'assistant', content: '', audio: null })).toMatchObject({ kind: 'chat' });
    expect(turns({ role: 'user', content: 'x', refusal: 'No.' })).toMatchObject({ status: 400, param: 'messages[1].refusal' });
    expect(turns({ role: 'assistant', content: null, refusal: 7 })).toMatchObject({ status: 400, param: 'messages[1].refusal' });
  });

  it('refuses a stop sequence holding a lone UTF-16 surrogate, which no generated text can contain (before: accepted, never matched)', () => {
    expect(completion({ stop: '\ud800' })).toMatchObject({
      status: 400,
      param: 'stop',
      message: expect.stringMatching(/^stop holds a lone/),
    });
    expect(chat({ stop: ['ok', 'a\udc00'] })).toMatchObject({
      status: 400,
      param: 'stop',
      message: expect.stringMatching(/^stop\[1\] holds/),
    });
    expect(completion({ stop: ['😀', 'é'] })).toMatchObject({ kind: 'completion', stop: ['😀', 'é'] });
  });

  it("carries a message's name to the chat template; refuses a property no message has, and an empty list of parts (red-team finds)", () => {
    const one = (m: Record<string, unknown>) => chat({ messages: [m] });
    expect(one({ role: 'user', content: 'Hi', name: 'Harriet' })).toMatchObject({
      messages: [{ role: 'user', content: 'Hi', name: 'Harriet' }],
    });
    // Before, a typo was taken and changed nothing: refused as OpenAI refuses it.
    expect(one({ role: 'user', content: 'Hi', nmae: 'Harriet' })).toMatchObject({
      status: 400,
      code: 'unknown_parameter',
      param: 'messages[0].nmae',
    });
    for (const name of ['', 7, 'n'.repeat(65)])
      expect(one({ role: 'user', content: 'Hi', name })).toMatchObject({ status: 400, param: 'messages[0].name' });
    expect(one({ role: 'user', content: [] })).toMatchObject({ status: 400, param: 'messages[0].content' });
    // What OpenAI's own answers carry when a client replays them.
    expect(one({ role: 'assistant', content: 'Hello', refusal: null, tool_calls: [], audio: null })).toMatchObject({ kind: 'chat' });
    // An assistant's refusal parts (OpenAI's format has them), read as what it said; no other role's.
    const refusal = [
      { type: 'text', text: 'Well. ' },
      { type: 'refusal', refusal: 'I cannot say.' },
    ];
    expect(one({ role: 'assistant', content: refusal })).toMatchObject({
      messages: [{ role: 'assistant', content: 'Well. I cannot say.' }],
    });
    expect(one({ role: 'user', content: refusal })).toMatchObject({ status: 400, param: 'messages[0].content' });
    expect(one({ role: 'assistant', content: [{ type: 'refusal', refusal: 5 }] })).toMatchObject({
      status: 400,
      param: 'messages[0].content',
    });
  });

  it('refuses max_tokens and max_completion_tokens that say different things (before, max_tokens was silently ignored); a body that is no object names no field', () => {
    expect(chat({ max_tokens: 5, max_completion_tokens: 9 })).toMatchObject({ status: 400, param: 'max_tokens' });
    expect(chat({ max_tokens: 5, max_completion_tokens: 5 })).toMatchObject({ kind: 'chat', maxTokens: 5 });
    expect(parseChatBody([], ['austen-2m'])).toMatchObject({ status: 400, param: null });
    expect(parseCompletionBody(null, ['austen-2m'])).toMatchObject({ status: 400, param: null });
  });

  it('takes a long conversation: up to MAX_CHAT_MESSAGES turns, MAX_PROMPT_CHARS in all', () => {
    const turn = (i: number) => ({ role: i % 2 === 0 ? 'user' : 'assistant', content: 'a' });
    expect(MAX_CHAT_MESSAGES).toBeGreaterThanOrEqual(512);
    expect(chat({ messages: Array.from({ length: MAX_CHAT_MESSAGES }, (_, i) => turn(i)) })).toMatchObject({ kind: 'chat' });
    expect(chat({ messages: Array.from({ length: MAX_CHAT_MESSAGES + 1 }, (_, i) => turn(i)) })).toMatchObject({
      status: 400,
      param: 'messages',
    });
  });
});

describe('seed and top_p over OpenAI’s whole ranges', () => {
  it('takes any int64 seed (Date.now(), -1), the sampler its 32 low bits', () => {
    expect(chat({ seed: 1_700_000_000_000 })).toMatchObject({ seed: 1_700_000_000_000 % 2 ** 32 });
    expect(chat({ seed: -1 })).toMatchObject({ seed: 2 ** 32 - 1 });
    expect(chat({ seed: 2 ** 32 + 7 })).toMatchObject({ seed: 7 });
    expect(completion({ seed: 123 })).toMatchObject({ seed: 123 });
    for (const seed of [1.5, '1', 2 ** 64, Number.NaN])
      expect(completion({ seed }), String(seed)).toMatchObject({ status: 400, param: 'seed' });
    // int64's largest, 9223372036854775807, parses as the double 2^63: a client's int64 is taken, and the message says so.
    expect(JSON.parse('{"seed": 9223372036854775807}').seed).toBe(2 ** 63);
    expect(chat({ seed: 2 ** 63 })).toMatchObject({ seed: 0 });
    expect(chat({ seed: -(2 ** 63) })).toMatchObject({ seed: 0 });
    expect(completion({ seed: 2 ** 64 })).toMatchObject({ message: expect.stringContaining('64-bit integer') });
  });

  it('takes top_p 0 as the smallest nucleus: the most likely token alone (top_k 1)', () => {
    expect(chat({ top_p: 0, temperature: 0.8 })).toMatchObject({ topP: 1, topK: 1, temperature: 0.8 });
    expect(completion({ top_p: 0, top_k: 40 })).toMatchObject({ topP: 1, topK: 1 });
    expect(completion({ top_p: 0.5, top_k: 40 })).toMatchObject({ topP: 0.5, topK: 40 });
    for (const top_p of [-0.1, 1.01, '0'])
      expect(completion({ top_p }), String(top_p)).toMatchObject({
        status: 400,
        param: 'top_p',
        message: 'top_p must be a number in [0, 1]',
      });
  });
});

describe('penalties and logit_bias (the sampler applies them, the reference runner too)', () => {
  const sampling = (r: ReturnType<typeof chat>) =>
    'status' in r ? [r.status, r.code, r.param] : [r.frequencyPenalty, r.presencePenalty, r.logitBias];

  it('are taken as OpenAI defines them', () => {
    expect(sampling(chat({}))).toEqual([0, 0, []]);
    expect(sampling(chat({ frequency_penalty: null, presence_penalty: null, logit_bias: null }))).toEqual([0, 0, []]);
    expect(sampling(chat({ frequency_penalty: 0.5, presence_penalty: -2, logit_bias: { 50: -100, 7: 2.5 } }))).toEqual([
      0.5,
      -2,
      [
        [7, 2.5],
        [50, -100],
      ],
    ]);
    expect(sampling(completion({ frequency_penalty: 2, logit_bias: { 0: 100 } }) as ReturnType<typeof chat>)).toEqual([2, 0, [[0, 100]]]);
  });

  it('refuses what is out of range or not a token id, naming the field', () => {
    const refused: [Record<string, unknown>, string, RegExp][] = [
      [{ frequency_penalty: 2.01 }, 'frequency_penalty', /\[-2, 2\]/],
      [{ presence_penalty: Number.NaN }, 'presence_penalty', /\[-2, 2\]/],
      [{ logit_bias: { 5: 101 } }, 'logit_bias', /bias of token 5 must be a number in \[-100, 100\]/],
      [{ logit_bias: { 5: '1' } }, 'logit_bias', /bias of token 5/],
      [{ logit_bias: { '-1': 1 } }, 'logit_bias', /"-1" is not a token id/],
      [{ logit_bias: { '01': 1 } }, 'logit_bias', /"01" is not a token id/],
      [{ logit_bias: { abc: 1 } }, 'logit_bias', /"abc" is not a token id/],
      [{ logit_bias: { 1e12: 1 } }, 'logit_bias', /not a token id/],
      [{ logit_bias: Object.fromEntries(Array.from({ length: 1025 }, (_, i) => [i, 1])) }, 'logit_bias', /at most 1024/],
    ];
    for (const [extra, param, message] of refused) {
      const r = chat(extra);
      expect('status' in r && [r.status, r.code, r.param]).toEqual([400, 'invalid_request', param]);
      expect('status' in r && r.message).toMatch(message);
    }
  });
});

describe('top_k (an extension, as vLLM and llama.cpp take it)', () => {
  const topK = (r: ReturnType<typeof chat> | ReturnType<typeof completion>) => ('status' in r ? [r.status, r.param, r.message] : r.topK);
  it('is no limit when absent, null, 0 or -1; an integer k otherwise, on both endpoints', () => {
    for (const none of [{}, { top_k: null }, { top_k: 0 }, { top_k: -1 }]) {
      expect(topK(chat(none))).toBe(0);
      expect(topK(completion(none))).toBe(0);
    }
    expect(topK(chat({ top_k: 40 }))).toBe(40);
    expect(topK(completion({ top_k: 1 }))).toBe(1);
  });

  it('refuses anything else, naming the field', () => {
    for (const v of [-2, 1.5, '40', true, [40], 2 ** 20 + 1, Number.NaN])
      expect(topK(completion({ top_k: v }))).toEqual([400, 'top_k', expect.stringMatching(/top_k must be an integer in \[-1, 1048576\]/)]);
  });
});

describe('log-probabilities', () => {
  it('chat: logprobs true lists the generated token; top_logprobs 0..20 adds that many alternatives', () => {
    expect(refusal(chat({}))).toEqual(['accepted', null]);
    expect(refusal(chat({ logprobs: false }))).toEqual(['accepted', null]);
    expect(refusal(chat({ logprobs: true }))).toEqual(['accepted', 0]);
    expect(refusal(chat({ logprobs: true, top_logprobs: 20 }))).toEqual(['accepted', 20]);
    expect(refusal(chat({ logprobs: true, top_logprobs: null }))).toEqual(['accepted', 0]);
  });

  it('chat: refuses top_logprobs out of range, not an integer, or without logprobs', () => {
    expect(refusal(chat({ logprobs: true, top_logprobs: 21 }))).toEqual([400, 'invalid_request', 'top_logprobs']);
    expect(refusal(chat({ logprobs: true, top_logprobs: -1 }))).toEqual([400, 'invalid_request', 'top_logprobs']);
    expect(refusal(chat({ logprobs: true, top_logprobs: 2.5 }))).toEqual([400, 'invalid_request', 'top_logprobs']);
    expect(refusal(chat({ top_logprobs: 3 }))).toEqual([400, 'invalid_request', 'top_logprobs']);
    expect(refusal(chat({ logprobs: 5 }))).toEqual([400, 'invalid_request', 'logprobs']);
  });

  it('completions: logprobs is an integer 0..5', () => {
    expect(refusal(completion({ logprobs: 0 }))).toEqual(['accepted', 0]);
    expect(refusal(completion({ logprobs: 5 }))).toEqual(['accepted', 5]);
    expect(refusal(completion({ logprobs: null }))).toEqual(['accepted', null]);
    for (const bad of [6, -1, 1.5, true, '2'])
      expect(refusal(completion({ logprobs: bad })), JSON.stringify(bad)).toEqual([400, 'invalid_request', 'logprobs']);
  });
});

describe('defaults of an absent field (README: chat to the end of the context, completions 16 tokens; temperature 1; a drawn seed)', () => {
  it('a body with only the prompt or the messages samples at temperature 1, one choice, no penalties; chat fits its tokens to the context, completions take 16', () => {
    for (const p of [chat({}), completion({})])
      expect(p).toMatchObject({ temperature: 1, topP: 1, n: 1, frequencyPenalty: 0, presencePenalty: 0 });
    // OpenAI's chat has no default cap: as many as the context leaves, at most MAX_GENERATE_TOKENS (completions.ts).
    expect(chat({})).toMatchObject({ maxTokens: MAX_GENERATE_TOKENS, fitToContext: true });
    expect(completion({})).toMatchObject({ maxTokens: 16, fitToContext: false });
    // max_completion_tokens is chat's newer name for max_tokens; either, given, is taken as it is.
    expect(chat({ max_completion_tokens: 5 })).toMatchObject({ maxTokens: 5, fitToContext: false });
    expect(chat({ max_tokens: 7 })).toMatchObject({ maxTokens: 7, fitToContext: false });
    expect(chat({ max_tokens: null })).toMatchObject({ fitToContext: true });
    // Out of range, refused under the name the client used.
    expect(chat({ max_completion_tokens: MAX_GENERATE_TOKENS + 1 })).toMatchObject({ status: 400, param: 'max_completion_tokens' });
    expect(chat({ max_tokens: MAX_GENERATE_TOKENS + 1 })).toMatchObject({ status: 400, param: 'max_tokens' });
  });

  it('draws a seed where none is given (a request asked again gives another draw), and takes one given as it is', () => {
    const seeds = new Set(Array.from({ length: 20 }, () => (chat({}) as { seed: number }).seed));
    expect(seeds.size).toBeGreaterThan(15);
    for (const s of seeds) expect(Number.isInteger(s) && s >= 0 && s < 2 ** 32).toBe(true);
    expect(chat({ seed: 0 })).toMatchObject({ seed: 0 });
  });
});

describe('best_of beside n (completions)', () => {
  it('is n when absent (nothing ranked); an integer in [n, 8] otherwise, each other value refused naming best_of', () => {
    expect(completion({})).toMatchObject({ n: 1, bestOf: 1 });
    expect(completion({ n: 3 })).toMatchObject({ n: 3, bestOf: 3 });
    expect(completion({ best_of: 5, n: 2 })).toMatchObject({ n: 2, bestOf: 5 });
    expect(completion({ best_of: null, n: 2 })).toMatchObject({ n: 2, bestOf: 2 });
    for (const [best_of, n] of [
      [1, 2],
      [9, 1],
      [0, 1],
      [2.5, 1],
      ['3', 1],
      [true, 1],
    ] as const) {
      const r = completion({ best_of, n });
      expect(r, JSON.stringify({ best_of, n })).toMatchObject({ status: 400, code: 'invalid_request', param: 'best_of' });
      expect('status' in r && r.message).toBe(
        `best_of must be an integer in [n, 8] (here n = ${n}): the candidates generated, of which the n with the highest log-probability per token are returned`,
      );
    }
  });

  it('is not streamed when it ranks (best_of > n); best_of = n streams as n does', () => {
    expect(completion({ best_of: 2, stream: true })).toMatchObject({
      status: 400,
      param: 'best_of',
      message: 'best_of > n cannot be streamed: the best candidates are known only once every one has ended',
    });
    expect(completion({ best_of: 2, n: 2, stream: true })).toMatchObject({ n: 2, bestOf: 2, stream: true });
  });

  it('belongs to completions: a chat body with best_of is refused, as OpenAI refuses it', () => {
    expect(chat({ best_of: 3 })).toEqual({
      status: 400,
      code: 'unknown_parameter',
      param: 'best_of',
      message: 'Unrecognized request argument supplied: "best_of"',
    });
  });
});

describe('echo (completions)', () => {
  it('is a boolean, false when absent; with it (only) max_tokens may be 0', () => {
    expect(completion({})).toMatchObject({ echo: false, maxTokens: 16 });
    expect(completion({ echo: true, max_tokens: 0 })).toMatchObject({ echo: true, maxTokens: 0 });
    expect(completion({ echo: false, max_tokens: 3 })).toMatchObject({ echo: false, maxTokens: 3 });
    expect(completion({ echo: 'yes' })).toMatchObject({
      status: 400,
      code: 'invalid_request',
      param: 'echo',
      message: 'echo must be a boolean',
    });
    expect(completion({ max_tokens: 0 })).toMatchObject({
      status: 400,
      param: 'max_tokens',
      message: `max_tokens must be an integer in [1, ${MAX_GENERATE_TOKENS}] (0 only with echo: true)`,
    });
    expect(completion({ echo: true, max_tokens: -1 })).toMatchObject({
      status: 400,
      param: 'max_tokens',
      message: `max_tokens must be an integer in [0, ${MAX_GENERATE_TOKENS}]`,
    });
    // Chat has no echo (OpenAI refuses it there too), so no max_tokens of 0 either.
    expect(chat({ echo: true })).toMatchObject({ status: 400, code: 'unknown_parameter', param: 'echo' });
    // …and its refusal does not point at one (before, chat's and the Responses API's said "0 only with echo: true").
    expect(chat({ max_tokens: 0 })).toMatchObject({
      status: 400,
      param: 'max_tokens',
      message: `max_tokens must be an integer in [1, ${MAX_GENERATE_TOKENS}]`,
    });
    expect(parseResponsesBody({ model: 'austen-2m', input: 'x', max_output_tokens: 0 }, MODELS)).toMatchObject({
      status: 400,
      param: 'max_output_tokens',
      message: `max_output_tokens must be an integer in [1, ${MAX_GENERATE_TOKENS}]`,
    });
  });
});

describe('prompt (completions): OpenAI’s four forms, a batch of several', () => {
  const refused = (prompt: unknown) => {
    const r = completion({ prompt });
    if (!('status' in r)) throw new Error(`accepted: ${JSON.stringify(prompt)}`);
    expect(r).toMatchObject({ status: 400, code: 'invalid_request', param: 'prompt' });
    return r.message;
  };
  const forms = `a string of 1..${MAX_PROMPT_CHARS} characters, a list of 1..${MAX_PROMPT_IDS} token ids, or a list of 1..${MAX_PROMPTS} of either (all strings or all lists of ids)`;
  it('takes a string, a list of one string, token ids, or a list of one list of ids', () => {
    expect(completion({ prompt: 'Emma' })).toMatchObject({ prompts: [{ text: 'Emma' }] });
    expect(completion({ prompt: ['Emma'] })).toMatchObject({ prompts: [{ text: 'Emma' }] });
    expect(completion({ prompt: [5, 0, 17] })).toMatchObject({ prompts: [{ ids: [5, 0, 17] }] });
    expect(completion({ prompt: [[5, 0, 17]] })).toMatchObject({ prompts: [{ ids: [5, 0, 17] }] });
    expect(completion({ prompt: [7] })).toMatchObject({ prompts: [{ ids: [7] }] });
    expect(completion({ prompt: 'x'.repeat(MAX_PROMPT_CHARS) })).not.toHaveProperty('status');
    expect(completion({ prompt: new Array(MAX_PROMPT_IDS).fill(1) })).not.toHaveProperty('status');
  });
  it('takes a batch: several strings or several lists of ids, in order, up to MAX_PROMPTS of them', () => {
    expect(completion({ prompt: ['Emma', 'Harriet', 'Mr. Knightley'] })).toMatchObject({
      prompts: [{ text: 'Emma' }, { text: 'Harriet' }, { text: 'Mr. Knightley' }],
    });
    expect(completion({ prompt: [[1], [2, 3], [0]] })).toMatchObject({ prompts: [{ ids: [1] }, { ids: [2, 3] }, { ids: [0] }] });
    const most = Array.from({ length: MAX_PROMPTS }, (_, i) => `prompt ${i}`);
    expect(completion({ prompt: most })).toMatchObject({ prompts: most.map((text) => ({ text })) });
    // The caps bound a batch's prompts together: exactly at them is accepted.
    const half = MAX_PROMPT_IDS / 2;
    expect(completion({ prompt: [new Array(half).fill(1), new Array(half).fill(2)] })).not.toHaveProperty('status');
    expect(completion({ prompt: ['x'.repeat(MAX_PROMPT_CHARS - 1), 'y'] })).not.toHaveProperty('status');
  });
  it('refuses a batch over MAX_PROMPTS, over the caps together, mixed, empty or with a bad member, naming it', () => {
    const over = Array.from({ length: MAX_PROMPTS + 1 }, () => [1]);
    expect(refused(over)).toBe(`prompt holds ${MAX_PROMPTS + 1} prompts; at most ${MAX_PROMPTS} a request`);
    expect(refused(over.map(() => 'Emma'))).toBe(`prompt holds ${MAX_PROMPTS + 1} prompts; at most ${MAX_PROMPTS} a request`);
    const half = MAX_PROMPT_IDS / 2;
    expect(refused([new Array(half).fill(1), new Array(half + 1).fill(2)])).toBe(
      `prompt's 2 prompts hold ${MAX_PROMPT_IDS + 1} token ids together; at most ${MAX_PROMPT_IDS}`,
    );
    expect(refused(['x'.repeat(MAX_PROMPT_CHARS), 'y'])).toBe(
      `prompt's 2 prompts hold ${MAX_PROMPT_CHARS + 1} characters together; at most ${MAX_PROMPT_CHARS}`,
    );
    const mixed = 'prompt mixes strings and lists of token ids: the prompts of a batch are all strings or all lists of ids';
    expect(refused(['Emma', [2]])).toBe(mixed);
    expect(refused([[2], 'Emma'])).toBe(mixed);
    // A member of a batch is named by its place, an id by its prompt's and its own.
    expect(refused(['Emma', ''])).toBe(`prompt must be ${forms}: prompt[1] has 0 characters`);
    expect(refused([[1], []])).toBe(`prompt[1] must be a list of 1..${MAX_PROMPT_IDS} token ids`);
    expect(refused([[1], [2, -3]])).toBe('prompt[1][1] is -3: a token id is an integer ≥ 0');
    expect(refused([[1], [[2]]])).toBe(`prompt[1] must be a list of 1..${MAX_PROMPT_IDS} token ids`);
    expect(refused([[1], ['a']])).toBe(`prompt[1] must be a list of 1..${MAX_PROMPT_IDS} token ids`);
  });
  it('refuses every other shape with the forms it takes', () => {
    for (const p of [undefined, null, 42, {}, [], [1, 'a'], [true], [null, null], [{}, {}]])
      expect(refused(p), JSON.stringify(p)).toBe(`prompt must be ${forms}`);
    for (const p of [[[]], [['Emma']], [[1, [2]]]])
      expect(refused(p), JSON.stringify(p)).toBe(`prompt must be a list of 1..${MAX_PROMPT_IDS} token ids`);
    expect(refused('')).toBe(`prompt must be ${forms}: the string has 0 characters`);
    expect(refused('x'.repeat(MAX_PROMPT_CHARS + 1))).toMatch(/the string has 8001 characters$/);
    expect(refused(new Array(MAX_PROMPT_IDS + 1).fill(1))).toBe(`prompt holds ${MAX_PROMPT_IDS + 1} token ids; at most ${MAX_PROMPT_IDS}`);
  });
  it('a token id is an integer ≥ 0 (whether the model has it, the coordinator checks)', () => {
    expect(refused([1, -1])).toBe('prompt[1] is -1: a token id is an integer ≥ 0');
    expect(refused([[0.5]])).toBe('prompt[0] is 0.5: a token id is an integer ≥ 0');
    expect(refused([2 ** 53])).toBe(`prompt[0] is ${2 ** 53}: a token id is an integer ≥ 0`);
    expect(completion({ prompt: [2 ** 31] })).toMatchObject({ prompts: [{ ids: [2 ** 31] }] });
  });
});

describe('fields that name the caller or a cache', () => {
  it('user, safety_identifier and prompt_cache_key are strings where given (as OpenAI checks them), on every endpoint', () => {
    for (const field of ['user', 'safety_identifier', 'prompt_cache_key']) {
      for (const v of ['u-1', null]) expect('status' in chat({ [field]: v }), `${field} ${v}`).toBe(false);
      for (const v of [5, { id: 'u' }, ['u']]) {
        expect(chat({ [field]: v }), `${field} ${JSON.stringify(v)}`).toMatchObject({
          status: 400,
          param: field,
          message: `${field} must be a string`,
        });
        expect(completion({ [field]: v })).toMatchObject({ status: 400, param: field });
      }
    }
  });
});

describe('model', () => {
  it('absent or null is the served model (as every null field); a name not served is a 404 naming it, a value of another type a 400', () => {
    for (const model of [undefined, null, 'austen-2m']) {
      expect('status' in chat({ model }), String(model)).toBe(false);
      expect('status' in completion({ model }), String(model)).toBe(false);
    }
    for (const model of ['gpt-4', ''])
      expect(chat({ model }), JSON.stringify(model)).toMatchObject({
        status: 404,
        code: 'model_not_found',
        param: 'model',
        message: `The model ${JSON.stringify(model)} does not exist here (served: austen-2m)`,
      });
    for (const model of [7, ['austen-2m'], true])
      expect(chat({ model }), JSON.stringify(model)).toMatchObject({
        status: 400,
        code: 'invalid_request',
        param: 'model',
        message: expect.stringMatching(/^model must be a string/),
      });
  });
});
