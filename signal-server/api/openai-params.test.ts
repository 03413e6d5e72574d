import { describe, expect, it } from 'vitest';
import { type BodyError, parseChatBody, parseCompletionBody } from './openai-params.js';

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
    ['frequency_penalty', 0.5, 'unsupported_value', 0],
    ['presence_penalty', -1, 'unsupported_value', 0],
    ['frequency_penalty', 3, 'invalid_request', null],
    ['presence_penalty', '0', 'invalid_request', null],
    ['logit_bias', { 50256: -100 }, 'unsupported_value', {}],
    ['logit_bias', [1, 2], 'invalid_request', null],
    ['n', 2, 'unsupported_value', 1],
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
  ];
  const completionOnly: [string, unknown, BodyError['code'], unknown][] = [
    ['best_of', 3, 'unsupported_value', 1],
    ['echo', true, 'unsupported_value', false],
    ['suffix', ' the end', 'unsupported_parameter', ''],
  ];

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
