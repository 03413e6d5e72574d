// A batch of prompts in one POST /v1/completions (OpenAI's `prompt` as a list of strings or of lists of ids), through
// a real server on port 0 whose two volunteers run the real replica in Node (testing/api-swarm.ts, one stage, r = 2),
// the reference runner the oracle. API_MAX_CONCURRENT = 2: a batch runs its prompts in lanes within it.
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
import { promptLogprobs } from '../testing/prompt-logprobs.js';

const MODEL = API_MODEL;
/** Three prompts of different lengths. */
const PROMPTS = ['It is a truth universally acknowledged, that a single man', 'Emma', 'Mr. Knightley'];
const MAX = 2;
const TOKENS = 6;
const SEED = 41;
const TEMPERATURE = 0.8;
const TOLERANCE = 1e-5;
const TEST_MS = 60_000;

let rig: ApiSwarm | undefined;
let server: SignalServer;
let reference: ReferenceRunner;
let url: string;

beforeAll(async () => {
  rig = await startApiSwarm('webswarm-batch-', { redundancy: 2, apiMaxConcurrent: MAX });
  ({ server, reference } = rig);
  url = server.address().url;
}, 60_000);

afterAll(() => rig?.close());

const post = (body: unknown, signal?: AbortSignal): Promise<RawAnswer> => postRaw(`${url}/v1/completions`, body, signal);

const encode = (text: string) => reference.tokenizer.encode(text);
const draw = async (ids: readonly number[], seed: number, temperature = TEMPERATURE) =>
  (await reference.generateIds(ids, TOKENS, { temperature, topK: 0, topP: 1, seed })).tokens;

const expectAllSlotsBack = () => expectAllSlotsBackOn(server, MAX);

const BATCH = { model: MODEL, max_tokens: TOKENS, n: 2, seed: SEED, temperature: TEMPERATURE };

describe('several prompts in one completions request', () => {
  it(
    '3 prompts × n = 2, as strings and as ids: choice p × 2 + i is the reference’s draw for prompt p with seed + i; usage sums',
    async () => {
      const ids = PROMPTS.map(encode);
      const want = await Promise.all(ids.map(async (p) => [await draw(p, SEED), await draw(p, SEED + 1)]));
      for (const prompt of [PROMPTS, ids]) {
        const r = await post({ ...BATCH, prompt });
        expect(r.status, r.raw).toBe(200);
        const ext = r.body.webswarm;
        expect(r.body.choices.map((c: { index: number }) => c.index)).toEqual([0, 1, 2, 3, 4, 5]);
        expect(ext.choices.map((c: { index: number }) => c.index)).toEqual([0, 1, 2, 3, 4, 5]);
        for (let p = 0; p < 3; p++)
          for (let i = 0; i < 2; i++) {
            const tokens = want[p]?.[i] as number[];
            const at = p * 2 + i;
            expect(ext.choices[at].tokens, `prompt ${p} choice ${i}`).toEqual(tokens);
            expect(ext.choices[at]).toMatchObject({ prompt: p, prompt_tokens: ids[p], verified: true });
            expect(r.body.choices[at].text).toBe(reference.tokenizer.decode(tokens));
          }
        // A batch's extension has no one prompt's ids at its top: each choice names its own.
        expect(ext).not.toHaveProperty('prompt_tokens');
        expect(ext.verified).toBe(true);
        const promptTokens = ids.reduce((a, p) => a + p.length, 0);
        expect(r.body.usage).toEqual({
          prompt_tokens: promptTokens,
          completion_tokens: 6 * TOKENS,
          total_tokens: promptTokens + 6 * TOKENS,
        });
      }
    },
    TEST_MS,
  );

  it(
    'streamed: each chunk names its choice’s global index; reassembled per index, the answer not streamed; [DONE] and the usage once, at the end',
    async () => {
      const whole = await post({ ...BATCH, prompt: PROMPTS });
      expect(whole.status, whole.raw).toBe(200);
      const r = await post({ ...BATCH, prompt: PROMPTS, stream: true, stream_options: { include_usage: true } });
      expect(r.status, r.raw).toBe(200);
      const all = streamEvents(r.raw);
      expect(all.filter((e) => e === '[DONE]')).toHaveLength(1);
      expect(all.at(-1)).toBe('[DONE]');
      // biome-ignore lint/suspicious/noExplicitAny: chunks checked field by field
      const chunks = all.slice(0, -1) as any[];
      const usage = chunks.filter((c) => c.usage !== null);
      expect(usage).toHaveLength(1);
      expect(chunks.at(-1)).toBe(usage[0]);
      expect(usage[0].choices).toEqual([]);
      expect(usage[0].usage).toEqual(whole.body.usage);
      const texts = new Map<number, string>();
      const finishes = new Map<number, string>();
      for (const c of chunks.slice(0, -1)) {
        expect(c.choices).toHaveLength(1);
        const { index, text, finish_reason } = c.choices[0];
        texts.set(index, (texts.get(index) ?? '') + text);
        if (finish_reason !== null) {
          expect(finishes.has(index), `index ${index} finished twice`).toBe(false);
          finishes.set(index, finish_reason);
        }
      }
      expect([...texts.keys()].sort()).toEqual([0, 1, 2, 3, 4, 5]);
      for (const c of whole.body.choices) {
        expect(texts.get(c.index), `index ${c.index}`).toBe(c.text);
        expect(finishes.get(c.index)).toBe(c.finish_reason);
      }
    },
    TEST_MS,
  );

  it(
    'echo + logprobs with 2 prompts: each choice echoes its own prompt, with the reference’s log-probabilities',
    async () => {
      const prompts = PROMPTS.slice(0, 2);
      const r = await post({ model: MODEL, prompt: prompts, max_tokens: 2, temperature: 0, echo: true, logprobs: 1 });
      expect(r.status, r.raw).toBe(200);
      expect(r.body.choices).toHaveLength(2);
      for (const [p, text] of prompts.entries()) {
        const ids = encode(text);
        const tokens = await draw(ids, 0, 0).then((t) => t.slice(0, 2));
        const c = r.body.choices[p];
        expect(c.index).toBe(p);
        expect(c.text).toBe(text + reference.tokenizer.decode(tokens));
        const lp = c.logprobs;
        expect(lp.token_logprobs).toHaveLength(ids.length + 2);
        expect(lp.token_logprobs[0]).toBeNull();
        expect(lp.text_offset[0]).toBe(0);
        const want = await promptLogprobs(reference, [...ids, ...tokens]);
        for (const [i, w] of want.entries())
          expect(Math.abs(lp.token_logprobs[i + 1] - w), `prompt ${p}, token ${i + 1}`).toBeLessThan(TOLERANCE);
        expect(r.body.webswarm.choices[p]).toMatchObject({ index: p, prompt: p, prompt_tokens: ids, tokens, verified: true });
        expect(r.body.webswarm.choices[p].prompt_votes).toHaveLength(ids.length - 1);
      }
    },
    TEST_MS,
  );

  it(
    'best_of = 2, n = 1 with 2 prompts: each prompt’s better candidate by the reference’s log-probabilities, at its prompt’s index',
    async () => {
      const prompts = PROMPTS.slice(1);
      const r = await post({ model: MODEL, prompt: prompts, max_tokens: TOKENS, temperature: 1, seed: SEED, best_of: 2 });
      expect(r.status, r.raw).toBe(200);
      const ext = r.body.webswarm;
      expect(ext.candidates).toHaveLength(4);
      for (const [p, text] of prompts.entries()) {
        const ids = encode(text);
        const cands = await Promise.all(
          [0, 1].map(async (i) => {
            const tokens = await draw(ids, SEED + i, 1);
            expect(tokens, 'no end of text').toHaveLength(TOKENS);
            const lps = (await promptLogprobs(reference, [...ids, ...tokens])).slice(-TOKENS);
            return { tokens, mean: lps.reduce((a, b) => a + b, 0) / TOKENS };
          }),
        );
        const best = (cands[1]?.mean as number) > (cands[0]?.mean as number) ? 1 : 0;
        expect(r.body.choices[p].index).toBe(p);
        expect(r.body.choices[p].text).toBe(reference.tokenizer.decode(cands[best]?.tokens as number[]));
        expect(ext.choices[p]).toMatchObject({ index: p, prompt: p, candidate: best, tokens: cands[best]?.tokens });
        for (const i of [0, 1]) {
          const c = ext.candidates[p * 2 + i];
          expect(c).toMatchObject({ prompt: p, candidate: i, seed: SEED + i, tokens: TOKENS, returned: i === best ? p : null });
          expect(Math.abs(c.mean_logprob - (cands[i]?.mean as number))).toBeLessThan(TOLERANCE);
        }
      }
      expect(r.body.usage.completion_tokens).toBe(4 * TOKENS);
    },
    TEST_MS,
  );

  it(
    'one prompt keeps the extension’s shape of before: n = 1 at its top, n = 2 as choices without a prompt field',
    async () => {
      const one = await post({ model: MODEL, prompt: [PROMPTS[1]], max_tokens: 2, temperature: 0 });
      expect(one.status, one.raw).toBe(200);
      expect(one.body.webswarm).toMatchObject({ prompt_tokens: encode(PROMPTS[1] as string), verified: true });
      expect(one.body.webswarm.tokens).toHaveLength(2);
      expect(one.body.webswarm).not.toHaveProperty('choices');
      const two = await post({ model: MODEL, prompt: PROMPTS[1], max_tokens: 2, n: 2 });
      expect(two.status, two.raw).toBe(200);
      expect(two.body.webswarm.choices.map((c: object) => Object.keys(c))).toEqual([
        ['index', 'verified', 'seed', 'tokens', 'route', 'server_stages', 'votes'],
        ['index', 'verified', 'seed', 'tokens', 'route', 'server_stages', 'votes'],
      ]);
      // Choice i samples with the request's seed (drawn here: none was given) + i.
      const [s0, s1] = two.body.webswarm.choices.map((c: { seed: number }) => c.seed);
      expect(s1).toBe((s0 + 1) >>> 0);
    },
    TEST_MS,
  );

  it(
    `API_MAX_CONCURRENT = ${MAX}: 3 prompts × n = 1 run in 2 lanes (never 3 sessions at once), 3 × n = 2 in one; n = 3 in one, its choices in turns`,
    async () => {
      const lanes = post({ model: MODEL, prompt: PROMPTS, max_tokens: 24, temperature: 0 });
      expect(await mostSessionsDuring(server, lanes)).toBe(MAX);
      const r = await lanes;
      expect(r.status, r.raw).toBe(200);
      expect(r.body.choices).toHaveLength(3);
      const one = post({ ...BATCH, prompt: PROMPTS, max_tokens: 12 });
      expect(await mostSessionsDuring(server, one)).toBe(2);
      expect((await one).status).toBe(200);
      // n = 3 is over the limit: each prompt's choices take turns in one lane of 2 (before: a 429 no retry cured).
      const over = post({ ...BATCH, prompt: PROMPTS, n: 3, max_tokens: 12 });
      expect(await mostSessionsDuring(server, over)).toBe(MAX);
      const r3 = await over;
      expect(r3.status, r3.raw).toBe(200);
      expect(r3.body.choices).toHaveLength(9);
      await expectAllSlotsBack();
    },
    TEST_MS,
  );

  it(
    'a prompt the model refuses (past its positions; an id it does not have): a 400 naming it by its place, every slot back',
    async () => {
      const e = encode('e')[0] as number;
      const vocab = reference.manifest.model.vocabSize;
      const long = await post({ ...BATCH, prompt: [[e, e], new Array(500).fill(e)], max_tokens: 20 });
      expect(long.status, long.raw).toBe(400);
      expect(long.body.error).toMatchObject({ code: 'context_length_exceeded', param: 'prompt' });
      expect(long.body.error.message).toMatch(
        /^prompt\[1\]: prompt \(500 tokens\) \+ max_tokens \(20\) exceeds the model's maximum context length of 512 tokens/,
      );
      await expectAllSlotsBack();
      // Last in a streamed batch of one lane (n = 2 holds both slots): found before the first prompt runs, so a 400
      // and no stream, not an error event after the others' chunks; and nothing computed.
      const lateBatch = post({ ...BATCH, prompt: ['Emma', 'Mr. Knightley', 'Emma '.repeat(1000)], stream: true });
      expect(await mostSessionsDuring(server, lateBatch)).toBe(0);
      const late = await lateBatch;
      expect(late.status, late.raw).toBe(400);
      expect(late.raw).not.toMatch(/^data: /);
      expect(late.body.error).toMatchObject({ code: 'context_length_exceeded', param: 'prompt' });
      expect(late.body.error.message).toMatch(
        /^prompt\[2\]: prompt \(\d+ tokens\) \+ max_tokens \(6\) exceeds the model's maximum context length of 512 tokens$/,
      );
      await expectAllSlotsBack();
      // An id past the vocabulary: refused as the prompts are read, before any runs (a session's own check would
      // say "prompt[1]: prompt: token …").
      const bad = await post({ ...BATCH, prompt: [[e], [e, vocab]] });
      expect(bad.status, bad.raw).toBe(400);
      expect(bad.body.error).toMatchObject({ param: 'prompt' });
      expect(bad.body.error.message).toBe(`prompt[1]: token ${vocab} (at position 1) is not in the model's vocabulary of ${vocab}`);
      await expectAllSlotsBack();
    },
    TEST_MS,
  );

  it(
    'a client that goes away mid-batch (streamed and not): every prompt’s generations cancelled, no slot left held',
    async () => {
      for (const stream of [true, false]) {
        const ac = new AbortController();
        const gone = post({ ...BATCH, prompt: PROMPTS, max_tokens: 400, stream }, ac.signal).catch((e: unknown) => e);
        await expect.poll(() => server.coordinator?.activeSessions ?? 0, { timeout: 10_000 }).toBeGreaterThan(0);
        ac.abort();
        expect(await gone).toBeInstanceOf(Error);
        // Left to run, the batch would take seconds more (3 × 400 tokens, one prompt at a time).
        await expect.poll(() => server.coordinator?.activeSessions ?? -1, { timeout: 2_000 }).toBe(0);
        await expectAllSlotsBack();
      }
    },
    TEST_MS,
  );
});

describe('several prompts with no limit on concurrent generations (API_MAX_CONCURRENT = 0)', () => {
  let open: ApiSwarm | undefined;
  beforeAll(async () => {
    open = await startApiSwarm('webswarm-batch-open-', { redundancy: 2, apiMaxConcurrent: 0 });
  }, 60_000);
  afterAll(() => open?.close());

  it(
    '6 prompts × n = 2 all run at once (12 sessions), each the reference’s draw, with no listener-leak warning',
    async () => {
      const swarm = open as ApiSwarm;
      const warnings: string[] = [];
      const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
      process.on('warning', onWarning);
      try {
        const prompts = [...PROMPTS, 'Harriet', 'Miss Bates', 'Hartfield'];
        const answer = postRaw(`${swarm.server.address().url}/v1/completions`, { ...BATCH, prompt: prompts, max_tokens: 12 });
        expect(await mostSessionsDuring(swarm.server, answer)).toBe(12);
        const r = await answer;
        expect(r.status, r.raw).toBe(200);
        for (const [p, text] of prompts.entries()) {
          const ids = swarm.reference.tokenizer.encode(text);
          for (const i of [0, 1]) {
            const want = (await swarm.reference.generateIds(ids, 12, { temperature: TEMPERATURE, topK: 0, topP: 1, seed: SEED + i }))
              .tokens;
            expect(r.body.webswarm.choices[p * 2 + i].tokens, `prompt ${p} choice ${i}`).toEqual(want);
          }
        }
        // A warning is emitted on the next tick.
        await new Promise((resolve) => setTimeout(resolve, 10));
        expect(warnings).toEqual([]);
      } finally {
        process.off('warning', onWarning);
      }
    },
    TEST_MS,
  );
});
