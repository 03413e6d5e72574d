// Red team of the vote's grouping (shared/vote/quorum.ts): agreement within a tolerance is not transitive, so a liar
// that answers first at the tolerance's edge of one honest replica agrees with it and not with another honest one.
// Grouped by each group's first answer, that liar and the first honest replica made the majority, the second honest
// replica was counted as disagreeing (its record marked against it), and the value served was the mean of the liar's
// and one honest answer: half the tolerance off. Over the real protocol: three Node clients of the real replica, one
// stage of austen-2m (so every replica is the last stage). The liar answers at once; both honest replicas answer
// 40 ms later (well inside the vote's settle wait), the second on another backend's rounding. The liar rewrites the
// real replica's logits (a top form, a drawn form or whole rows): every value but the most likely lowered by 99.5 % of the
// tolerance. The reference runner on the same stage is the oracle.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GREEDY, type SamplingParams } from '../../shared/model/sampling.js';
import type { StepLogits } from '../../shared/protocol/messages.js';
import { agreeDrawnForms, drawnFormLength, drawnFormOf } from '../../shared/vote/drawn-forms.js';
import { agreeLogitRows } from '../../shared/vote/quorum.js';
import { agreeTopLogits, MIN_TOP_LOGITS, topLogitsOf } from '../../shared/vote/top-logits.js';
import { mapLogitValues } from '../../testing/logit-values.js';
import { type ApiSwarm, API_MODEL as MODEL, startApiSwarm, type WebswarmBody } from '../testing/api-swarm.js';
import { promptLogprobs } from '../testing/prompt-logprobs.js';

const BOUND = 1e-4;
const VOCAB = 2048;
const PROMPT = 'It is a truth universally acknowledged, that a single man';
const TOKENS = 8;
/** How far below the truth the liar puts each value, in tolerances: agreeing with the truth, by a hair. */
const EDGE = 0.995;
/** How far above the truth the other backend rounds, in tolerances: with the edge, just past the tolerance. */
const ROUNDING = 0.01;
/** The delay of both honest replicas, so that the liar's answer is always the first. */
const HONEST_DELAY_MS = 40;

/** How often the liar lied, per form of logits: top forms (greedy), drawn forms (a temperature), whole rows. */
const lied = { top: 0, drawn: 0, rows: 0 };

const kindOf = (all: Float32Array) =>
  all.length % VOCAB === 0 ? 'rows' : all.length === drawnFormLength(MIN_TOP_LOGITS) ? 'drawn' : 'top';

/**
 * The liar: every value but the most likely (a form's `rest`, log-sum-exp and drawn token's too) lowered to the
 * tolerance's edge of the truth; a drawn form's weights left (lowered, a sharp row's would weigh less than its top).
 */
function edgeLie(all: Float32Array): Float32Array {
  return mapLogitValues(all, VOCAB, (v, role, tol) => (role === 'top' || role === 'weight' ? v : v - EDGE * tol));
}

function edgeLiar(m: StepLogits): StepLogits {
  const all = new Float32Array(m.logits);
  lied[kindOf(all)] += 1;
  return { ...m, logits: edgeLie(all).buffer as ArrayBuffer };
}

/** Another backend's rounding: every value (the log-sum-exp and weights too) raised by 1 % of the tolerance. */
function otherRounding(all: Float32Array): Float32Array {
  return mapLogitValues(all, VOCAB, (v, _role, tol) => v + ROUNDING * tol);
}

function otherBackend(m: StepLogits): StepLogits {
  return { ...m, logits: otherRounding(new Float32Array(m.logits)).buffer as ArrayBuffer };
}

const SAMPLED: SamplingParams = { temperature: 0.9, topK: 0, topP: 1, seed: 7 };
const slow = { output: (_step: number, d: Float32Array) => d, delayMs: HONEST_DELAY_MS };

let rig: ApiSwarm | undefined;
beforeAll(async () => {
  rig = await startApiSwarm('webswarm-edge-liar-', {
    redundancy: 3,
    apiMaxConcurrent: 0,
    volunteer: (i) => (i === 0 ? { tamperLogits: edgeLiar } : i === 1 ? { fault: slow } : { fault: slow, tamperLogits: otherBackend }),
  });
}, 60_000);
afterAll(() => rig?.close());

describe('a liar at the tolerance edge of one honest replica, answering first', () => {
  it("the rig: on the reference runner's logits, the liar agrees with the honest answer and not with the other rounding", async () => {
    const { reference } = rig as ApiSwarm;
    const ids = reference.tokenizer.encode(PROMPT);
    const row = (await reference.session().forward(ids)).slice(-VOCAB);
    for (const [truth, agree] of [
      [topLogitsOf(row, MIN_TOP_LOGITS), agreeTopLogits],
      [drawnFormOf(row, MIN_TOP_LOGITS, SAMPLED, 0.5), agreeDrawnForms],
      [row, agreeLogitRows(VOCAB)],
    ] as const) {
      const lie = edgeLie(truth);
      const other = otherRounding(truth);
      // Both ways round: the vote compares each answer with those before it.
      for (const [a, b, want] of [
        [lie, truth, true],
        [truth, lie, true],
        [lie, other, false],
        [other, lie, false],
        [truth, other, true],
        [other, truth, true],
      ] as const)
        expect(agree(a, b)).toBe(want);
    }
  });

  for (const [what, request, sampling, form] of [
    ['greedy (top forms)', { temperature: 0 }, GREEDY, 'top'],
    ['sampled (drawn forms)', { temperature: 0.9, seed: 7 }, SAMPLED, 'drawn'],
    [
      'sampled with logit_bias (whole rows)',
      { temperature: 0.9, seed: 7, logit_bias: { '5': 1 } },
      { ...SAMPLED, logitBias: [[5, 1]] },
      'rows',
    ],
  ] as const)
    it(`keeps neither honest replica out of the majority nor moves a log-probability: ${what}`, async () => {
      const { client, reference } = rig as ApiSwarm;
      const ids = reference.tokenizer.encode(PROMPT);
      const want = (await reference.generateIds(ids, TOKENS, sampling)).tokens;
      const before = { ...lied };
      const res = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: TOKENS, logprobs: 1, ...request });
      const body = res as unknown as WebswarmBody;
      expect(body.webswarm.tokens).toEqual(want);
      // The liar lied at every token, in the form the request asks for.
      expect(lied[form] - before[form]).toBeGreaterThanOrEqual(TOKENS);
      // Each step: all three in the majority (the liar is within the tolerance; no honest replica is marked).
      for (const v of body.webswarm.votes) expect(v.votes[0]).toMatchObject({ agreed: 3, disagreed: 0 });
      // The median of the three is served: each token's log-probability the reference's. A mean of the liar's and
      // the first honest answer would be half the tolerance (about 5e-3 here) off.
      const path = await promptLogprobs(reference, [...ids, ...want]);
      const got = res.choices[0]?.logprobs?.token_logprobs ?? [];
      expect(got).toHaveLength(TOKENS);
      for (let t = 0; t < TOKENS; t++)
        expect(Math.abs((got[t] as number) - (path[ids.length - 1 + t] as number)), `token ${t}`).toBeLessThan(BOUND);
    }, 90_000);
});
