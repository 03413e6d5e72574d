// Red team over HTTP: a real server on port 0, real-protocol Node volunteers, two stages at r = 3, a scored
// prompt (completions' echo) whose tokens go to stage 0 ahead (283ae5c). Each choice's prompt log-probabilities
// must be the reference runner's (fed the prompt a token at a time) and its tokens after the prompt the reference's
// with the same sampling, whatever the hostile volunteers do.
import { describe, expect, it } from 'vitest';
import { GREEDY } from '../shared/model/sampling.js';
import type { StepDigest } from '../shared/protocol/messages.js';
import { faultBehaviour } from '../shared/swarm/faults.js';
import { ensureStages } from './models/model-folder.js';
import { ReferenceRunner } from './reference/reference-runner.js';
import { httpSwarm, MODEL, PROMPT, WAIT_MS } from './testing/http-swarm.js';
import type { NodeVolunteer, NodeVolunteerOptions } from './testing/node-volunteer.js';
import { promptLogprobs } from './testing/prompt-logprobs.js';

const { start, joinAll, stageCache } = httpSwarm('rt-score-http');

interface Scored {
  choices: { index: number; text: string; logprobs: { token_logprobs: (number | null)[] } }[];
  webswarm?: unknown;
}

async function scoreThrough(
  url: string,
  body: Record<string, unknown>,
  ids: readonly number[],
  sampling: Parameters<ReferenceRunner['generateIds']>[2],
  maxTokens: number,
): Promise<Scored> {
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tiny-untied', prompt: PROMPT, echo: true, logprobs: 1, max_tokens: maxTokens, ...body }),
  });
  const text = await res.text();
  expect(res.status, text).toBe(200);
  const got = JSON.parse(text) as Scored;
  const { dir } = await ensureStages(MODEL, { stages: 2 }, stageCache());
  const reference = await ReferenceRunner.fromStageDir(dir);
  try {
    const want = await promptLogprobs(reference, ids);
    const after = (await reference.generateIds(ids, maxTokens, sampling)).tokens;
    const wantText = PROMPT + reference.tokenizer.decode(after);
    for (const c of got.choices) {
      const lps = c.logprobs.token_logprobs;
      expect(lps[0]).toBeNull();
      for (let i = 0; i + 1 < ids.length; i++)
        expect(Math.abs((lps[i + 1] as number) - (want[i] as number)), `choice ${c.index} position ${i + 1}`).toBeLessThan(1e-5);
      expect(c.text, `choice ${c.index}`).toBe(wantText);
    }
  } finally {
    await reference.close();
  }
  return got;
}

/**
 * In join order the stages alternate: volunteers 0, 2, 4 hold stage 0, 1, 3, 5 stage 1. Each position a step (a
 * prompt's first positions in one step off), the path a replay and a prompt past maxScoreRows take: its tokens
 * sent ahead.
 */
async function twoStages(options: (i: number) => NodeVolunteerOptions = () => ({})) {
  const { url, tokenizer } = await start(2, 3, { scoreRows: 1 });
  const ids = tokenizer.encode(PROMPT);
  const all = await joinAll(url, 6, 140, options);
  return { url, ids, all };
}

describe('a scored prompt over HTTP, its tokens sent ahead', () => {
  it('echo, n = 2, max_tokens = 3, frequency_penalty and logit_bias, a noise liar in each stage: each choice is the reference', async () => {
    const { url, ids, all } = await twoStages((i) =>
      i === 1 ? { fault: faultBehaviour('noise', 41) } : i === 2 ? { fault: faultBehaviour('noise', 42) } : {},
    );
    expect(all.map((v) => v.stage)).toEqual([0, 1, 0, 1, 0, 1]);
    const biased = 17;
    await scoreThrough(
      url,
      { n: 2, temperature: 0, frequency_penalty: 1.5, logit_bias: { [String(biased)]: 4 } },
      ids,
      { ...GREEDY, frequencyPenalty: 1.5, logitBias: [[biased, 4]] },
      3,
    );
  });

  it('a stage-0 volunteer that reports each step as the next one (its reports all of steps ahead) is outvoted and evicted; the prompt is scored as the reference', async () => {
    const shifted = (m: StepDigest): StepDigest => ({ ...m, step: m.step + 1 });
    const { url, ids, all } = await twoStages((i) => (i === 2 ? { tamper: shifted } : {}));
    const liar = all[2] as NodeVolunteer;
    expect(liar.stage).toBe(0);
    await scoreThrough(url, { max_tokens: 2, temperature: 0 }, ids, GREEDY, 2);
    // Every honest volunteer still in its place, none evicted or struck.
    for (const v of all.filter((x) => x !== liar))
      expect(
        v.errors.map((e) => e.code),
        `volunteer of stage ${v.stage}`,
      ).toEqual([]);
    await expect.poll(() => liar.errors.map((e) => e.code), { timeout: WAIT_MS }).toContain('ERR_EVICTED');
  });

  it('three scored prompts one after the other, a slow honest volunteer in stage 1: nobody honest is struck or evicted', async () => {
    const slow = { ...faultBehaviour('noise', 0), output: (_s: number, d: Float32Array) => d, delayMs: 40 };
    const { url, ids, all } = await twoStages((i) => (i === 3 ? { fault: slow } : {}));
    for (let k = 0; k < 3; k++) await scoreThrough(url, { max_tokens: 1, temperature: 0 }, ids, GREEDY, 1);
    for (const v of all)
      expect(
        v.errors.map((e) => e.code),
        `volunteer of stage ${v.stage}`,
      ).toEqual([]);
  });
});
