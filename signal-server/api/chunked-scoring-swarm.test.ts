// Integration: a scored prompt (completions' echo + logprobs, what evaluation harnesses send) scores its first
// positions in one step (the last stage's logits a row per position: SessionOpen.scoreRows), the rest in chunks of
// as many a step (SessionOpen.scoreChunks).
// A real server on port 0, r volunteers running the real replica in Node (api-swarm.ts); the reference runner fed
// the prompt a token at a time is the oracle. Prompts longer than a step's rows (C), so that both parts run.
import type OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { maxScoreRows } from '../../shared/protocol/messages.js';
import { type ApiSwarm, API_MODEL as MODEL, startApiSwarm } from '../testing/api-swarm.js';
import { promptLogprobs } from '../testing/prompt-logprobs.js';

/** The API's logits come from the same WASM kernels as the reference's: equal to float32 rounding. */
const TOLERANCE = 1e-5;
const SHORT = 'It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.';
const LONG = `${SHORT} ${SHORT} However little known the feelings or views of such a man may be on his first entering a neighbourhood, this truth is so well fixed in the minds of the surrounding families, that he is considered the rightful property of some one or other of their daughters.`;

type Logprobs = OpenAI.Completions.Completion['choices'][number]['logprobs'];

/** Streamed: the logprobs arrays of every chunk joined. */
async function streamed(client: OpenAI, body: OpenAI.Completions.CompletionCreateParamsNonStreaming): Promise<Logprobs> {
  const joined = { tokens: [] as string[], token_logprobs: [] as (number | null)[] };
  for await (const chunk of await client.completions.create({ ...body, stream: true })) {
    const c = chunk.choices[0]?.logprobs;
    if (c === null || c === undefined) continue;
    joined.tokens.push(...(c.tokens ?? []));
    joined.token_logprobs.push(...((c.token_logprobs ?? []) as (number | null)[]));
  }
  return joined as Logprobs;
}

describe.each([
  // r = 1: the one replica's logits; r = 3: a majority of 3 (two agree). C = 5 rows, and the default (96 at austen-2m's vocabulary).
  { r: 1, rows: 5, prompt: SHORT },
  { r: 3, rows: 5, prompt: SHORT },
  { r: 1, rows: undefined, prompt: LONG },
  { r: 2, rows: undefined, prompt: LONG },
])('a scored prompt, r = $r, C = $rows', ({ r, rows, prompt }) => {
  let rig: ApiSwarm | undefined;
  beforeAll(async () => {
    rig = await startApiSwarm('webswarm-chunked-', {
      redundancy: r,
      apiMaxConcurrent: 0,
      ...(rows === undefined ? {} : { scoreRows: rows }),
    });
  }, 60_000);
  afterAll(() => rig?.close());

  it('every prompt token’s log-probability is the reference’s, streamed and not, in 1 + ⌈(P − C − 1) ÷ C⌉ steps instead of P − 1', async () => {
    const { client, reference, volunteers } = rig as ApiSwarm;
    const ids = reference.tokenizer.encode(prompt);
    const c = rows ?? maxScoreRows(reference.manifest.model.vocabSize);
    expect(c).toBe(rows ?? 96);
    // Longer than a step's rows: the first C positions in one step, the rest in chunks of C.
    expect(ids.length).toBeGreaterThan(c + 1);
    const want = await promptLogprobs(reference, ids);
    const body = { model: MODEL, prompt, max_tokens: 0, echo: true, logprobs: 1 } as const;
    const check = (lp: Logprobs, how: string) => {
      expect(lp?.tokens?.join(''), how).toBe(prompt);
      expect(lp?.token_logprobs?.[0], how).toBeNull();
      expect(lp?.token_logprobs).toHaveLength(ids.length);
      for (let i = 1; i < ids.length; i++)
        expect(Math.abs((lp?.token_logprobs?.[i] as number) - (want[i - 1] as number)), `${how}: position ${i}`).toBeLessThan(TOLERANCE);
    };
    const steps = () => volunteers.map((v) => v.steps);
    const before = steps();
    const whole = await client.completions.create(body);
    check(whole.choices[0]?.logprobs ?? null, 'not streamed');
    // Each replica computed the step of the first C positions (whose last row scores position C), then a step per
    // chunk of the P − C − 1 positions after it (max_tokens 0: the prompt's last token is never fed).
    const taken = steps().map((n, i) => n - (before[i] as number));
    for (const n of taken) expect(n).toBe(1 + Math.ceil((ids.length - c - 1) / c));
    expect(Math.max(...taken)).toBeLessThan(ids.length - 1);
    check(await streamed(client, body), 'streamed');

    // Scored, then generated: the tokens after the prompt are those of a request without echo.
    const gen = { model: MODEL, max_tokens: 4, temperature: 0, logprobs: 1 } as const;
    const both = await client.completions.create({ ...gen, prompt, echo: true });
    const plain = await client.completions.create({ ...gen, prompt });
    expect(both.choices[0]?.text).toBe(prompt + (plain.choices[0]?.text ?? ''));
    const lp = both.choices[0]?.logprobs;
    check(
      { tokens: lp?.tokens?.slice(0, ids.length), token_logprobs: lp?.token_logprobs?.slice(0, ids.length) } as Logprobs,
      'then generated',
    );
    // Their cache came from other steps (C positions at once, then chunks), so equal within float32 rounding.
    const after = plain.choices[0]?.logprobs?.token_logprobs ?? [];
    expect(lp?.token_logprobs?.slice(ids.length)).toHaveLength(after.length);
    for (const [i, v] of after.entries()) expect(Math.abs((lp?.token_logprobs?.[ids.length + i] as number) - v)).toBeLessThan(TOLERANCE);
  }, 60_000);
});
