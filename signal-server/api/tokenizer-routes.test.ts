// vLLM's tokenizer routes on a real server on port 0 serving austen-2m (no volunteers: the routes need none), with
// API keys on. The oracle is the model's tokenizer loaded here on its own; the first test makes the two calls
// lm-evaluation-harness makes to decide that it can use the server's tokenizer (utils.check_remote_tokenizer_support).
// That a chat's ids are the ones /v1/chat/completions runs, through a swarm, is in logprobs-swarm.test.ts.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Tokenizer } from '../../shared/model/tokenizer.js';
import { ensureStages, partitionKey } from '../models/model-folder.js';
import { createSignalServer, type SignalServer } from '../server.js';
import { MAX_CHAT_MESSAGES, MAX_PROMPT_IDS, parseChatBody } from './openai-params.js';
import { parseTokenizeBody, tokenizerCalls } from './tokenizer-routes.js';

const MODEL = 'austen-2m';
const KEY = 'sk-tokenizer-test';
/** The API's requests per minute: the tokenizer routes have LIGHT_RATE_FACTOR times that, apart (more than these tests call). */
const RATE = 5;
/** A key of its own for the large calls' test, which spends its whole allowance. */
const LARGE_KEY = 'sk-tokenizer-large';
const tokenizer = Tokenizer.fromJson(
  'tokenizer.json',
  readFileSync(`models/${MODEL}/tokenizer.json`, 'utf8'),
  readFileSync(`models/${MODEL}/tokenizer_config.json`, 'utf8'),
);
const config = JSON.parse(readFileSync(`models/${MODEL}/tokenizer_config.json`, 'utf8')) as { chat_template: string };

let cache: string;
let server: SignalServer;
let url: string;
let vocab: number;

beforeAll(async () => {
  cache = mkdtempSync(join(tmpdir(), 'webswarm-tokenizer-routes-'));
  const { dir, manifest } = await ensureStages(`models/${MODEL}`, { stages: 1 }, cache);
  vocab = manifest.model.vocabSize;
  server = createSignalServer({
    port: 0,
    host: '127.0.0.1',
    webRoot: null,
    models: [{ dir, manifest, key: partitionKey(manifest.model.numLayers, { stages: 1 }) }],
    redundancy: 1,
    ratePerMinute: RATE,
    apiKeys: [KEY, LARGE_KEY],
  });
  await server.ready;
  url = server.address().url;
}, 60_000);

afterAll(async () => {
  await server?.close();
  if (cache !== undefined) rmSync(cache, { recursive: true, force: true });
});

async function call(path: string, body?: unknown, init: { key?: string | null; method?: string; raw?: string } = {}) {
  const key = init.key === undefined ? KEY : init.key;
  const res = await fetch(`${url}${path}`, {
    method: init.method ?? (body === undefined && init.raw === undefined ? 'GET' : 'POST'),
    headers: { 'content-type': 'application/json', ...(key === null ? {} : { authorization: `Bearer ${key}` }) },
    ...(body === undefined && init.raw === undefined ? {} : { body: init.raw ?? JSON.stringify(body) }),
  });
  return { status: res.status, headers: res.headers, json: (await res.json()) as Record<string, unknown> };
}
const tokenize = async (prompt: string) => (await call('/tokenize', { prompt, add_special_tokens: false })).json.tokens as number[];

describe("vLLM's tokenizer routes", () => {
  it('answer the two calls lm-evaluation-harness makes to use the server’s tokenizer, with the model’s special tokens', async () => {
    const info = await call('/tokenizer_info');
    expect(info.status).toBe(200);
    expect(info.json).toEqual({
      model: MODEL,
      eos_token: '<|endoftext|>',
      bos_token: null,
      pad_token: null,
      chat_template: config.chat_template,
      vocab_size: vocab,
      model_max_length: server.coordinator?.maxPositions,
      add_special_tokens: false,
    });
    const t = await call('/tokenize', { prompt: 'test', add_special_tokens: false });
    expect(t.status).toBe(200);
    expect(t.json).toEqual({
      count: tokenizer.encode('test').length,
      max_model_len: server.coordinator?.maxPositions,
      tokens: tokenizer.encode('test'),
    });
    // Its end-of-text id: the first id of the eos token's text (RemoteTokenizer.eos_token_id).
    expect(await tokenize('<|endoftext|>')).toEqual([0]);
    // Open to other sites' scripts, as /v1 is.
    expect(t.headers.get('access-control-allow-origin')).toBe('*');
  });

  it('give the ids the model’s tokenizer gives (those /v1/completions runs), and their text back', async () => {
    for (const text of ['It is a truth universally acknowledged', '  two  spaces\nand a line', 'été — “quoted” ✓', '']) {
      const ids = await tokenize(text);
      expect(ids, text).toEqual(tokenizer.encode(text));
      if (ids.length === 0) continue;
      const back = await call('/detokenize', { tokens: ids, model: MODEL });
      expect(back).toMatchObject({ status: 200, json: { prompt: tokenizer.decode(ids) } });
    }
    // add_special_tokens changes nothing: the completions add none either.
    expect((await call('/tokenize', { prompt: 'Emma', add_special_tokens: true })).json.tokens).toEqual(tokenizer.encode('Emma'));
    // Ids the tokenizer would not give for their text decode all the same.
    const split = [...'Emma'].flatMap((c) => tokenizer.encode(c));
    expect((await call('/detokenize', { tokens: split })).json.prompt).toBe('Emma');
  });

  it('tokenize a chat (vLLM’s `messages`) as /v1/chat/completions renders it: by the model’s template, then as a prompt', async () => {
    const chat = [
      { role: 'developer', content: 'At Longbourn.' },
      { role: 'user', content: 'Good morning.' },
      { role: 'assistant', content: 'Good morning to you.' },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'Is your ' },
          { type: 'text', text: 'sister at home?' },
        ],
      },
    ];
    // austen-2m's template written out by hand (developer is the system role, text parts are joined), ...
    const rendered =
      'At Longbourn.\n\nThe visitor said, "Good morning."\n\nElizabeth replied, "Good morning to you."\n\n' +
      'The visitor said, "Is your sister at home?"\n\n';
    const reply = `${rendered}Elizabeth replied, "`;
    // ... and as the oracle's own Jinja renders it.
    const parsed = parseChatBody({ messages: chat }, [MODEL]);
    if ('status' in parsed) throw new Error(parsed.message);
    expect(tokenizer.chatPrompt(parsed.messages)).toBe(reply);
    const t = await call('/tokenize', { model: MODEL, messages: chat });
    expect(t).toMatchObject({
      status: 200,
      json: { count: tokenizer.encode(reply).length, max_model_len: server.coordinator?.maxPositions, tokens: tokenizer.encode(reply) },
    });
    // vLLM's defaults said out loud change nothing, nor does add_special_tokens (a chat completion adds none).
    const same = {
      messages: chat,
      add_generation_prompt: true,
      continue_final_message: false,
      add_special_tokens: true,
      return_token_strs: false,
      tools: null,
      chat_template_kwargs: {},
    };
    expect((await call('/tokenize', same)).json).toEqual(t.json);
    // Without the generation prompt: the chat up to its last message's end.
    const closed = await call('/tokenize', { messages: chat, add_generation_prompt: false });
    expect(closed.json.tokens).toEqual(tokenizer.encode(rendered));
    expect(closed.json.count).toBe(tokenizer.encode(rendered).length);
  });

  it('refuse a bad chat as /v1/chat/completions refuses it, field for field', () => {
    const ok = { role: 'user', content: 'hi' };
    const bads: [unknown, string][] = [
      [[], 'messages'],
      ['hi', 'messages'],
      [new Array(MAX_CHAT_MESSAGES + 1).fill(ok), 'messages'],
      [
        [
          { role: 'user', content: 'x'.repeat(4001) },
          { role: 'user', content: 'x'.repeat(4000) },
        ],
        'messages',
      ],
      [[ok, 'hi'], 'messages[1]'],
      [[{ role: 'tool', content: 'x' }], 'messages[0].role'],
      [[{ content: 'x' }], 'messages[0].role'],
      [[{ role: 'user', content: 7 }], 'messages[0].content'],
      [[{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }], 'messages[0].content'],
    ];
    for (const [messages, param] of bads) {
      const chat = parseChatBody({ messages }, [MODEL]);
      expect(chat, JSON.stringify(messages).slice(0, 80)).toMatchObject({ status: 400, param });
      expect(parseTokenizeBody({ messages }, [MODEL])).toEqual(chat);
    }
    expect(parseTokenizeBody({ messages: new Array(MAX_CHAT_MESSAGES).fill(ok) }, [MODEL])).toMatchObject({ addGenerationPrompt: true });
  });

  it('refuse what is not theirs to take, by field, before touching the tokenizer', async () => {
    const refused = async (path: string, body: unknown, status: number, param: string | null, message: string | RegExp) => {
      const r = await call(path, body);
      expect(r.status, JSON.stringify(body)).toBe(status);
      const error = r.json.error as { param: string | null; message: string };
      expect(error.param).toBe(param);
      expect(error.message).toMatch(message);
    };
    await refused(
      '/detokenize',
      { tokens: [1, vocab] },
      400,
      'tokens',
      `tokens: token ${vocab} (at position 1) is not in the model's vocabulary of ${vocab}`,
    );
    await refused('/detokenize', { tokens: [3, -1] }, 400, 'tokens', 'tokens[1] is -1: a token id is an integer ≥ 0');
    await refused('/detokenize', { tokens: [] }, 400, 'tokens', `tokens must be a list of 1..${MAX_PROMPT_IDS} token ids`);
    await refused('/detokenize', { tokens: 'Emma' }, 400, 'tokens', /must be a list/);
    await refused('/detokenize', { tokens: new Array(MAX_PROMPT_IDS + 1).fill(1) }, 400, 'tokens', /at most 8000$/);
    await refused(
      '/tokenize',
      { prompt: 7 },
      400,
      'prompt',
      /^prompt must be a string of at most \d+ characters \(or send messages, a chat\)$/,
    );
    // Neither form, or both.
    await refused('/tokenize', { add_special_tokens: false }, 400, 'prompt', /^prompt must be a string/);
    const chat = [{ role: 'user', content: 'hi' }];
    await refused(
      '/tokenize',
      { prompt: 'x', messages: chat },
      400,
      'messages',
      /either prompt \(a text\) or messages \(a chat\), not both/,
    );
    // A bad chat is named as /v1/chat/completions names it (every case: the test above).
    await refused(
      '/tokenize',
      { messages: [{ role: 'tool', content: 'x' }] },
      400,
      'messages[0].role',
      /^messages\[0\] is a tool message: the swarm does not call tools$/,
    );
    await refused('/tokenize', { messages: [] }, 400, 'messages', /^messages must be a list of 1\.\.512 messages$/);
    // The chat form's options: what /v1/chat/completions would not render is refused by name.
    await refused('/tokenize', { messages: chat, add_generation_prompt: 'no' }, 400, 'add_generation_prompt', /must be a boolean/);
    await refused('/tokenize', { messages: chat, continue_final_message: 1 }, 400, 'continue_final_message', /must be a boolean/);
    await refused('/tokenize', { messages: chat, continue_final_message: true }, 400, 'continue_final_message', /must be false/);
    await refused('/tokenize', { messages: chat, tools: [] }, 400, 'tools', /^tools is not supported/);
    await refused('/tokenize', { messages: chat, chat_template: '{{ x }}' }, 400, 'chat_template', /^chat_template is not supported/);
    await refused('/tokenize', { messages: chat, chat_template_kwargs: { a: 1 } }, 400, 'chat_template_kwargs', /not supported/);
    await refused('/tokenize', { messages: chat, mm_processor_kwargs: {} }, 400, 'mm_processor_kwargs', /not supported/);
    // vLLM's token strings are not given, in either form.
    for (const body of [{ prompt: 'x' }, { messages: chat }]) {
      await refused('/tokenize', { ...body, return_token_strs: true }, 400, 'return_token_strs', /must be false/);
      await refused('/tokenize', { ...body, return_token_strs: 1 }, 400, 'return_token_strs', /must be a boolean/);
    }
    await refused('/tokenize', { prompt: 'x'.repeat(8001) }, 400, 'prompt', /^prompt must be a string/);
    await refused(
      '/tokenize',
      { prompt: 'x', add_special_tokens: 'yes' },
      400,
      'add_special_tokens',
      'add_special_tokens must be a boolean',
    );
    await refused('/tokenize', { prompt: 'x', model: 'gpt-4' }, 404, 'model', /^The model "gpt-4" does not exist here/);
    await refused('/tokenize', ['x'], 400, null, 'the body must be a JSON object');
    const notJson = await call('/tokenize', undefined, { raw: '{"prompt": ' });
    expect(notJson).toMatchObject({ status: 400, json: { error: { code: 'invalid_json' } } });
    // The methods vLLM takes, and the keys /v1 takes.
    // A 405 names the methods the route takes (RFC 9110 asks for Allow).
    const get = await call('/tokenize', undefined, { method: 'GET' });
    expect([get.status, get.headers.get('allow')]).toEqual([405, 'POST']);
    const post = await call('/tokenizer_info', { x: 1 });
    expect([post.status, post.headers.get('allow')]).toEqual([405, 'GET, HEAD']);
    for (const path of ['/tokenizer_info', '/tokenize'])
      expect((await call(path, path === '/tokenize' ? { prompt: 'x' } : undefined, { key: null })).status, path).toBe(401);
    expect((await call('/tokenize', { prompt: 'x' }, { key: 'sk-wrong' })).status).toBe(401);
  });

  it('spend an allowance of their own: the API’s spent, they still answer, and the API’s is untouched by them', async () => {
    // A generation request with an empty body is admitted (and then refused for its body): it spends the API's allowance.
    const generate = async () => (await call('/v1/completions', {})).status;
    const statuses: number[] = [];
    for (let i = 0; i <= RATE; i++) statuses.push(await generate());
    expect(statuses.slice(0, RATE).every((st) => st === 400)).toBe(true);
    expect(statuses.at(-1)).toBe(429);
    expect((await call('/tokenize', { prompt: 'Emma' })).status).toBe(200);
    expect((await call('/tokenizer_info')).status).toBe(200);
    expect(await generate()).toBe(429);
  });

  it('count a large call as the calls its characters make (one a 1 000): 8 000 characters are 9 calls; a chat’s characters twice', async () => {
    // The key's allowance: 20 × RATE = 100 calls a minute. Before, each of these counted one, and one address held the
    // server's event loop with 20 of them a second.
    const text = 'Emma Woodhouse, handsome, clever, and rich. '.repeat(200).slice(0, 8000);
    const big = () => call('/tokenize', { prompt: text }, { key: LARGE_KEY });
    const statuses: number[] = [];
    for (let i = 0; i < 11; i++) statuses.push((await big()).status);
    expect(statuses).toEqual(Array(11).fill(200));
    const refused = await big();
    expect(refused.status).toBe(429);
    expect(refused.json.error).toMatchObject({
      code: 'rate_limit_exceeded',
      param: 'prompt',
      message: expect.stringMatching(
        /^this call counts as 9 tokenizer calls \(one a 1000 characters or token ids\): rate limit of 100 tokenizer and listing calls per minute reached/,
      ),
    });
    expect(refused.headers.get('retry-after')).not.toBeNull();
  });

  it('weigh a call by its size: text by its characters, a chat by its characters twice and its messages, /detokenize by its ids', () => {
    expect(tokenizerCalls({ prompt: '' })).toBe(1);
    expect(tokenizerCalls({ prompt: 'x'.repeat(999) })).toBe(1);
    expect(tokenizerCalls({ prompt: 'x'.repeat(8000) })).toBe(9);
    expect(tokenizerCalls({ messages: [{ role: 'user', content: 'x'.repeat(496) }], addGenerationPrompt: true })).toBe(2);
    expect(tokenizerCalls({ tokens: Array(8000).fill(1) })).toBe(9);
    // Each message is rendered whatever it holds: 512 empty ones weigh 267 calls (before: 5, for about 105 ms of
    // the event loop, where 5 calls of text hold it about 2 ms: bench/stage-files.ts).
    const empty = Array.from({ length: 512 }, () => ({ role: 'user' as const, content: '' }));
    expect(tokenizerCalls({ messages: empty, addGenerationPrompt: true })).toBe(267);
  });
});
