// Attacks on prompts sent as token ids (POST /v1/completions), from outside as a hostile client would send them,
// against a real server whose two volunteers run the real replica (testing/api-swarm.ts). The reference runner is
// the oracle of the tokens, the tokenizer's decoding of the ids the oracle of the text.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReferenceRunner } from '../reference/reference-runner.js';
import type { SignalServer } from '../server.js';
import { API_MODEL, type ApiSwarm, startApiSwarm } from '../testing/api-swarm.js';

const MODEL = API_MODEL;
/** At most this many generations of one client at once: a request that leaked one would be refused n = 4 later. */
const MAX_CONCURRENT = 4;
const GREEDY = { temperature: 0, topK: 0, topP: 1, seed: 0 } as const;

let rig: ApiSwarm | undefined;
let server: SignalServer;
let reference: ReferenceRunner;

beforeAll(async () => {
  rig = await startApiSwarm('webswarm-prompt-ids-', { redundancy: 2, apiMaxConcurrent: MAX_CONCURRENT });
  ({ server, reference } = rig);
}, 60_000);

afterAll(() => rig?.close());

interface Logprobs {
  tokens: string[];
  token_logprobs: (number | null)[];
  text_offset: number[];
}
interface Answer {
  choices: { text: string; logprobs: Logprobs | null; finish_reason: string }[];
  webswarm: { tokens: number[]; prompt_tokens: number[] };
  error?: { message: string; param: string | null };
}

/** POSTs a body as it is written (a raw string keeps what JSON.stringify would change: 1e3, -0, 1e400). */
async function post(body: string | Record<string, unknown>): Promise<{ status: number; json: Answer }> {
  const r = await fetch(`${server.address().url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify({ model: MODEL, ...body }),
  });
  return { status: r.status, json: (await r.json()) as Answer };
}

/** The volunteers, each still ready and never judged to disagree. */
function healthy(): void {
  const listing = server.coordinator?.volunteers() ?? [];
  expect(listing).toHaveLength(2);
  expect(listing.map((v) => [v.ready, v.disagreed])).toEqual(listing.map(() => [true, 0]));
}

const idsOf = (text: string) => reference.tokenizer.encode(text);

describe('prompts of token ids from a hostile client', () => {
  it('ids at the vocabulary’s edges and in JSON’s odd spellings: the last id runs as the reference’s, the rest are 400s naming what was sent', async () => {
    const vocab = reference.manifest.model.vocabSize;
    const last = await post({ prompt: [vocab - 1], max_tokens: 3, temperature: 0 });
    expect(last.status).toBe(200);
    expect(last.json.webswarm.tokens).toEqual((await reference.generateIds([vocab - 1], 3, GREEDY)).tokens);
    // 1e3 and -0 are integers in JSON's grammar: the ids 1000 and 0.
    for (const [raw, id] of [
      ['1e3', 1000],
      ['-0', 0],
    ] as const) {
      const r = await post(`{"model":"${MODEL}","prompt":[${raw}],"max_tokens":2,"temperature":0}`);
      expect(r.status, raw).toBe(200);
      expect(r.json.webswarm.prompt_tokens).toEqual([id]);
      expect(r.json.webswarm.tokens).toEqual((await reference.generateIds([id], 2, GREEDY)).tokens);
    }
    for (const [raw, message] of [
      [`${vocab}`, `prompt: token ${vocab} (at position 0) is not in the model's vocabulary of ${vocab}`],
      ['2147483648', `prompt: token 2147483648 (at position 0) is not in the model's vocabulary of ${vocab}`],
      ['9007199254740991', `prompt: token 9007199254740991 (at position 0) is not in the model's vocabulary of ${vocab}`],
      ['1.5', 'prompt[0] is 1.5: a token id is an integer ≥ 0'],
      // Past float64's range JSON.parse gives Infinity, which the message names (JSON.stringify would write null).
      ['1e400', 'prompt[0] is Infinity: a token id is an integer ≥ 0'],
      ['-1e400', 'prompt[0] is -Infinity: a token id is an integer ≥ 0'],
    ] as const) {
      const r = await post(`{"model":"${MODEL}","prompt":[${raw}],"max_tokens":2}`);
      expect(r.status, raw).toBe(400);
      expect(r.json.error, raw).toMatchObject({ param: 'prompt', message });
    }
    healthy();
  });

  it('bytes that break a character in the prompt: each echoed token’s text_offset is where its text stands in the echoed text', async () => {
    // 0xC3 begins a two-byte character that "om" does not continue: the text is U+FFFD, then "om".
    const [lead, cont] = idsOf('é') as [number, number];
    // The last two end inside é: scored only, its U+FFFD is still the text's last character.
    for (const prompt of [
      [lead, ...idsOf('om')],
      [...idsOf('caf'), lead, lead, ...idsOf(' and'), cont, ...idsOf('x')],
      [...idsOf('caf'), lead],
      [lead],
    ]) {
      const r = await post({ prompt, max_tokens: 0, echo: true, logprobs: 0 });
      expect(r.status).toBe(200);
      const { text, logprobs } = r.json.choices[0] as Answer['choices'][number];
      expect(text).toBe(reference.tokenizer.decode(prompt));
      const lp = logprobs as Logprobs;
      expect(lp.tokens).toHaveLength(prompt.length);
      // A token of letters and spaces stands at its offset.
      for (const [i, t] of lp.tokens.entries())
        if (/^[ a-z]+$/i.test(t))
          expect(
            text.slice(lp.text_offset[i]).startsWith(t),
            `${JSON.stringify(t)} at ${lp.text_offset[i]} in ${JSON.stringify(text)}`,
          ).toBe(true);
      for (let i = 1; i < lp.text_offset.length; i++) expect(lp.text_offset[i]).toBeGreaterThanOrEqual(lp.text_offset[i - 1] as number);
    }
    healthy();
  });

  it('text_offset counts characters as OpenAI’s Python does (code points): an emoji counts once, in the prompt and the completion', async () => {
    const prompt = 'Emma 👩 and Jane 🎉 walked';
    expect([...prompt].length).toBeLessThan(prompt.length);
    const r = await post({
      prompt,
      max_tokens: 4,
      echo: true,
      logprobs: 0,
      temperature: 0,
      logit_bias: { [idsOf('🎉')[0] as number]: 100 },
    });
    expect(r.status).toBe(200);
    const { text, logprobs } = r.json.choices[0] as Answer['choices'][number];
    const lp = logprobs as Logprobs;
    const chars = [...text];
    // Every token of whole characters stands at its offset in the text counted in code points; the offsets rise.
    let checked = 0;
    for (const [i, t] of lp.tokens.entries()) {
      if (t.includes('\\x')) continue;
      expect(chars.slice(lp.text_offset[i]).join('').startsWith(t), `${JSON.stringify(t)} at ${lp.text_offset[i]}`).toBe(true);
      checked += 1;
    }
    expect(checked).toBeGreaterThan(5);
    for (let i = 1; i < lp.text_offset.length; i++) expect(lp.text_offset[i]).toBeGreaterThanOrEqual(lp.text_offset[i - 1] as number);
    // The completion's first token stands after the prompt's characters (its UTF-16 length would be 2 more).
    const ids = reference.tokenizer.encode(prompt);
    expect(lp.text_offset[ids.length]).toBe([...prompt].length);
    // The completion holds an emoji too (biased to 🎉's first byte, greedy: the reference's tokens).
    expect(r.json.webswarm.tokens[0]).toBe(idsOf('🎉')[0]);
  });

  it('a prompt that ends inside a character its completion finishes: the echoed text is the decoding of every id, streamed or not', async () => {
    const [lead, cont] = idsOf('é') as [number, number];
    const prompt = [...idsOf('caf'), lead];
    // The completion's first token finishes the character (forced by logit_bias; greedy, so the reference agrees).
    const body = { prompt, max_tokens: 2, echo: true, logprobs: 1, temperature: 0, logit_bias: { [cont]: 100 } };
    const r = await post(body);
    expect(r.status).toBe(200);
    const tokens = r.json.webswarm.tokens;
    expect(tokens[0]).toBe(cont);
    const whole = reference.tokenizer.decode([...prompt, ...tokens]);
    expect(whole.startsWith('café')).toBe(true);
    const choice = r.json.choices[0] as Answer['choices'][number];
    expect(choice.text).toBe(whole);
    const lp = choice.logprobs as Logprobs;
    // The token that finishes é stands where é does.
    expect(lp.text_offset.slice(3, 5)).toEqual([3, 3]);
    // Without echo the completion's text begins with the character it finished, as the prompt's text ends before it.
    const alone = await post({ ...body, echo: false });
    expect(alone.json.choices[0]?.text).toBe(whole.slice('caf'.length));
    // From the prompt's start: é's finishing token at 3, the next (a lone continuation byte, U+FFFD) after é.
    expect(alone.json.choices[0]?.logprobs?.text_offset).toEqual([3, 4]);
    // Streamed: the chunks' texts join to the same text.
    const res = await fetch(`${server.address().url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, ...body, stream: true }),
    });
    const events = (await res.text())
      .split('\n\n')
      .filter((e) => e.startsWith('data: {'))
      .map((e) => JSON.parse(e.slice('data: '.length)) as { choices: { text: string }[] });
    expect(events.map((e) => e.choices[0]?.text ?? '').join('')).toBe(whole);
    healthy();
  });

  it('end-of-text ids as the prompt, with echo, n, best_of, stream and stop: answers as the reference’s, no slot kept, no volunteer judged', async () => {
    const eos = 0;
    expect(reference.tokenizer.decode([eos])).toBe('<|endoftext|>');
    // Scored only, for n = 2: the one id is echoed with nothing predicting it.
    const scored = await post({ prompt: [eos], max_tokens: 0, echo: true, logprobs: 2, n: 2 });
    expect(scored.status).toBe(200);
    for (const c of scored.json.choices) {
      expect(c.text).toBe('<|endoftext|>');
      expect(c.logprobs).toMatchObject({ tokens: ['<|endoftext|>'], token_logprobs: [null], text_offset: [0] });
    }
    // What lm-evaluation-harness sends for a log-likelihood: max_tokens 1, echo, logprobs; best_of 3 at temperature 0.
    const prompt = [eos, eos, ...idsOf('It is'), eos];
    const r = await post({ prompt, max_tokens: 1, echo: true, logprobs: 1, best_of: 3, temperature: 0 });
    expect(r.status).toBe(200);
    expect(r.json.webswarm.tokens).toEqual((await reference.generateIds(prompt, 1, GREEDY)).tokens);
    const lp = r.json.choices[0]?.logprobs as Logprobs;
    expect(lp.tokens).toHaveLength(prompt.length + 1);
    expect(lp.token_logprobs[0]).toBeNull();
    // A stop sequence that the echoed prompt holds ends nothing: only the completion's text is searched.
    const stopped = await post({ prompt: [eos], max_tokens: 3, echo: true, temperature: 0, stop: ['<|endoftext|>'] });
    expect(stopped.status).toBe(200);
    expect(stopped.json.webswarm.tokens).toEqual((await reference.generateIds([eos], 3, GREEDY)).tokens);
    // Refused requests of n = 4 (an id past the vocabulary; a prompt past the model's positions, refused once its
    // choices hold their slots) keep none of the client's slots: n = 4 runs afterwards.
    const positions = reference.manifest.model.maxPositions;
    for (const bad of [
      { prompt: [1, 2048], max_tokens: 1, n: 4 },
      { prompt: new Array(positions).fill(300), max_tokens: 1, n: 4, echo: true },
      { prompt: new Array(positions).fill(300), max_tokens: 1, n: 4, stream: true },
    ])
      expect((await post(bad)).status).toBe(400);
    const four = await post({ prompt: [eos], max_tokens: 1, n: MAX_CONCURRENT });
    expect(four.status).toBe(200);
    expect(four.json.choices).toHaveLength(MAX_CONCURRENT);
    healthy();
  });

  it('as many ids as the model has positions, less the one token asked for: the reference’s token', async () => {
    const positions = reference.manifest.model.maxPositions;
    const prompt = Array.from({ length: positions - 1 }, (_, i) => 1 + ((i * 37) % 2000));
    const r = await post({ prompt, max_tokens: 1, temperature: 0 });
    expect(r.status).toBe(200);
    expect(r.json.webswarm.tokens).toEqual((await reference.generateIds(prompt, 1, GREEDY)).tokens);
    const over = await post({ prompt: [...prompt, 5], max_tokens: 1 });
    expect(over.status).toBe(400);
    expect(over.json.error).toMatchObject({
      param: 'prompt',
      message: `prompt (${positions} tokens) + max_tokens (1) exceeds the model's maximum context length of ${positions} tokens`,
    });
    // A chat's prompt is its messages: the same refusal names them.
    const chat = await fetch(`${server.address().url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'Emma. '.repeat(400) }], max_tokens: 1 }),
    });
    expect(chat.status).toBe(400);
    expect(((await chat.json()) as Answer).error).toMatchObject({
      param: 'messages',
      message: expect.stringMatching(/exceeds the model's maximum context length of \d+ tokens$/),
    });
    healthy();
  });
});
