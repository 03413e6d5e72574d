// Integration: the OpenAI-compatible API of a real server on port 0, called
// with the official `openai` npm client (and raw fetch where the client hides
// the wire). No volunteers here: what needs a swarm is in e2e/openai-client.spec.ts.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { io as connect, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Tokenizer } from '../../shared/model/tokenizer.js';
import type { ClientToServerEvents, ServerToClientEvents } from '../../shared/protocol/messages.js';
import { PROTOCOL_VERSION } from '../../shared/protocol/version.js';
import { ensureStages, partitionKey } from '../models/model-folder.js';
import { createSignalServer, type SignalServer, type SignalServerOptions } from '../server.js';
import { LIGHT_RATE_FACTOR } from './access.js';

let cache: string;
const servers: SignalServer[] = [];

async function server(extra: Partial<SignalServerOptions> = {}): Promise<SignalServer> {
  const { dir, manifest } = await ensureStages('fixtures/models/tiny-untied', { stages: 2 }, cache);
  const s = createSignalServer({
    port: 0,
    host: '127.0.0.1',
    webRoot: null,
    models: [{ dir, manifest, key: partitionKey(3, { stages: 2 }) }],
    redundancy: 2,
    routeWaitMs: 200,
    ratePerMinute: 0,
    apiMaxConcurrent: 0,
    ...extra,
  });
  await s.ready;
  servers.push(s);
  return s;
}

const client = (s: SignalServer, apiKey = 'none') => new OpenAI({ baseURL: `${s.address().url}/v1`, apiKey, maxRetries: 0 });

beforeAll(() => {
  cache = mkdtempSync(join(tmpdir(), 'webswarm-api-'));
});
afterAll(async () => {
  for (const s of servers) await s.close();
  rmSync(cache, { recursive: true, force: true });
});

describe('the OpenAI-compatible API', () => {
  it('lists the served model to the openai client', async () => {
    const s = await server();
    const models = await client(s).models.list();
    expect(models.data.map((m) => [m.id, m.object, m.owned_by])).toEqual([['tiny-untied', 'model', 'webswarm']]);
  });

  it('retrieves a served model, and answers 404 in OpenAI’s shape for another', async () => {
    const s = await server();
    const c = client(s);
    const m = await c.models.retrieve('tiny-untied');
    expect([m.id, m.object, m.owned_by]).toEqual(['tiny-untied', 'model', 'webswarm']);
    expect(m.created).toBe((await c.models.list()).data[0]?.created);
    const e = await c.models.retrieve('gpt-4').then(
      () => null,
      (err: unknown) => err as InstanceType<typeof OpenAI.APIError>,
    );
    expect([e?.status, e?.code, e?.param, e?.type]).toEqual([404, 'model_not_found', 'model', 'invalid_request_error']);
    expect(e?.message).toMatch(/"gpt-4" does not exist/);
    // A percent-encoded id is decoded; a bad encoding is an unknown model, not a crash.
    expect((await fetch(`${s.address().url}/v1/models/tiny%2Duntied`)).status).toBe(200);
    expect((await fetch(`${s.address().url}/v1/models/%E0%A4%A`)).status).toBe(404);
    const metrics = await (await fetch(`${s.address().url}/metrics`)).text();
    expect(metrics).toMatch(/^webswarm_http_requests_total\{route="\/v1\/models\/\{id\}",status="200"\} 2$/m);
    expect(metrics).toMatch(/^webswarm_http_requests_total\{route="\/v1\/models\/\{id\}",status="404"\} 2$/m);
  });

  it('answers bad requests with OpenAI’s error shape and status, naming the field', async () => {
    const s = await server();
    const c = client(s);
    const cases: [() => Promise<unknown>, number, string, string | null][] = [
      [() => c.completions.create({ model: 'gpt-4', prompt: 'Emma' }), 404, 'model_not_found', 'model'],
      [() => c.completions.create({ model: 'tiny-untied', prompt: 'Emma', n: 9 }), 400, 'invalid_request', 'n'],
      [
        () =>
          c.chat.completions.create({
            model: 'tiny-untied',
            messages: [{ role: 'user', content: 'Hello' }],
            tools: [{ type: 'function', function: { name: 'weather' } }],
          }),
        400,
        'unsupported_parameter',
        'tools',
      ],
      [
        () => c.completions.create({ model: 'tiny-untied', prompt: 'Emma', frequency_penalty: 3 }),
        400,
        'invalid_request',
        'frequency_penalty',
      ],
      [
        () => c.chat.completions.create({ model: 'tiny-untied', messages: [{ role: 'user', content: 'Hello' }], top_logprobs: 3 }),
        400,
        'invalid_request',
        'top_logprobs',
      ],
      [() => c.completions.create({ model: 'tiny-untied', prompt: 'Emma', temperature: 3 }), 400, 'invalid_request', 'temperature'],
      [() => c.completions.create({ model: 'tiny-untied', prompt: 'Emma', max_tokens: 0 }), 400, 'invalid_request', 'max_tokens'],
      [
        () => c.completions.create({ model: 'tiny-untied', prompt: 'Emma', stop: ['a', 'b', 'c', 'd', 'e'] }),
        400,
        'invalid_request',
        'stop',
      ],
      [() => c.chat.completions.create({ model: 'tiny-untied', messages: [] }), 400, 'invalid_request', 'messages'],
      [
        () => c.chat.completions.create({ model: 'tiny-untied', messages: [{ role: 'tool', content: 'x', tool_call_id: '1' }] }),
        400,
        'unsupported_value',
        'messages[0].role',
      ],
    ];
    for (const [call, status, code, param] of cases) {
      const e = await call().then(
        () => null,
        (err: unknown) => err,
      );
      expect(e, code).toBeInstanceOf(OpenAI.APIError);
      const apiError = e as InstanceType<typeof OpenAI.APIError>;
      expect([apiError.status, apiError.code, apiError.param]).toEqual([status, code, param]);
      expect(apiError.message.length).toBeGreaterThan(10);
    }
    const raw = await fetch(`${s.address().url}/v1/chat/completions`, { method: 'POST', body: '{"messages": [' });
    expect(raw.status).toBe(400);
    expect(((await raw.json()) as { error: { type: string; code: string } }).error).toMatchObject({
      type: 'invalid_request_error',
      code: 'invalid_json',
    });
    // Bytes that are no UTF-8 are refused (before: read as U+FFFD, and the model answered a prompt never sent).
    const notUtf8 = await fetch(`${s.address().url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: Buffer.concat([Buffer.from('{"prompt": "A'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('", "max_tokens": 1}')]),
    });
    expect(notUtf8.status).toBe(400);
    expect(((await notUtf8.json()) as { error: { code: string; message: string } }).error).toMatchObject({
      code: 'invalid_json',
      message: 'the body is not valid UTF-8 (JSON text is UTF-8)',
    });
    // A compressed body is named as such (before: "not valid JSON"); identity is no compression.
    const { gzipSync } = await import('node:zlib');
    const body = JSON.stringify({ prompt: 'x', max_tokens: 1 });
    const gz = await fetch(`${s.address().url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
      body: gzipSync(body),
    });
    expect(gz.status).toBe(415);
    expect(((await gz.json()) as { error: { code: string; message: string } }).error).toMatchObject({
      code: 'unsupported_content_encoding',
      message: 'Content-Encoding "gzip" is not taken: send the JSON body uncompressed',
    });
    const identity = await fetch(`${s.address().url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-encoding': 'identity' },
      body,
    });
    expect(identity.status).not.toBe(415);
  });

  it('refuses a body over the limit with 413', async () => {
    const s = await server({ maxBodyBytes: 2048 });
    const res = await fetch(`${s.address().url}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: 'x'.repeat(4096) }) });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('body_too_large');
  });

  it('names the stage without volunteers in a 503, streaming or not', async () => {
    const s = await server();
    for (const stream of [false, true]) {
      const e = await client(s)
        .chat.completions.create({ model: 'tiny-untied', messages: [{ role: 'user', content: 'Hello' }], stream })
        .then(
          () => null,
          (err: unknown) => err as InstanceType<typeof OpenAI.APIError>,
        );
      expect(e?.status).toBe(503);
      expect(e?.code).toBe('ERR_NO_ROUTE');
      expect(e?.message).toMatch(/stage 0 of tiny-untied: 0 of 2 replicas ready/);
    }
  });

  it('streams a chat choice’s role alone first, as OpenAI does: the openai client adds up each token’s log-probability once', async () => {
    // The server computes (the fallback): a stream's shape needs no volunteers.
    const s = await server({ fallback: 'stage' });
    const body = { model: 'tiny-untied', messages: [{ role: 'user' as const, content: 'Hello' }], max_tokens: 5, temperature: 0 };
    const raw = await fetch(`${s.address().url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ ...body, stream: true, n: 2, logprobs: true }),
    });
    const chunks = (await raw.text())
      .split('\n\n')
      .filter((e) => e.startsWith('data: {'))
      .map((e) => JSON.parse(e.slice(6)) as { choices: { index: number; delta: Record<string, unknown>; logprobs: unknown }[] });
    for (const index of [0, 1]) {
      const own = chunks.flatMap((c) => c.choices).filter((c) => c.index === index);
      expect(own[0], `choice ${index}`).toEqual({ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null });
      expect(own.slice(1).some((c) => 'role' in c.delta)).toBe(false);
    }
    // Before, the role came with the first token, and the client's final completion listed that token twice.
    const streamed = await client(s)
      .chat.completions.stream({ ...body, n: 2, logprobs: true, top_logprobs: 1 })
      .finalChatCompletion();
    const whole = await client(s).chat.completions.create({ ...body, n: 2, logprobs: true, top_logprobs: 1 });
    expect(streamed.choices.map((c) => [c.message.content, c.logprobs?.content?.map((t) => t.token)])).toEqual(
      whole.choices.map((c) => [c.message.content, c.logprobs?.content?.map((t) => t.token)]),
    );
    expect(whole.choices[0]?.logprobs?.content).toHaveLength(
      whole.usage?.completion_tokens === undefined ? -1 : whole.usage.completion_tokens / 2,
    );
  });

  it('answers a prompt past the model’s positions with OpenAI’s code, context_length_exceeded, streamed or not', async () => {
    const s = await server({ fallback: 'stage' });
    const long = 'Emma '.repeat(700);
    for (const stream of [false, true]) {
      const e = await client(s)
        .completions.create({ model: 'tiny-untied', prompt: long, max_tokens: 4, stream })
        .then(
          () => null,
          (err: unknown) => err as InstanceType<typeof OpenAI.APIError>,
        );
      expect([e?.status, e?.code, e?.param]).toEqual([400, 'context_length_exceeded', 'prompt']);
      expect(e?.message).toMatch(
        /^400 prompt \(\d+ tokens\) \+ max_tokens \(4\) exceeds the model's maximum context length of \d+ tokens$/,
      );
    }
    // In a batch, found before any prompt runs, and named by its place.
    const batch = await fetch(`${s.address().url}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: ['Emma', long] }) });
    const error = ((await batch.json()) as { error: { code: string; message: string } }).error;
    expect([batch.status, error.code]).toEqual([400, 'context_length_exceeded']);
    expect(error.message).toMatch(/^prompt\[1\]: prompt \(/);
  });

  it('runs a chat that names no max_tokens to the end of the context, as OpenAI has no default cap there; completions stop at 16', async () => {
    const s = await server({ fallback: 'whole' });
    const c = client(s);
    // A prompt near the 512 positions of tiny-untied, so that what is left is short: every position is used.
    const content = 'Emma '.repeat(480);
    const chat = await c.chat.completions.create({ model: 'tiny-untied', messages: [{ role: 'user', content }], temperature: 0 });
    const { prompt_tokens, completion_tokens } = chat.usage ?? { prompt_tokens: 0, completion_tokens: 0 };
    expect(prompt_tokens).toBeGreaterThan(400);
    if (chat.choices[0]?.finish_reason === 'length') expect(prompt_tokens + completion_tokens).toBe(512);
    else expect(prompt_tokens + completion_tokens).toBeLessThan(512);
    expect(completion_tokens).toBeGreaterThan(16);
    // A prompt that fills the context is refused by name, the messages alone (no max_tokens the client never sent).
    const full = await c.chat.completions.create({ model: 'tiny-untied', messages: [{ role: 'user', content: 'Emma '.repeat(700) }] }).then(
      () => null,
      (err: unknown) => err as InstanceType<typeof OpenAI.APIError>,
    );
    expect([full?.status, full?.code]).toEqual([400, 'context_length_exceeded']);
    expect(full?.message).toMatch(
      /messages \(\d+ tokens\) leaves no room for a completion in the model's maximum context length of 512 tokens$/,
    );
    expect(full?.message).not.toContain('max_tokens');
    const completion = await c.completions.create({ model: 'tiny-untied', prompt: 'Emma', temperature: 0 });
    if (completion.choices[0]?.finish_reason === 'length') expect(completion.usage?.completion_tokens).toBe(16);
    else expect(completion.usage?.completion_tokens).toBeLessThan(16);
  });

  it('tokenizes a chat for a model without a chat template as /v1/chat/completions renders it: a "role: content" transcript', async () => {
    const s = await server();
    const dir = 'fixtures/models/tiny-untied';
    const oracle = Tokenizer.fromJson('tokenizer.json', readFileSync(`${dir}/tokenizer.json`, 'utf8'), null);
    const messages = [
      { role: 'system', content: 'At Hartfield.' },
      { role: 'user', content: 'Good morning.' },
    ];
    const tokenize = async (extra: Record<string, unknown>) => {
      const res = await fetch(`${s.address().url}/tokenize`, { method: 'POST', body: JSON.stringify({ messages, ...extra }) });
      return { status: res.status, json: await res.json() };
    };
    const transcript = 'system: At Hartfield.\nuser: Good morning.';
    const ids = oracle.encode(`${transcript}\nassistant:`);
    expect(await tokenize({})).toEqual({
      status: 200,
      json: { count: ids.length, max_model_len: s.coordinator?.maxPositions, tokens: ids },
    });
    expect((await tokenize({ add_generation_prompt: false })).json.tokens).toEqual(oracle.encode(transcript));
  });

  it('checks API keys when they are set', async () => {
    const s = await server({ apiKeys: ['sk-one', 'sk-two'] });
    await expect(client(s, 'sk-wrong').models.list()).rejects.toMatchObject({ status: 401, code: 'invalid_api_key' });
    const noKey = await fetch(`${s.address().url}/v1/models`);
    expect(noKey.status).toBe(401);
    expect((await client(s, 'sk-two').models.list()).data).toHaveLength(1);
  });

  it('asks the chat page’s Socket.IO requests for the same keys', async () => {
    const s = await server({ apiKeys: ['sk-one'] });
    const sock: Socket<ServerToClientEvents, ClientToServerEvents> = connect(s.address().url, {
      auth: { protocol: PROTOCOL_VERSION, role: 'requester' },
      transports: ['websocket'],
      forceNew: true,
    });
    try {
      const ask = (apiKey: string | null) =>
        new Promise<{ code: string; message: string }>((resolve) => {
          const requestId = `r-${apiKey}`;
          const on = (e: { requestId: string; code: string; message: string }) => {
            if (e.requestId !== requestId) return;
            sock.off('chat:error', on);
            resolve(e);
          };
          sock.on('chat:error', on);
          sock.emit('chat:generate', { requestId, apiKey, prompt: 'Emma', maxTokens: 2, temperature: 0, topP: 1, seed: 0 });
        });
      expect(await ask(null)).toMatchObject({ code: 'ERR_UNAUTHORIZED' });
      expect(await ask('sk-wrong')).toMatchObject({ code: 'ERR_UNAUTHORIZED' });
      // With the key it is let through, and fails only because no volunteer holds stage 0.
      expect(await ask('sk-one')).toMatchObject({ code: 'ERR_NO_ROUTE' });
    } finally {
      sock.disconnect();
    }
  });

  it('rate-limits each key with 429 and Retry-After; listing the models spends the light routes’ allowance, not the generations’', async () => {
    const s = await server({ apiKeys: ['sk-a', 'sk-b'], ratePerMinute: 2 });
    const c = client(s, 'sk-a');
    // Chat front ends poll /v1/models: before, the third poll of a minute was refused, and each spent a generation.
    for (let i = 0; i < 10; i++) expect((await c.models.list()).data, `list ${i}`).toHaveLength(1);
    await c.models.retrieve('tiny-untied');
    // A generation request is admitted (and then refused for its body) twice a minute: the listings spent none of that.
    const generate = () =>
      fetch(`${s.address().url}/v1/completions`, {
        method: 'POST',
        headers: { authorization: 'Bearer sk-a', 'content-type': 'application/json' },
        body: '{}',
      });
    expect((await generate()).status).toBe(400);
    expect((await generate()).status).toBe(400);
    const res = await generate();
    expect(res.status).toBe(429);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await res.json()).toMatchObject({ error: { code: 'rate_limit_exceeded' } });
    // The listings are bounded too, by their own allowance (LIGHT_RATE_FACTOR times the API's).
    for (let i = 11; i < 2 * LIGHT_RATE_FACTOR; i++) await c.models.list();
    await expect(c.models.list()).rejects.toMatchObject({ status: 429, code: 'rate_limit_exceeded' });
    // Another key has its own allowances.
    expect((await client(s, 'sk-b').models.list()).data).toHaveLength(1);
    expect((await generate()).status).toBe(429);
  });

  it('answers CORS preflights so that other sites can call it, with the headers their client sends', async () => {
    const s = await server();
    const preflight = (headers: Record<string, string>) =>
      fetch(`${s.address().url}/v1/chat/completions`, {
        method: 'OPTIONS',
        headers: { origin: 'http://example.test', 'access-control-request-method': 'POST', ...headers },
      });
    const plain = await preflight({});
    expect(plain.status).toBe(204);
    expect(plain.headers.get('access-control-allow-origin')).toBe('*');
    expect(plain.headers.get('access-control-allow-headers')).toContain('authorization');
    // The openai package in a browser asks for its x-stainless-* headers, a list that grows with its versions.
    const asked = 'authorization,content-type,x-stainless-runtime-version,x-stainless-some-future-header';
    const res = await preflight({ 'access-control-request-headers': asked });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-headers')).toBe(asked.split(',').join(', '));
    expect(res.headers.get('vary')).toBe('Access-Control-Request-Headers');
    // Every answer can be read cross-origin, errors and their Retry-After included.
    const answer = await fetch(`${s.address().url}/v1/models/none`, { headers: { origin: 'http://example.test' } });
    expect(answer.headers.get('access-control-allow-origin')).toBe('*');
    expect(answer.headers.get('access-control-expose-headers')).toBe('retry-after');
  });

  it('serves /metrics in Prometheus text format, and its counters move with requests', async () => {
    const s = await server();
    const read = async () => {
      const res = await fetch(`${s.address().url}/metrics`);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      return res.text();
    };
    const before = await read();
    expect(before).toMatch(/^# HELP webswarm_tokens_total /m);
    expect(before).toMatch(/^webswarm_tokens_total 0$/m);
    expect(before).toMatch(/^# TYPE webswarm_step_seconds histogram$/m);
    expect(before).toMatch(/^webswarm_sessions_active 0$/m);
    await fetch(`${s.address().url}/v1/completions`, { method: 'POST', body: '{"prompt": 1}' });
    await fetch(`${s.address().url}/v1/completions`, { method: 'POST', body: '{"prompt": "Emma"}' });
    for (const junk of ['/v1/a', '/v1/b', '/v1/c']) await fetch(`${s.address().url}${junk}`);
    const after = await read();
    expect(after).toMatch(/^webswarm_http_requests_total\{route="\/v1\/completions",status="400"\} 1$/m);
    expect(after).toMatch(/^webswarm_http_requests_total\{route="\/v1\/completions",status="503"\} 1$/m);
    expect(after).toMatch(/^webswarm_generations_total\{outcome="ERR_NO_ROUTE"\} 1$/m);
    // Unknown paths share one label, so that nobody can grow the metrics without bound.
    expect(after).toMatch(/^webswarm_http_requests_total\{route="other",status="404"\} 3$/m);
    expect(after).not.toMatch(/route="\/v1\/a"/);
    // Every sample line parses: name{labels} value.
    for (const line of after.split('\n').filter((l) => l !== '' && !l.startsWith('#')))
      expect(line).toMatch(/^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? (-?[0-9.e+-]+|NaN|[+-]Inf)$/);
  });
});
