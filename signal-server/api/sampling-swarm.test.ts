// logit_bias and the penalties through a real swarm: a real server on port 0,
// real-protocol Node volunteers computing with onnxruntime (testing/http-swarm.ts),
// requests made with the official `openai` client. Every answer is compared with
// the reference runner's tokens for the same settings, the oracle.
import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { GREEDY, type SamplingParams } from '../../shared/model/sampling.js';
import type { FaultBehaviour } from '../../shared/swarm/faults.js';
import { ensureStages } from '../models/model-folder.js';
import { ReferenceRunner } from '../reference/reference-runner.js';
import { httpSwarm, MODEL, PROMPT, WAIT_MS } from '../testing/http-swarm.js';
import type { NodeVolunteer } from '../testing/node-volunteer.js';

const { start, volunteer, readyCount, stageCache, joinAll } = httpSwarm('sampling-swarm');
const TOKENS = 10;
const TEST_MS = 120_000;

interface Swarm {
  readonly url: string;
  readonly volunteers: NodeVolunteer[];
  readonly client: OpenAI;
  readonly reference: (sampling: SamplingParams, promptIds?: readonly number[]) => Promise<number[]>;
  readonly meshRollBacks: () => number;
}

/** 2 stages × r = 2, the mesh loop on (the default): four honest volunteers. */
async function swarm(extra: { apiMaxConcurrent?: number } = {}): Promise<Swarm> {
  const { url, server } = await start(2, 2, extra);
  const volunteers = Array.from({ length: 4 }, (_, i) => volunteer(url, `127.0.0.${40 + i}`));
  await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(4);
  const coordinator = server.coordinator;
  if (coordinator === null) throw new Error('no coordinator');
  const reference = async (sampling: SamplingParams, promptIds?: readonly number[]) => {
    const runner = await ReferenceRunner.fromStageDir((await ensureStages(MODEL, { stages: 2 }, stageCache())).dir);
    try {
      return (await runner.generateIds(promptIds ?? runner.tokenizer.encode(PROMPT), TOKENS, sampling)).tokens;
    } finally {
      await runner.close();
    }
  };
  return {
    url,
    volunteers,
    client: new OpenAI({ baseURL: `${url}/v1`, apiKey: 'none', maxRetries: 0 }),
    reference,
    meshRollBacks: () => coordinator.meshRollBacks,
  };
}

interface Extension {
  readonly webswarm: { tokens: number[]; verified: boolean };
}

const tokensOf = (c: unknown) => (c as Extension).webswarm.tokens;
const meshSteps = (vs: readonly NodeVolunteer[]) => vs.reduce((a, v) => a + v.meshSteps, 0);

describe('logit_bias and penalties through the swarm', () => {
  it(
    'logit_bias: the tokens are the reference runner’s with the same bias, sampled in the mesh loop with no roll-back',
    async () => {
      const s = await swarm();
      const plain = await s.reference(GREEDY);
      // Ban the greedy answer's first two tokens and favour a third: the answer must change, and match the reference.
      const banned = [plain[0] as number, plain[1] as number];
      const favoured = (plain[0] as number) === 7 ? 8 : 7;
      const bias = { [banned[0] as number]: -100, [banned[1] as number]: -100, [favoured]: 3 };
      const sampling: SamplingParams = {
        ...GREEDY,
        logitBias: Object.entries(bias).map(([id, b]) => [Number(id), b] as const),
      };
      const expected = await s.reference(sampling);
      expect(expected).not.toEqual(plain);
      expect(expected.some((t) => banned.includes(t))).toBe(false);
      const before = meshSteps(s.volunteers);
      const c = await s.client.completions.create({
        model: 'tiny-untied',
        prompt: PROMPT,
        max_tokens: TOKENS,
        temperature: 0,
        logit_bias: bias,
      });
      expect(tokensOf(c)).toEqual(expected);
      expect((c as unknown as Extension).webswarm.verified).toBe(true);
      // Stage 0 stepped on the last stage's own tokens, and none had to be undone: the volunteers applied the bias as the coordinator did.
      expect(meshSteps(s.volunteers)).toBeGreaterThan(before);
      expect(s.meshRollBacks()).toBe(0);
      // Seeded sampling at temperature 1 with a bias: the reference's draws too.
      const hot: SamplingParams = { temperature: 1, topK: 0, topP: 1, seed: 11, logitBias: [[favoured, 4]] };
      const hotExpected = await s.reference(hot);
      const h = await s.client.completions.create({
        model: 'tiny-untied',
        prompt: PROMPT,
        max_tokens: TOKENS,
        temperature: 1,
        seed: 11,
        logit_bias: { [favoured]: 4 },
      });
      expect(tokensOf(h)).toEqual(hotExpected);
      expect(s.meshRollBacks()).toBe(0);
    },
    TEST_MS,
  );

  it(
    'r = 3, a last-stage replica that sends stage 0 the token the bias bans: outvoted in the mesh, the reference runner’s tokens, no honest replica blamed',
    async () => {
      const { url, server } = await start(2, 3, { stepTimeoutMs: 8_000 });
      const runner = await ReferenceRunner.fromStageDir((await ensureStages(MODEL, { stages: 2 }, stageCache())).dir);
      const ids = runner.tokenizer.encode(PROMPT);
      const plain = (await runner.generateIds(ids, TOKENS, GREEDY)).tokens;
      const banned = plain[0] as number;
      const expected = (await runner.generateIds(ids, TOKENS, { ...GREEDY, logitBias: [[banned, -100]] })).tokens;
      await runner.close();
      // What a volunteer ignoring the bias could send: the banned token, every step, over the real data path.
      const lie: FaultBehaviour = { output: (_s, d) => d, delayMs: 0, token: () => banned };
      const all = await joinAll(url, 6, 70, (i) => (i === 1 ? { fault: lie } : {}));
      const liar = all[1] as NodeVolunteer;
      expect(liar.stage).toBe(1);
      const res = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'tiny-untied', prompt: PROMPT, max_tokens: TOKENS, temperature: 0, logit_bias: { [banned]: -100 } }),
      });
      const body = (await res.json()) as Extension;
      expect(res.status).toBe(200);
      expect(body.webswarm.tokens).toEqual(expected);
      expect(body.webswarm.tokens).not.toContain(banned);
      // Stage 0 took the honest majority's token every step: nothing was rolled back.
      expect(server.coordinator?.meshRollBacks).toBe(0);
      const honest = all.filter((v) => v !== liar);
      expect(honest.flatMap((v) => v.errors.map((e) => e.code)).filter((c) => c !== 'ERR_NOT_LINKED')).toEqual([]);
      // (The liar is only suspected: stage 0 computed on the verified token, so its receivers' word alone convicts nobody; mesh-checks.ts.)
    },
    TEST_MS,
  );

  it(
    'penalties: the reference runner’s tokens, streamed or not; the tokens go through the coordinator, which holds the completion so far',
    async () => {
      const s = await swarm();
      // Negative penalties favour repeats: this small random model repeats nothing in 10 tokens otherwise.
      const sampling: SamplingParams = { ...GREEDY, frequencyPenalty: -1, presencePenalty: -2 };
      const expected = await s.reference(sampling);
      const without = await s.reference({ ...sampling, frequencyPenalty: 0, presencePenalty: 0 });
      // The penalties change this answer, so the test can tell: a token said before comes back.
      expect(expected).not.toEqual(without);
      expect(new Set(expected).size).toBeLessThan(expected.length);
      const body = {
        model: 'tiny-untied',
        prompt: PROMPT,
        max_tokens: TOKENS,
        temperature: 0,
        frequency_penalty: -1,
        presence_penalty: -2,
      };
      const before = meshSteps(s.volunteers);
      const c = await s.client.completions.create(body);
      expect(tokensOf(c)).toEqual(expected);
      // No mesh loop for this session: stage 0 took every token from the coordinator.
      expect(meshSteps(s.volunteers)).toBe(before);
      const stream = await s.client.completions.create({ ...body, stream: true });
      let text = '';
      for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
      expect(text).toBe(c.choices[0]?.text);
      // Without penalties the same swarm runs the mesh loop again.
      const w = await s.client.completions.create({ ...body, frequency_penalty: 0, presence_penalty: 0 });
      expect(tokensOf(w)).toEqual(without);
      expect(meshSteps(s.volunteers)).toBeGreaterThan(before);
    },
    TEST_MS,
  );

  it(
    'a logit_bias naming a token the model does not have is a 400 naming logit_bias, before anything is computed',
    async () => {
      const s = await swarm();
      const e = await s.client.completions.create({ model: 'tiny-untied', prompt: PROMPT, max_tokens: 2, logit_bias: { 999999: 5 } }).then(
        () => null,
        (err: unknown) => err as InstanceType<typeof OpenAI.APIError>,
      );
      expect(e).toBeInstanceOf(OpenAI.APIError);
      // The code of every other bad body (before: the wire's ERR_BAD_REQUEST, unlike a logit_bias key that is not a number).
      expect([e?.status, e?.param, e?.code]).toEqual([400, 'logit_bias', 'invalid_request']);
      expect(e?.message).toMatch(/token 999999 is not in the model's vocabulary/);
      expect(s.volunteers.reduce((a, v) => a + v.sessionsOpened, 0)).toBe(0);
    },
    TEST_MS,
  );
});

interface Choices {
  readonly choices: { index: number; text?: string; message?: { content: string }; logprobs: { tokens?: string[] } | null }[];
  readonly usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  readonly webswarm: {
    verified: boolean;
    prompt_tokens: number[];
    choices: { index: number; tokens: number[]; verified: boolean; votes: unknown[] }[];
  };
}

describe('n choices', () => {
  it(
    'completions, n = 3: choice i is the reference runner’s draw with seed + i, with its own log-probabilities and votes; usage adds them up',
    async () => {
      const s = await swarm();
      const c = (await s.client.completions.create({
        model: 'tiny-untied',
        prompt: PROMPT,
        max_tokens: TOKENS,
        temperature: 1,
        seed: 11,
        n: 3,
        logprobs: 2,
      })) as unknown as Choices;
      expect(c.choices.map((x) => x.index)).toEqual([0, 1, 2]);
      const tokens = c.webswarm.choices.map((x) => x.tokens);
      for (const [i, got] of tokens.entries()) {
        expect(got).toEqual(await s.reference({ temperature: 1, topK: 0, topP: 1, seed: 11 + i }));
        expect(c.choices[i]?.logprobs?.tokens?.length).toBe(got.length);
        expect(c.webswarm.choices[i]?.votes.length).toBe(got.length);
        expect(c.webswarm.choices[i]?.verified).toBe(true);
      }
      expect(new Set(tokens.map((t) => t.join())).size).toBeGreaterThan(1);
      expect(c.webswarm.verified).toBe(true);
      const completion = tokens.reduce((a, t) => a + t.length, 0);
      expect(c.usage).toEqual({
        prompt_tokens: c.webswarm.prompt_tokens.length,
        completion_tokens: completion,
        total_tokens: c.webswarm.prompt_tokens.length + completion,
      });
    },
    TEST_MS,
  );

  it(
    'chat, n = 2, streamed: each choice’s chunks carry its index, the role first and its own finish; the texts are those of the same request not streamed',
    async () => {
      const s = await swarm();
      const body = {
        model: 'tiny-untied',
        messages: [{ role: 'user' as const, content: 'Good morning.' }],
        max_tokens: TOKENS,
        temperature: 1,
        seed: 21,
        n: 2,
      };
      const whole = (await s.client.chat.completions.create(body)) as unknown as Choices;
      for (const [i, x] of whole.webswarm.choices.entries())
        expect(x.tokens).toEqual(await s.reference({ temperature: 1, topK: 0, topP: 1, seed: 21 + i }, whole.webswarm.prompt_tokens));
      const stream = await s.client.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } });
      const texts = ['', ''];
      const roles: number[] = [];
      const finishes: number[] = [];
      let usage: unknown = null;
      for await (const chunk of stream) {
        if (chunk.usage != null) usage = chunk.usage;
        for (const ch of chunk.choices) {
          if (ch.delta.role === 'assistant') roles.push(ch.index);
          if (ch.finish_reason !== null) finishes.push(ch.index);
          texts[ch.index] += ch.delta.content ?? '';
        }
      }
      expect(roles.sort()).toEqual([0, 1]);
      expect(finishes.sort()).toEqual([0, 1]);
      expect(texts).toEqual(whole.choices.map((x) => x.message?.content));
      expect(usage).toEqual(whole.usage);
    },
    TEST_MS,
  );

  it(
    'each choice (or best_of candidate) holds one of the client’s concurrent generations: n over API_MAX_CONCURRENT runs in turns, never more at once, each the reference’s draw',
    async () => {
      const s = await swarm({ apiMaxConcurrent: 2 });
      // Before: a 429 "n = 3 choices are 3 generations, more than the 2 one client may run at once", which no retry cured.
      const c = (await s.client.completions.create({
        model: 'tiny-untied',
        prompt: PROMPT,
        max_tokens: TOKENS,
        temperature: 1,
        seed: 9,
        n: 3,
      })) as unknown as Choices;
      expect(c.choices.map((x) => x.index)).toEqual([0, 1, 2]);
      for (const [i, x] of c.webswarm.choices.entries())
        expect(x.tokens, `choice ${i}`).toEqual(await s.reference({ temperature: 1, topK: 0, topP: 1, seed: 9 + i }));
      // Every session runs on one replica of each stage: none of them held more than the client's 2 at once.
      expect(Math.max(...s.volunteers.map((v) => v.mostOpen))).toBeLessThanOrEqual(2);
      // best_of's candidates are generations too: best_of = 3 for one choice runs its candidates in turns the same way.
      const b = (await s.client.completions.create({
        model: 'tiny-untied',
        prompt: PROMPT,
        max_tokens: 2,
        best_of: 3,
      })) as unknown as { choices: unknown[]; webswarm: { candidates: unknown[] } };
      expect([b.choices.length, b.webswarm.candidates.length]).toEqual([1, 3]);
      expect(Math.max(...s.volunteers.map((v) => v.mostOpen))).toBeLessThanOrEqual(2);
    },
    TEST_MS,
  );

  it(
    'n = 2, streamed, and a replica leaves mid-generation with no spare: one error event ends the stream, the other choice is stopped, the server goes on',
    async () => {
      const { url } = await start(2, 1, { stepTimeoutMs: 2_000 });
      const vs = await joinAll(url, 2, 90);
      (vs.find((v) => v.stage === 1) as NodeVolunteer).leaveAfter(5);
      const res = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'tiny-untied', prompt: PROMPT, max_tokens: 40, temperature: 1, seed: 3, n: 2, stream: true }),
      });
      expect(res.status).toBe(200);
      const events = (await res.text())
        .split('\n')
        .filter((l) => l.startsWith('data: '))
        .map((l) => l.slice(6));
      const errors = events.filter((e) => e.includes('"error"'));
      expect(errors).toHaveLength(1);
      expect(events).not.toContain('[DONE]');
      // The server is whole: it answers, and a new volunteer of stage 1 serves the next request.
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
      volunteer(url, '127.0.0.95');
      await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(2);
      const again = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'tiny-untied', prompt: PROMPT, max_tokens: 4, n: 2 }),
      });
      expect(again.status).toBe(200);
    },
    TEST_MS,
  );
});
