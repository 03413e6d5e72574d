// Red team of the top forms of logits (shared/vote/top-logits.ts): where a session's draw reads only the most likely
// tokens, the last stage sends those, not the row, and what the vote compares is then the replica's own claim about
// the tokens it left out. Over the real protocol: three Node clients of the real replica, one stage of austen-2m (so
// every replica is the last stage). The second's forms leave scaled by 1 + 2e-6 (another backend's rounding: honest,
// not identical); the third lies, in one way a request, by rewriting the form the real replica made. The reference
// runner on the same stage is the oracle: the requester gets its tokens and log-probabilities every time.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SamplingParams } from '../../shared/model/sampling.js';
import type { StepLogits } from '../../shared/protocol/messages.js';
import { drawnFormLength } from '../../shared/vote/drawn-forms.js';
import { RELATIVE_TOLERANCE } from '../../shared/vote/tolerance.js';
import { MIN_TOP_LOGITS, TOP_MARGIN, topLogitsLength, topParts } from '../../shared/vote/top-logits.js';
import { mapLogitValues } from '../../testing/logit-values.js';
import { type ApiSwarm, API_MODEL as MODEL, startApiSwarm, type WebswarmBody } from '../testing/api-swarm.js';
import { promptLogprobs } from '../testing/prompt-logprobs.js';

const BOUND = 1e-4;
const VOCAB = 2048;
const PROMPT = 'It is a truth universally acknowledged, that a single man';
const TOKENS = 6;

type Lie = 'none' | 'nudge' | 'swap' | 'hide' | 'row' | 'mass';
/** How the third replica lies now, and how often it did, per lie. */
let lie: Lie = 'none';
const lied = new Map<Lie, number>();
/** The byte sizes of the honest replica's logits messages since the last reset. */
const sizes: number[] = [];

function honest(m: StepLogits): StepLogits {
  sizes.push(m.logits.byteLength);
  return m;
}

/** Another backend's rounding: every value of a form (`rest`, the log-sum-exp and a drawn form's weights too) × (1 + 2e-6). */
function otherBackend(m: StepLogits): StepLogits {
  const all = new Float32Array(m.logits);
  if (all.length === VOCAB) return m;
  // A drawn form of 48 (top_k 40) has the length of a top form of 50, which no request here asks for.
  const drawnTokens = all.length === drawnFormLength(40 + TOP_MARGIN) ? 40 + TOP_MARGIN : MIN_TOP_LOGITS;
  return { ...m, logits: mapLogitValues(all, VOCAB, (v) => v * (1 + 2e-6), drawnTokens).buffer as ArrayBuffer };
}

/** The form rewritten by the lie in force (a well-formed form, except where the lie is a malformed one). */
function liar(m: StepLogits): StepLogits {
  const form = new Float32Array(m.logits.slice(0));
  if (lie === 'none' || form.length === VOCAB || form.length === drawnFormLength(MIN_TOP_LOGITS)) return m;
  lied.set(lie, (lied.get(lie) ?? 0) + 1);
  const k = form.length / 2 - 1;
  const { values, ids } = topParts(form);
  const tol = RELATIVE_TOLERANCE * Math.max(1, Math.abs(form[2 * k + 1] as number), ...values.map(Math.abs));
  if (lie === 'nudge') {
    // Inside the tolerance, so that it always agrees: every token but the most likely one, and the tail, 90 % of it lower.
    for (let j = 1; j < k; j++) values[j] = (values[j] as number) - 0.9 * tol;
    form[2 * k] = (form[2 * k] as number) - 0.9 * tol;
  } else if (lie === 'swap') {
    // The second most likely token claimed the most likely, half a unit above the first (the mass raised to match).
    const [a, b] = [ids[0] as number, ids[1] as number];
    values[1] = values[0] as number;
    values[0] = (values[0] as number) + 0.5;
    ids[0] = b;
    ids[1] = a;
    form[2 * k + 1] = (form[2 * k + 1] as number) + 0.5;
  } else if (lie === 'hide') {
    // The second most likely token hidden: the others move up, the last place a token at `rest`, the tail's top.
    const gone = ids[1] as number;
    values.copyWithin(1, 2);
    ids.copyWithin(1, 2);
    values[k - 1] = form[2 * k] as number;
    let free = 0;
    while ([...ids.subarray(0, k - 1)].includes(free) || free === gone) free++;
    ids[k - 1] = free;
  } else if (lie === 'row') {
    return { ...m, logits: new Float32Array(VOCAB).buffer };
  } else {
    // A mass no row could have: the log-sum-exp below the largest value.
    form[2 * k + 1] = (values[0] as number) - 1;
  }
  return { ...m, logits: form.buffer as ArrayBuffer };
}

let rig: ApiSwarm | undefined;
beforeAll(async () => {
  rig = await startApiSwarm('webswarm-top-attacks-', {
    redundancy: 3,
    apiMaxConcurrent: 0,
    volunteer: (i) => ({ tamperLogits: i === 0 ? honest : i === 1 ? otherBackend : liar }),
  });
}, 60_000);
afterAll(() => rig?.close());

/** A completion of TOKENS with logprobs 5; its tokens and log-probabilities checked against the reference runner's. */
async function completion(sampling: SamplingParams, extra: Record<string, number | Record<string, number>>) {
  const { client, reference } = rig as ApiSwarm;
  const ids = reference.tokenizer.encode(PROMPT);
  const want = (await reference.generateIds(ids, TOKENS, sampling)).tokens;
  const res = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: TOKENS, logprobs: 5, ...extra });
  const body = res as unknown as WebswarmBody;
  expect(body.webswarm.tokens).toEqual(want);
  const path = await promptLogprobs(reference, [...ids, ...want]);
  const got = res.choices[0]?.logprobs?.token_logprobs ?? [];
  expect(got).toHaveLength(TOKENS);
  for (let t = 0; t < TOKENS; t++)
    expect(Math.abs((got[t] as number) - (path[ids.length - 1 + t] as number)), `token ${t}`).toBeLessThan(BOUND);
  // The 5 most likely at each place and the token drawn, where it is not among them (fewer keys where two tokens have
  // one text): the best no less likely than the token.
  const tops = res.choices[0]?.logprobs?.top_logprobs ?? [];
  tops.forEach((top, t) => {
    const values = Object.values(top ?? {});
    expect(values.length).toBeGreaterThan(0);
    expect(values.length).toBeLessThanOrEqual(6);
    expect(Math.max(...values)).toBeGreaterThanOrEqual((got[t] as number) - BOUND);
  });
  return body.webswarm.votes.map((v) => v.votes[0] as { agreed: number; disagreed: number });
}

const GREEDY_REQUEST = { temperature: 0 };
const GREEDY_SAMPLING: SamplingParams = { temperature: 0, topK: 0, topP: 1, seed: 0 };

describe('top forms of logits, over the real protocol', () => {
  it('go where the draw reads only the most likely tokens (greedy, top_k), drawn forms at a temperature alone, whole rows with logit_bias', async () => {
    lie = 'none';
    sizes.length = 0;
    await completion(GREEDY_SAMPLING, GREEDY_REQUEST);
    expect(new Set(sizes)).toEqual(new Set([topLogitsLength(MIN_TOP_LOGITS) * 4]));
    sizes.length = 0;
    await completion({ temperature: 0.9, topK: 40, topP: 0.95, seed: 4 }, { temperature: 0.9, top_k: 40, top_p: 0.95, seed: 4 });
    // Sampled with top_k 40: a drawn form of 48 (drawn-forms.ts): the top form and the replica's draw.
    expect(new Set(sizes)).toEqual(new Set([drawnFormLength(40 + TOP_MARGIN) * 4]));
    // A temperature alone: drawn forms (drawn-forms.ts); with logit_bias, whole rows.
    sizes.length = 0;
    await completion({ temperature: 0.9, topK: 0, topP: 1, seed: 4 }, { temperature: 0.9, seed: 4 });
    expect(new Set(sizes)).toEqual(new Set([drawnFormLength(MIN_TOP_LOGITS) * 4]));
    sizes.length = 0;
    await completion(
      { temperature: 0.9, topK: 0, topP: 1, seed: 4, logitBias: [[7, 2]] },
      { temperature: 0.9, seed: 4, logit_bias: { '7': 2 } },
    );
    expect(new Set(sizes)).toEqual(new Set([VOCAB * 4]));
  }, 120_000);

  it('a nudger inside the tolerance agrees and moves no log-probability: the median is served', async () => {
    lie = 'nudge';
    await completion(GREEDY_SAMPLING, GREEDY_REQUEST);
    expect(lied.get('nudge')).toBeGreaterThanOrEqual(TOKENS);
  }, 60_000);

  for (const [how, what] of [
    ['swap', 'claims another most likely token'],
    ['hide', 'hides the second most likely token'],
    ['row', 'sends a whole row where a top form was asked for'],
    ['mass', 'sends a log-sum-exp no row could have'],
  ] as const)
    it(`a replica that ${what} is outvoted at every token, and the requester gets the reference's`, async () => {
      lie = how;
      const votes = await completion(GREEDY_SAMPLING, GREEDY_REQUEST);
      expect(lied.get(how)).toBeGreaterThanOrEqual(TOKENS);
      for (const v of votes) {
        expect(v.agreed).toBe(2);
        expect(v.disagreed).toBe(1);
      }
    }, 60_000);
});
