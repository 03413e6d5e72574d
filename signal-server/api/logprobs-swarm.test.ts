// Integration: log-probabilities from a real server on port 0 whose two
// volunteers are socket.io-clients in Node running the real replica
// (ReplicaCore) on onnxruntime-web's WASM backend (testing/node-volunteer.ts),
// one stage each (one stage needs no data channels). The reference runner's logits are the oracle.
// The default model (austen-2m), so that the answers are text whose tokens
// are whole characters (token-text.test.ts covers tokens that split one).
// Also: a chat's prompt tokens against POST /tokenize's (tokenizer-routes.test.ts has no volunteers).
import type OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { argmax, GREEDY as GREEDY_SAMPLING } from '../../shared/model/sampling.js';
import type { ReferenceRunner } from '../reference/reference-runner.js';
import type { SignalServer } from '../server.js';
import { API_MODEL, type ApiSwarm, startApiSwarm } from '../testing/api-swarm.js';
import { logprobOf, promptLogprobs } from '../testing/prompt-logprobs.js';

const MODEL = API_MODEL;
const PROMPT = 'It is a truth universally acknowledged';
const MESSAGES = [{ role: 'user' as const, content: 'Good morning. Is your sister at home?' }];
const TOKENS = 8;
/** The API's logits come from the same WASM kernels as the reference's: equal to float32 rounding. */
const TOLERANCE = 1e-5;

let rig: ApiSwarm | undefined;
let server: SignalServer;
let reference: ReferenceRunner;
let client: OpenAI;

beforeAll(async () => {
  rig = await startApiSwarm('webswarm-logprobs-', { redundancy: 2, apiMaxConcurrent: 0 });
  ({ server, reference, client } = rig);
}, 60_000);

afterAll(() => rig?.close());

/** Independently of the server's code: log(exp(x_t) / Σ exp(x_j)) of each row the reference gives after prompt + tokens. */
async function referenceLogprobs(prompt: string, tokens: readonly number[]): Promise<((t: number) => number)[]> {
  const vocab = reference.manifest.model.vocabSize;
  const session = reference.session();
  const rows: ((t: number) => number)[] = [];
  let input = reference.tokenizer.encode(prompt);
  for (const t of tokens) {
    const all = await session.forward(input);
    // The last position's row (the head computes no other).
    const row = Array.from(all.subarray(all.length - vocab));
    const total = row.reduce((s, v) => s + Math.exp(v), 0);
    rows.push((id) => Math.log(Math.exp(row[id] as number) / total));
    input = [t];
  }
  return rows;
}

const greedy = async (prompt: string) =>
  (await reference.generateIds(reference.tokenizer.encode(prompt), TOKENS, { temperature: 0, topK: 0, topP: 1, seed: 0 })).tokens;
const tokensOf = (r: unknown) => (r as { webswarm: { tokens: number[] } }).webswarm.tokens;
const utf8 = new TextDecoder();
/** Tokens and votes the server has counted (/metrics): votes are agreed or missing ones. */
async function counts(): Promise<{ tokens: number; votes: number }> {
  const text = await (await fetch(`${server.address().url}/metrics`)).text();
  const of = (series: string) => Number(new RegExp(`^${series} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
  return {
    tokens: of('webswarm_tokens_total'),
    votes: of('webswarm_votes_total\\{outcome="agreed"\\}') + of('webswarm_votes_total\\{outcome="missing"\\}'),
  };
}

describe('log-probabilities through a swarm of two replicas', () => {
  it('chat: each greedy token has the top log-probability, equal to the reference’s, with its alternatives and bytes', async () => {
    const prompt = server.coordinator?.chatPrompt(MESSAGES) as string;
    const r = await client.chat.completions.create({
      model: MODEL,
      messages: MESSAGES,
      max_tokens: TOKENS,
      temperature: 0,
      logprobs: true,
      top_logprobs: 5,
    });
    const tokens = tokensOf(r);
    expect(tokens).toEqual(await greedy(prompt));
    const content = r.choices[0]?.logprobs?.content ?? [];
    expect(content).toHaveLength(TOKENS);
    const want = await referenceLogprobs(prompt, tokens);
    for (const [i, e] of content.entries()) {
      expect(e.top_logprobs).toHaveLength(5);
      expect(e.top_logprobs[0]).toEqual({ token: e.token, logprob: e.logprob, bytes: e.bytes });
      for (let j = 1; j < 5; j++) expect(e.top_logprobs[j]?.logprob).toBeLessThanOrEqual(e.top_logprobs[j - 1]?.logprob as number);
      expect(Math.abs(e.logprob - (want[i]?.(tokens[i] as number) as number))).toBeLessThan(TOLERANCE);
    }
    // The tokens' bytes make up the answer.
    expect(utf8.decode(Uint8Array.from(content.flatMap((e) => e.bytes ?? [])))).toBe(r.choices[0]?.message.content);
  });

  it('chat: a sampled token gets the model’s log-probability (temperature 1), not the tempered one; streamed chunks carry the same', async () => {
    const body = { model: MODEL, messages: MESSAGES, max_tokens: TOKENS, temperature: 0.7, seed: 11, logprobs: true } as const;
    const r = await client.chat.completions.create(body);
    const tokens = tokensOf(r);
    const want = await referenceLogprobs(server.coordinator?.chatPrompt(MESSAGES) as string, tokens);
    const content = r.choices[0]?.logprobs?.content ?? [];
    for (const [i, e] of content.entries()) {
      expect(e.top_logprobs).toEqual([]);
      expect(Math.abs(e.logprob - (want[i]?.(tokens[i] as number) as number))).toBeLessThan(TOLERANCE);
    }
    const streamed: OpenAI.ChatCompletionTokenLogprob[] = [];
    for await (const chunk of await client.chat.completions.create({ ...body, stream: true })) {
      const lp = chunk.choices[0]?.logprobs?.content;
      if (lp !== undefined && lp !== null) {
        expect(lp).toHaveLength(1);
        streamed.push(...lp);
      }
    }
    expect(streamed).toEqual(content);
  });

  it('completions: tokens, their log-probabilities, the top 3 plus the generated one, and offsets from the prompt’s start', async () => {
    const r = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: TOKENS, temperature: 0, logprobs: 3 });
    const tokens = tokensOf(r);
    expect(tokens).toEqual(await greedy(PROMPT));
    const lp = r.choices[0]?.logprobs;
    const text = r.choices[0]?.text as string;
    expect(lp?.tokens?.join('')).toBe(text);
    expect(lp?.text_offset?.[0]).toBe(PROMPT.length);
    for (let i = 1; i < TOKENS; i++) expect(lp?.text_offset?.[i]).toBe(PROMPT.length + (lp?.tokens?.slice(0, i).join('').length ?? 0));
    const want = await referenceLogprobs(PROMPT, tokens);
    for (let i = 0; i < TOKENS; i++) {
      const top = lp?.top_logprobs?.[i] ?? {};
      const own = lp?.token_logprobs?.[i] as number;
      expect(Math.abs(own - (want[i]?.(tokens[i] as number) as number))).toBeLessThan(TOLERANCE);
      // Greedy: the generated token is the most likely, so it is one of the 3.
      expect(Object.keys(top)).toHaveLength(3);
      expect(top[lp?.tokens?.[i] as string]).toBe(own);
      expect(Math.max(...Object.values(top))).toBe(own);
    }
    // Streamed: one token per chunk, the same arrays when joined.
    const joined = { tokens: [] as string[], token_logprobs: [] as number[], text_offset: [] as number[] };
    const stream = await client.completions.create({
      model: MODEL,
      prompt: PROMPT,
      max_tokens: TOKENS,
      temperature: 0,
      logprobs: 3,
      stream: true,
    });
    for await (const chunk of stream) {
      const c = chunk.choices[0]?.logprobs;
      if (c === null || c === undefined) continue;
      joined.tokens.push(...(c.tokens ?? []));
      joined.token_logprobs.push(...(c.token_logprobs ?? []));
      joined.text_offset.push(...(c.text_offset ?? []));
    }
    expect(joined).toEqual({ tokens: lp?.tokens, token_logprobs: lp?.token_logprobs, text_offset: lp?.text_offset });
  });

  it("completions with echo: the prompt first, each of its tokens after the first with the log-probability the swarm voted on at its position, the reference's", async () => {
    const ids = reference.tokenizer.encode(PROMPT);
    const want = await promptLogprobs(reference, ids);
    type Echoed = {
      webswarm: { tokens: number[]; verified: boolean; prompt_votes: { position: number; token: number; verified: boolean }[] };
    };
    const check = (lp: OpenAI.Completions.Completion['choices'][number]['logprobs'], generated: number) => {
      expect(lp?.tokens).toHaveLength(ids.length + generated);
      expect(lp?.tokens?.slice(0, ids.length).join('')).toBe(PROMPT);
      // Nothing predicts the first token; the text offsets count from the prompt's start.
      expect(lp?.token_logprobs?.[0]).toBeNull();
      expect(lp?.top_logprobs?.[0]).toBeNull();
      expect(lp?.text_offset?.[0]).toBe(0);
      for (let i = 1; i < ids.length; i++) {
        const own = lp?.token_logprobs?.[i] as number;
        expect(Math.abs(own - (want[i - 1] as number)), `prompt position ${i}`).toBeLessThan(TOLERANCE);
        expect(lp?.text_offset?.[i]).toBe(lp?.tokens?.slice(0, i).join('').length);
        // The 2 most likely, and the prompt's own token (among them or not).
        const top = lp?.top_logprobs?.[i] ?? {};
        expect(top[lp?.tokens?.[i] as string]).toBe(own);
        expect(Object.keys(top).length).toBeGreaterThanOrEqual(2);
        expect(Object.keys(top).length).toBeLessThanOrEqual(3);
      }
    };
    // Scored only (what evaluation harnesses ask for): max_tokens 0. No token generated, none counted as one; the
    // positions' votes count as votes (each position: both replicas agreed, or one not yet answered).
    const before = await counts();
    expect(before.tokens).toBeGreaterThan(0);
    const scored = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 0, echo: true, logprobs: 2 });
    expect(await counts()).toEqual({ tokens: before.tokens, votes: before.votes + 2 * (ids.length - 1) });
    expect(scored.choices[0]?.text).toBe(PROMPT);
    expect(scored.choices[0]?.finish_reason).toBe('length');
    expect(scored.usage).toMatchObject({ prompt_tokens: ids.length, completion_tokens: 0 });
    check(scored.choices[0]?.logprobs ?? null, 0);
    const ext = (scored as unknown as Echoed).webswarm;
    expect(ext.tokens).toEqual([]);
    expect(ext.prompt_votes.map((v) => [v.position, v.token, v.verified])).toEqual(ids.slice(1).map((t, i) => [i + 1, t, true]));
    expect(ext.verified).toBe(true);

    // Scored, then generated: the tokens after the prompt are the ones a request without echo gets.
    const both = await client.completions.create({
      model: MODEL,
      prompt: PROMPT,
      max_tokens: TOKENS,
      temperature: 0,
      echo: true,
      logprobs: 2,
    });
    const tokens = tokensOf(both);
    expect(tokens).toEqual(await greedy(PROMPT));
    const lp = both.choices[0]?.logprobs ?? null;
    check(lp, TOKENS);
    expect(both.choices[0]?.text).toBe(PROMPT + (lp?.tokens?.slice(ids.length).join('') ?? ''));
    expect(lp?.text_offset?.[ids.length]).toBe(PROMPT.length);
    const after = await referenceLogprobs(PROMPT, tokens);
    for (let i = 0; i < TOKENS; i++)
      expect(Math.abs((lp?.token_logprobs?.[ids.length + i] as number) - (after[i]?.(tokens[i] as number) as number))).toBeLessThan(
        TOLERANCE,
      );

    // Streamed: the echoed prompt is the first chunk, with its log-probabilities; then a token a chunk.
    const chunks: { text: string; tokens: number }[] = [];
    const joined: (number | null)[] = [];
    const stream = await client.completions.create({
      model: MODEL,
      prompt: PROMPT,
      max_tokens: TOKENS,
      temperature: 0,
      echo: true,
      logprobs: 2,
      stream: true,
    });
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      if (c === undefined || c.logprobs === null || c.logprobs === undefined) continue;
      chunks.push({ text: c.text, tokens: c.logprobs.tokens?.length ?? 0 });
      joined.push(...(c.logprobs.token_logprobs ?? []));
    }
    expect(chunks[0]).toEqual({ text: PROMPT, tokens: ids.length });
    expect(chunks.slice(1).every((c) => c.tokens === 1)).toBe(true);
    expect(chunks.map((c) => c.text).join('')).toBe(both.choices[0]?.text);
    expect(joined).toEqual(lp?.token_logprobs);
  });

  it('n choices with echo: the prompt scored once, each choice echoing its log-probabilities and drawing its own tokens (seed + i)', async () => {
    const ids = reference.tokenizer.encode(PROMPT);
    const want = await promptLogprobs(reference, ids);
    // Each step's vote is counted once per replica (agreed, or not waited for): 2 a step here.
    const votes = async () => {
      const text = await (await fetch(`${server.address().url}/metrics`)).text();
      const of = (series: string) => Number(new RegExp(`^${series} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
      return of('webswarm_votes_total\\{outcome="agreed"\\}') + of('webswarm_votes_total\\{outcome="missing"\\}');
    };
    const promptOf = (lp: OpenAI.Completions.Completion['choices'][number]['logprobs'] | undefined) => {
      expect(lp?.token_logprobs?.[0]).toBeNull();
      const got = lp?.token_logprobs?.slice(1, ids.length) as number[];
      for (const [i, w] of want.entries()) expect(Math.abs((got[i] as number) - w), `position ${i + 1}`).toBeLessThan(TOLERANCE);
      return got;
    };
    type Choices = { webswarm: { verified: boolean; choices: { tokens: number[]; verified: boolean; prompt_votes: unknown[] }[] } };

    // Scored only: the prompt's steps once, however many choices.
    let before = await votes();
    const only = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 0, echo: true, logprobs: 1, n: 3 });
    expect(await votes()).toBe(before + 2 * (ids.length - 1));
    expect(only.choices.map((c) => c.text)).toEqual([PROMPT, PROMPT, PROMPT]);
    const scores = only.choices.map((c) => promptOf(c.logprobs));
    expect(scores[1]).toEqual(scores[0]);
    expect(scores[2]).toEqual(scores[0]);
    expect((only as unknown as Choices).webswarm.choices.map((c) => c.prompt_votes.length)).toEqual([
      ids.length - 1,
      ids.length - 1,
      ids.length - 1,
    ]);

    // Scored, then 3 draws: the prompt's steps once, then each choice's own; choice i the reference's draw for seed + i.
    const sampling = { temperature: 0.8, topK: 0, topP: 1 };
    before = await votes();
    const drawn = await client.completions.create({
      model: MODEL,
      prompt: PROMPT,
      max_tokens: TOKENS,
      temperature: 0.8,
      seed: 11,
      n: 3,
      echo: true,
      logprobs: 1,
    });
    expect(await votes()).toBe(before + 2 * (ids.length - 1 + 3 * TOKENS));
    const ext = (drawn as unknown as Choices).webswarm;
    expect(ext.verified).toBe(true);
    for (const [i, c] of drawn.choices.entries()) {
      const own = (await reference.generateIds(ids, TOKENS, { ...sampling, seed: 11 + i })).tokens;
      expect(ext.choices[i]?.tokens).toEqual(own);
      expect(c.text).toBe(PROMPT + reference.tokenizer.decode(own));
      expect(promptOf(c.logprobs)).toEqual(scores[0]);
      expect(c.logprobs?.token_logprobs).toHaveLength(ids.length + TOKENS);
      expect(ext.choices[i]?.verified).toBe(true);
      expect(ext.choices[i]?.prompt_votes).toHaveLength(ids.length - 1);
    }
    expect(new Set(ext.choices.map((c) => c.tokens.join())).size).toBeGreaterThan(1);

    // Streamed: each choice's first chunk is the echoed prompt with its log-probabilities, then its own tokens.
    const stream = await client.completions.create({
      model: MODEL,
      prompt: PROMPT,
      max_tokens: TOKENS,
      temperature: 0.8,
      seed: 11,
      n: 2,
      echo: true,
      logprobs: 1,
      stream: true,
    });
    const texts = ['', ''];
    const firsts: (string | null)[] = [null, null];
    for await (const chunk of stream)
      for (const c of chunk.choices) {
        if (c.text === '' && c.logprobs === null) continue;
        firsts[c.index] ??= c.text;
        texts[c.index] += c.text;
      }
    expect(firsts).toEqual([PROMPT, PROMPT]);
    expect(texts).toEqual([drawn.choices[0]?.text, drawn.choices[1]?.text]);

    // Choice 0 refused (the prompt and max_tokens past the model's positions): the choices waiting for its scores end
    // with it, at once.
    const t0 = performance.now();
    await expect(
      client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 510, echo: true, logprobs: 1, n: 3 }),
    ).rejects.toMatchObject({ status: 400 });
    expect(performance.now() - t0).toBeLessThan(5_000);
  });

  it('best_of: every candidate drawn (seed + i), the n with the highest mean log-probability per token returned best first, as the reference ranks them', async () => {
    const ids = reference.tokenizer.encode(PROMPT);
    const CANDIDATES = 4;
    const sampling = { temperature: 1, topK: 0, topP: 1 };
    // The oracle: each candidate the reference's draw for seed + i, its mean log-probability from the reference fed
    // prompt + draw a token at a time (apart from the API's code), ranked best first (the lower index on a tie).
    const draws: number[][] = [];
    const means: number[] = [];
    for (let i = 0; i < CANDIDATES; i++) {
      const own = (await reference.generateIds(ids, TOKENS, { ...sampling, seed: 40 + i })).tokens;
      const lps = (await promptLogprobs(reference, [...ids, ...own])).slice(-TOKENS);
      draws.push(own);
      means.push(lps.reduce((a, b) => a + b, 0) / TOKENS);
    }
    const order = means
      .map((m, i) => ({ m, i }))
      .sort((a, b) => b.m - a.m || a.i - b.i)
      .map((x) => x.i);
    expect(new Set(draws.map((d) => d.join())).size).toBeGreaterThan(1);
    type Ranked = {
      webswarm: {
        verified: boolean;
        choices: { index: number; candidate: number; tokens: number[]; verified: boolean }[];
        candidates: { candidate: number; seed: number; mean_logprob: number; tokens: number; verified: boolean; returned: number | null }[];
      };
    };
    const r = await client.completions.create({
      model: MODEL,
      prompt: PROMPT,
      max_tokens: TOKENS,
      seed: 40,
      n: 2,
      best_of: CANDIDATES,
      logprobs: 1,
    });
    const ext = (r as unknown as Ranked).webswarm;
    expect(r.choices.map((c) => c.index)).toEqual([0, 1]);
    expect(ext.choices.map((c) => c.candidate)).toEqual(order.slice(0, 2));
    for (const [j, c] of r.choices.entries()) {
      const own = draws[order[j] as number] as number[];
      expect(c.text).toBe(reference.tokenizer.decode(own));
      expect(ext.choices[j]?.tokens).toEqual(own);
      expect(c.logprobs?.token_logprobs).toHaveLength(TOKENS);
    }
    // Every candidate was computed (and is billed), and the extension says how each ranked.
    expect(r.usage).toMatchObject({ prompt_tokens: ids.length, completion_tokens: CANDIDATES * TOKENS });
    expect(ext.verified).toBe(true);
    expect(ext.candidates.map((c) => c.candidate)).toEqual([0, 1, 2, 3]);
    for (const [i, c] of ext.candidates.entries()) {
      expect(c.seed).toBe(40 + i);
      expect(c.tokens).toBe(TOKENS);
      expect(Math.abs(c.mean_logprob - (means[i] as number)), `candidate ${i}`).toBeLessThan(TOLERANCE);
      expect(c.returned).toBe(order.indexOf(i) < 2 ? order.indexOf(i) : null);
    }

    // n = 1 of 3: the single best, its ids at the top of the extension as any n = 1 answer's.
    const one = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: TOKENS, seed: 40, best_of: 3 });
    const best3 = order.filter((i) => i < 3)[0] as number;
    expect(one.choices.map((c) => c.text)).toEqual([reference.tokenizer.decode(draws[best3] as number[])]);
    expect((one as unknown as { webswarm: { candidate: number; tokens: number[] } }).webswarm).toMatchObject({
      candidate: best3,
      tokens: draws[best3],
    });

    // With echo: the prompt scored once and echoed by the candidate returned, ranked on its own tokens only.
    const echoed = await client.completions.create({
      model: MODEL,
      prompt: PROMPT,
      max_tokens: TOKENS,
      seed: 40,
      best_of: 2,
      echo: true,
      logprobs: 0,
    });
    const best2 = order.filter((i) => i < 2)[0] as number;
    expect(echoed.choices.map((c) => c.text)).toEqual([PROMPT + reference.tokenizer.decode(draws[best2] as number[])]);
    expect(echoed.choices[0]?.logprobs?.token_logprobs).toHaveLength(ids.length + TOKENS);
    expect(echoed.usage).toMatchObject({ completion_tokens: 2 * TOKENS });
  });

  it('a one-token prompt scored with nothing generated: its token, null, and its settings checked as any request’s', async () => {
    const one = reference.tokenizer.decode([reference.tokenizer.encode(PROMPT)[0] as number]);
    expect(reference.tokenizer.encode(one)).toHaveLength(1);
    const r = await client.completions.create({ model: MODEL, prompt: one, max_tokens: 0, echo: true, logprobs: 2 });
    expect(r.choices[0]?.text).toBe(one);
    expect(r.choices[0]?.logprobs).toEqual({ tokens: [one], token_logprobs: [null], top_logprobs: [null], text_offset: [0] });
    // Nothing is computed, yet a token the model does not have is the 400 any other prompt gets.
    const vocab = reference.manifest.model.vocabSize;
    for (const prompt of [one, PROMPT])
      await expect(
        client.completions.create({ model: MODEL, prompt, max_tokens: 0, echo: true, logit_bias: { [String(vocab)]: 1 } }),
      ).rejects.toMatchObject({ status: 400, param: 'logit_bias' });
  });

  it('a prompt of token ids (what lm-evaluation-harness sends): run as the ids it is, not as their text re-tokenized', async () => {
    const ids = reference.tokenizer.encode(PROMPT);
    const body = { model: MODEL, max_tokens: TOKENS, temperature: 0, echo: true, logprobs: 2 } as const;
    const asText = await client.completions.create({ ...body, prompt: PROMPT });
    const asIds = await client.completions.create({ ...body, prompt: [ids] });
    expect(tokensOf(asIds)).toEqual(await greedy(PROMPT));
    expect(asIds.choices[0]?.text).toBe(asText.choices[0]?.text);
    expect(asIds.usage).toEqual(asText.usage);
    const [a, b] = [asText.choices[0]?.logprobs, asIds.choices[0]?.logprobs];
    expect(b?.tokens).toEqual(a?.tokens);
    expect(b?.text_offset).toEqual(a?.text_offset);
    for (const [i, lp] of (a?.token_logprobs ?? []).entries())
      expect(Math.abs((b?.token_logprobs?.[i] ?? 0) - (lp ?? 0)), `position ${i}`).toBeLessThan(TOLERANCE);

    // Ids the tokenizer would not give for their text (each character its own token): the swarm runs these ids,
    // so its tokens are the reference runner's for them (re-tokenizing their text would give the merged ids).
    const split = [...PROMPT].flatMap((ch) => reference.tokenizer.encode(ch));
    expect(split.length).toBeGreaterThan(ids.length);
    expect(reference.tokenizer.decode(split)).toBe(PROMPT);
    const r = await client.completions.create({ model: MODEL, prompt: split, max_tokens: TOKENS, temperature: 0, echo: true, logprobs: 0 });
    const want = await reference.generateIds(split, TOKENS, { temperature: 0, topK: 0, topP: 1, seed: 0 });
    expect(tokensOf(r)).toEqual(want.tokens);
    expect(want.tokens).not.toEqual(await greedy(PROMPT));
    expect(r.usage?.prompt_tokens).toBe(split.length);
    expect(r.choices[0]?.logprobs?.tokens?.length).toBe(split.length + TOKENS);
    expect(r.choices[0]?.text.startsWith(PROMPT)).toBe(true);
  });

  it("lm-evaluation-harness's log-likelihood request (local-completions, tokenized), read as it reads it: the reference's sum and greedy flag", async () => {
    // Context and continuation tokenized apart and joined (TemplateAPI), through the server's /tokenize as its
    // remote tokenizer does; the payload and the parse are LocalCompletionsAPI's (_create_payload, parse_logprobs).
    const encode = async (prompt: string) => {
      const r = await fetch(`${server.address().url}/tokenize`, {
        method: 'POST',
        body: JSON.stringify({ prompt, add_special_tokens: false }),
      });
      return ((await r.json()) as { tokens: number[] }).tokens;
    };
    const context = await encode(PROMPT);
    expect(context).toEqual(reference.tokenizer.encode(PROMPT));
    // The model's own greedy tokens (greedy), and a name it does not expect there (not).
    const flags: boolean[] = [];
    for (const continuation of [(await greedy(PROMPT)).slice(0, 3), reference.tokenizer.encode(' Elizabeth')]) {
      const ids = [...context, ...continuation];
      const body = { model: MODEL, prompt: [ids], temperature: 0, max_tokens: 1, logprobs: 1, seed: 1234, echo: true };
      const res = await fetch(`${server.address().url}/v1/completions`, { method: 'POST', body: JSON.stringify(body) });
      expect(res.status).toBe(200);
      const out = (await res.json()) as {
        choices: { index: number; logprobs: { token_logprobs: number[]; top_logprobs: Record<string, number>[] } }[];
      };
      const lp = (out.choices[0] as (typeof out.choices)[number]).logprobs;
      const own = lp.token_logprobs.slice(context.length, -1);
      const tops = lp.top_logprobs.slice(context.length, -1);
      const sum = own.reduce((a, b) => a + b, 0);
      const isGreedy = own.every((t, i) => t === Math.max(...Object.values(tops[i] ?? {})));
      // The oracle: the reference runner fed the same ids a token at a time.
      const session = reference.session();
      const vocab = reference.manifest.model.vocabSize;
      let want = 0;
      let greedyWant = true;
      for (let i = 0; i + 1 < ids.length; i++) {
        const row = (await session.forward([ids[i] as number])).subarray(-vocab);
        if (i + 1 < context.length) continue;
        want += logprobOf(row, ids[i + 1] as number);
        greedyWant &&= argmax(row) === ids[i + 1];
      }
      expect(own).toHaveLength(continuation.length);
      expect(Math.abs(sum - want)).toBeLessThan(TOLERANCE * continuation.length);
      expect(isGreedy).toBe(greedyWant);
      flags.push(greedyWant);
    }
    expect(flags).toEqual([true, false]);
  });

  it('a token id the model does not have: a 400 naming it, before any volunteer computes a step', async () => {
    const vocab = reference.manifest.model.vocabSize;
    const before = await counts();
    for (const prompt of [[1, vocab], [[vocab + 5]]]) {
      const bad = Array.isArray(prompt[0]) ? vocab + 5 : vocab;
      const at = Array.isArray(prompt[0]) ? 0 : 1;
      for (const echo of [false, true])
        await expect(client.completions.create({ model: MODEL, prompt, max_tokens: 2, echo })).rejects.toMatchObject({
          status: 400,
          param: 'prompt',
          error: { message: `prompt: token ${bad} (at position ${at}) is not in the model's vocabulary of ${vocab}` },
        });
    }
    await expect(client.completions.create({ model: MODEL, prompt: [3, -1], max_tokens: 2 })).rejects.toMatchObject({
      status: 400,
      param: 'prompt',
      error: { message: 'prompt[1] is -1: a token id is an integer ≥ 0' },
    });
    // Past the API's own check, the coordinator refuses them where every session starts (and where a one-token
    // prompt is scored with no session), for any caller that hands it ids.
    const coordinator = server.coordinator;
    if (coordinator === null) throw new Error('no coordinator');
    const request = { prompt: '', maxTokens: 2, sampling: GREEDY_SAMPLING };
    for (const ids of [[1, vocab], [-1], [0.5]])
      await expect(coordinator.complete({ ...request, promptIds: ids })).rejects.toMatchObject({
        code: 'ERR_BAD_REQUEST',
        param: 'prompt',
      });
    await expect(coordinator.complete({ ...request, promptIds: [vocab], maxTokens: 0, scorePrompt: true })).rejects.toMatchObject({
      code: 'ERR_BAD_REQUEST',
      message: `prompt: token ${vocab} (at position 0) is not in the model's vocabulary of ${vocab}`,
    });
    expect(await counts()).toEqual(before);
    // The volunteers were never asked: every one still ready, none with a disagreement.
    const listing = server.coordinator?.volunteers() ?? [];
    expect(listing).toHaveLength(2);
    expect(listing.map((v) => [v.ready, v.disagreed])).toEqual(listing.map(() => [true, 0]));
  });

  it('leaves logprobs null when they are not asked for', async () => {
    const r = await client.chat.completions.create({ model: MODEL, messages: MESSAGES, max_tokens: 2, temperature: 0 });
    expect(r.choices[0]?.logprobs).toBeNull();
    const c = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 2, temperature: 0 });
    expect(c.choices[0]?.logprobs).toBeNull();
    // echo without logprobs: the prompt and the completion, nothing else.
    const e = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 2, temperature: 0, echo: true });
    expect(e.choices[0]?.logprobs).toBeNull();
    expect(e.choices[0]?.text).toBe(PROMPT + c.choices[0]?.text);
  });

  it("a chat's prompt tokens are POST /tokenize's for the same messages (vLLM's chat form), and usage counts them", async () => {
    const chats = [
      MESSAGES,
      [
        { role: 'system' as const, content: 'At Longbourn.' },
        { role: 'user' as const, content: 'Good morning.' },
        { role: 'assistant' as const, content: 'Good morning to you.' },
        { role: 'user' as const, content: 'Is your sister at home?' },
      ],
    ];
    for (const messages of chats) {
      const r = (await client.chat.completions.create({ model: MODEL, messages, max_tokens: 1, temperature: 0 })) as unknown as {
        usage: { prompt_tokens: number };
        webswarm: { prompt_tokens: number[] };
      };
      const res = await fetch(`${server.address().url}/tokenize`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: MODEL, messages }),
      });
      const t = (await res.json()) as { count: number; tokens: number[] };
      expect(res.status).toBe(200);
      // The oracle: the reference runner's tokenizer, on the template's text.
      expect(r.webswarm.prompt_tokens).toEqual(reference.tokenizer.encode(reference.tokenizer.chatPrompt(messages)));
      expect(t.tokens).toEqual(r.webswarm.prompt_tokens);
      expect(t.count).toBe(r.usage.prompt_tokens);
    }
  });
});
