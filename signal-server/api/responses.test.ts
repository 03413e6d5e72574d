// POST /v1/responses through a real server and 3 real volunteers (Node clients running the real replica on
// onnxruntime-web's WASM backend), called with the official `openai` client, its answers checked against the
// reference runner's tokens for the same conversation and sampling.
import type OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SamplingParams } from '../../shared/model/sampling.js';
import { GREEDY } from '../../shared/model/sampling.js';
import type { ChatMessage } from '../../shared/model/tokenizer.js';
import { type ApiSwarm, postRaw, startApiSwarm } from '../testing/api-swarm.js';

let s: ApiSwarm;
beforeAll(async () => {
  s = await startApiSwarm('webswarm-responses-', { redundancy: 3, apiMaxConcurrent: 0 });
});
afterAll(() => s?.close());

interface Extension {
  readonly webswarm: {
    readonly tokens: number[];
    readonly prompt_tokens: number[];
    readonly verified: boolean;
    readonly seed: number;
    readonly votes: { readonly votes: { readonly agreed: number; readonly disagreed: number }[] }[];
  };
}
const ext = (r: unknown) => (r as Extension).webswarm;

/** The reference runner's tokens for a chat of `messages` (the served model's chat template) and its prompt's ids. */
async function reference(messages: readonly ChatMessage[], maxTokens: number, sampling: SamplingParams) {
  const promptIds = s.reference.tokenizer.encode(s.reference.tokenizer.chatPrompt(messages));
  return { promptIds, tokens: (await s.reference.generateIds(promptIds, maxTokens, sampling)).tokens };
}

const url = () => `${s.server.address().url}/v1/responses`;

describe('POST /v1/responses', () => {
  it("answers the reference runner's tokens for instructions + input, with usage, status and every token's vote", async () => {
    const r = await s.client.responses.create({
      model: 'austen-2m',
      instructions: 'Answer as Miss Woodhouse would.',
      input: 'Who is Mr. Knightley?',
      max_output_tokens: 12,
      temperature: 0,
      metadata: { run: 'test-1' },
    });
    const messages: ChatMessage[] = [
      { role: 'system', content: 'Answer as Miss Woodhouse would.' },
      { role: 'user', content: 'Who is Mr. Knightley?' },
    ];
    const expected = await reference(messages, 12, GREEDY);
    expect(ext(r).tokens).toEqual(expected.tokens);
    expect(ext(r).prompt_tokens).toEqual(expected.promptIds);
    expect(r.object).toBe('response');
    expect(r.id).toMatch(/^resp_[0-9a-f]{32}$/);
    // The SDK's output_text is the output's text parts joined.
    expect(r.output_text).toBe(s.reference.tokenizer.decode(expected.tokens));
    expect(r.output).toHaveLength(1);
    expect(r.output[0]).toMatchObject({ type: 'message', role: 'assistant' });
    const capped = expected.tokens.length === 12;
    expect(r.status).toBe(capped ? 'incomplete' : 'completed');
    expect(r.incomplete_details).toEqual(capped ? { reason: 'max_output_tokens' } : null);
    expect(r.usage).toEqual({
      input_tokens: expected.promptIds.length,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: expected.tokens.length,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: expected.promptIds.length + expected.tokens.length,
    });
    expect(r).toMatchObject({ instructions: messages[0]?.content, max_output_tokens: 12, temperature: 0, metadata: { run: 'test-1' } });
    expect(ext(r).verified).toBe(true);
    // A majority of the 3 replicas agreed on every token, none disagreed.
    for (const v of ext(r).votes) for (const x of v.votes) expect([x.agreed >= 2, x.disagreed]).toEqual([true, 0]);

    // The same conversation through chat completions: the same tokens (both are the reference's).
    const chat = await s.client.chat.completions.create({ model: 'austen-2m', messages, max_tokens: 12, temperature: 0 });
    expect(ext(chat).tokens).toEqual(expected.tokens);
  });

  it("streams OpenAI's named events in order, whose deltas add up to the seeded reference's text; the SDK's stream helper agrees", async () => {
    const seed = 5;
    const sampling = { temperature: 1, topK: 0, topP: 1, seed };
    const input = 'Emma Woodhouse, handsome, clever, and rich,';
    const expected = await reference([{ role: 'user', content: input }], 20, sampling);
    // `seed` is webswarm's extension here (as on chat completions): the SDK's types lack it.
    const body = { model: 'austen-2m', input, max_output_tokens: 20, seed } as OpenAI.Responses.ResponseCreateParamsNonStreaming;
    const stream = await s.client.responses.create({ ...body, stream: true });
    const events: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const e of stream) events.push(e);
    const types = events.map((e) => e.type);
    const deltas = types.filter((t) => t === 'response.output_text.delta').length;
    const end = expected.tokens.length === 20 ? 'response.incomplete' : 'response.completed';
    expect(types).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      ...Array.from({ length: deltas }, () => 'response.output_text.delta'),
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      end,
    ]);
    expect(deltas).toBe(expected.tokens.length);
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    const text = events.flatMap((e) => (e.type === 'response.output_text.delta' ? [e.delta] : [])).join('');
    expect(text).toBe(s.reference.tokenizer.decode(expected.tokens));
    const last = events.at(-1) as OpenAI.Responses.ResponseCompletedEvent;
    expect(ext(last.response).tokens).toEqual(expected.tokens);
    expect(last.response.output_text ?? text).toBe(text);

    // The SDK's accumulating helper checks the events' order and item ids as it builds the response.
    const helper = await s.client.responses.stream({ ...body, stream: true }).finalResponse();
    expect(helper.output_text).toBe(text);
    expect(ext(helper).tokens).toEqual(expected.tokens);
  });

  it("takes an earlier answer's output item back as the assistant's turn, and text parts", async () => {
    const first = await s.client.responses.create({ model: 'austen-2m', input: 'Emma', max_output_tokens: 6, temperature: 0 });
    const second = await s.client.responses.create({
      model: 'austen-2m',
      input: [
        { role: 'user', content: 'Emma' },
        ...(first.output as OpenAI.Responses.ResponseInputItem[]),
        {
          role: 'user',
          content: [
            { type: 'input_text', text: 'And ' },
            { type: 'input_text', text: 'then?' },
          ],
        },
      ],
      max_output_tokens: 8,
      temperature: 0,
    });
    const expected = await reference(
      [
        { role: 'user', content: 'Emma' },
        { role: 'assistant', content: first.output_text },
        { role: 'user', content: 'And then?' },
      ],
      8,
      GREEDY,
    );
    expect(ext(second).tokens).toEqual(expected.tokens);
  });

  it('refuses by name what it cannot honour, and says nothing is stored', async () => {
    const cases: [unknown, number, string, string | null][] = [
      [{ model: 'austen-2m' }, 400, 'invalid_request', 'input'],
      [{ input: '' }, 400, 'invalid_request', 'input'],
      [{ input: 'x', store: true }, 400, 'unsupported_value', 'store'],
      [{ input: 'x', tools: [{ type: 'web_search' }] }, 400, 'unsupported_parameter', 'tools'],
      [{ input: 'x', previous_response_id: 'resp_1' }, 400, 'unsupported_parameter', 'previous_response_id'],
      [{ input: 'x', text: { format: { type: 'json_object' } } }, 400, 'unsupported_value', 'text.format'],
      [{ input: 'x', include: ['message.output_text.logprobs'] }, 400, 'unsupported_value', 'include'],
      [{ input: 'x', truncation: 'auto' }, 400, 'unsupported_value', 'truncation'],
      [{ input: 'x', max_output_tokens: 0 }, 400, 'invalid_request', 'max_output_tokens'],
      [{ input: 'x', max_tokens: 5 }, 400, 'unknown_parameter', 'max_tokens'],
      [{ input: 'x', n: 2 }, 400, 'unknown_parameter', 'n'],
      [{ input: 'x', model: 'gpt-5' }, 404, 'model_not_found', 'model'],
      [{ input: [{ type: 'function_call_output', call_id: 'c', output: '1' }] }, 400, 'unsupported_value', 'input[0].type'],
      [
        {
          input: [
            {
              role: 'user',
              content: [
                { type: 'input_text', text: 'a' },
                { type: 'input_image', image_url: 'x' },
              ],
            },
          ],
        },
        400,
        'unsupported_value',
        'input[0].content[1].type',
      ],
      [{ input: [{ role: 'tool', content: 'x' }] }, 400, 'invalid_request', 'input[0].role'],
      [
        { input: 'x', metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) },
        400,
        'invalid_request',
        'metadata',
      ],
      [{ input: 'x'.repeat(8001) }, 400, 'invalid_request', 'input'],
    ];
    for (const [body, status, code, param] of cases) {
      const a = await postRaw(url(), body);
      expect([JSON.stringify(body).slice(0, 80), a.status, a.body?.error?.code, a.body?.error?.param]).toEqual([
        JSON.stringify(body).slice(0, 80),
        status,
        code,
        param,
      ]);
      expect(a.body.error.message.length).toBeGreaterThan(10);
    }
    // A conversation past the context: OpenAI's code, named in this endpoint's words (the coordinator says prompt and
    // max_tokens), as chat names its own cap.
    const long = await postRaw(url(), { input: 'Emma '.repeat(600), max_output_tokens: 5 });
    expect([long.status, long.body.error.code, long.body.error.param]).toEqual([400, 'context_length_exceeded', 'input']);
    expect(long.body.error.message).toMatch(/^input \(\d+ tokens\) \+ max_output_tokens \(5\) exceeds/);
    const chat = await postRaw(`${s.server.address().url}/v1/chat/completions`, {
      messages: [{ role: 'user', content: 'Emma '.repeat(600) }],
      max_completion_tokens: 5,
    });
    expect([chat.status, chat.body.error.param]).toEqual([400, 'messages']);
    expect(chat.body.error.message).toMatch(/^messages \(\d+ tokens\) \+ max_completion_tokens \(5\) exceeds/);
    const stored = await fetch(`${url()}/resp_0123`);
    expect(stored.status).toBe(404);
    expect(((await stored.json()) as { error: { message: string } }).error.message).toMatch(/not stored/);
    const get = await fetch(url());
    expect([get.status, get.headers.get('allow')]).toEqual([405, 'POST']);
    // The model listings take GET and HEAD alone, and say so.
    for (const path of ['/v1/models', '/v1/models/tiny-untied']) {
      const post = await fetch(`${s.server.address().url}${path}`, { method: 'POST' });
      expect([post.status, post.headers.get('allow')], path).toEqual([405, 'GET, HEAD']);
    }
    // Without /v1, named with it.
    const bare = await postRaw(`${s.server.address().url}/responses`, { input: 'x' });
    expect(bare.status).toBe(404);
    expect(bare.raw).toContain('/v1/responses');
  });

  it('a client that goes away mid-stream ends its generation', async () => {
    const stepsBefore = s.volunteers.reduce((a, v) => a + v.steps, 0);
    const abort = new AbortController();
    const stream = await s.client.responses.create(
      { model: 'austen-2m', input: 'Emma', max_output_tokens: 200, temperature: 0, stream: true },
      { signal: abort.signal },
    );
    let seen = 0;
    // The SDK ends the iteration quietly once its request is aborted.
    for await (const e of stream) if (e.type === 'response.output_text.delta' && ++seen === 2) abort.abort();
    expect(seen).toBe(2);
    const until = Date.now() + 10_000;
    while ((s.server.coordinator?.activeSessions ?? 0) > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(s.server.coordinator?.activeSessions).toBe(0);
    // Far fewer than the 200 tokens asked for were computed (3 replicas, a step each per token, the prompt's one).
    expect(s.volunteers.reduce((a, v) => a + v.steps, 0) - stepsBefore).toBeLessThan(3 * 100);
  });
});
