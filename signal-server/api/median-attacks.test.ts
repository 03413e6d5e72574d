// Red team of the logits vote's combine where the honest replicas are not bit-identical (a stage of WebGPU and WASM
// volunteers): the element-wise median, not the first answer or a mean, is what the requester is served. Over the
// real protocol: three Node clients of the real replica, one stage of austen-2m (so every replica is the last stage);
// the scored prompt's rows come as scored forms (top-logits.ts), the sampled generation's as whole rows.
// The second's logits leave scaled by 1 ± 2e-6 (another backend's rounding: honest, far inside the tolerance, not
// identical); the third is a nudger: every value but each row's most likely one lowered by 90 % of the tolerance,
// so that it always agrees (same argmax, within the tolerance) and moves the other tokens' log-probabilities.
// The reference runner on the same stage is the oracle.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { argmax } from '../../shared/model/sampling.js';
import type { StepLogits } from '../../shared/protocol/messages.js';
import { maxAbs, RELATIVE_TOLERANCE } from '../../shared/vote/tolerance.js';
import { SCORED_ROW_LENGTH, SCORED_TOP, topParts } from '../../shared/vote/top-logits.js';
import { type ApiSwarm, API_MODEL as MODEL, startApiSwarm } from '../testing/api-swarm.js';
import { logprobOf, promptLogprobs } from '../testing/prompt-logprobs.js';

/** The honest spread (2e-6 relative) moves a log-probability by under 1e-4; the nudge by about 100 × that. */
const BOUND = 1e-4;
const VOCAB = 2048;
const PROMPT = 'It is a truth universally acknowledged, that a single man in possession of a good fortune';

/** How often the nudger lied (every step it computed). */
const nudged = { calls: 0 };

/** Whether `all` holds a scored prompt's rows as scored forms (top-logits.ts), not whole rows. */
const isForms = (all: Float32Array) => all.length % SCORED_ROW_LENGTH === 0 && all.length % VOCAB !== 0;
/** Where a scored form's floats are token ids (left as they are). */
const isId = (i: number) => {
  const at = i % SCORED_ROW_LENGTH;
  return at >= SCORED_TOP && at < 2 * SCORED_TOP;
};

function otherBackend(m: StepLogits): StepLogits {
  const all = new Float32Array(m.logits.slice(0));
  // Scored forms: every value × (1 + 2e-6), which keeps each form's order; whole rows: alternately ± 2e-6.
  if (isForms(all)) for (let i = 0; i < all.length; i++) all[i] = isId(i) ? (all[i] as number) : (all[i] as number) * (1 + 2e-6);
  else for (let i = 0; i < all.length; i++) all[i] = (all[i] as number) * (1 + (i % 2 === 0 ? 2e-6 : -2e-6));
  return { ...m, logits: all.buffer as ArrayBuffer };
}

/** The nudge, in place: every value but each row's most likely one lowered by 90 % of the whole tensor's tolerance. */
function nudge(all: Float32Array): Float32Array {
  const by = 0.9 * RELATIVE_TOLERANCE * Math.max(1, maxAbs(all));
  for (let at = 0; at < all.length; at += VOCAB) {
    const row = all.subarray(at, at + VOCAB);
    const top = argmax(row);
    for (let i = 0; i < VOCAB; i++) if (i !== top) row[i] = (row[i] as number) - by;
  }
  return all;
}

/**
 * The nudge on scored forms, in place: every value but each row's most likely one (and its scored token's, unless
 * that is the most likely), and `rest`, lowered by 90 % of each form's tolerance; the log-sum-exp left.
 */
function nudgeForms(all: Float32Array): Float32Array {
  const k = SCORED_TOP;
  for (let at = 0; at < all.length; at += SCORED_ROW_LENGTH) {
    const form = all.subarray(at, at + SCORED_ROW_LENGTH);
    const { values, logSumExp } = topParts(form.subarray(0, SCORED_ROW_LENGTH - 1));
    const by = 0.9 * RELATIVE_TOLERANCE * Math.max(1, Math.abs(logSumExp), ...[...values].map(Math.abs));
    const top = form[0] as number;
    for (let j = 1; j < k; j++) form[j] = (form[j] as number) - by;
    form[2 * k] = (form[2 * k] as number) - by;
    if (form[2 * k + 2] !== top) form[2 * k + 2] = (form[2 * k + 2] as number) - by;
  }
  return all;
}

function nudger(m: StepLogits): StepLogits {
  nudged.calls += 1;
  const all = new Float32Array(m.logits.slice(0));
  return { ...m, logits: (isForms(all) ? nudgeForms(all) : nudge(all)).buffer as ArrayBuffer };
}

let rig: ApiSwarm | undefined;
beforeAll(async () => {
  rig = await startApiSwarm('webswarm-median-attacks-', {
    redundancy: 3,
    apiMaxConcurrent: 0,
    volunteer: (i) => (i === 1 ? { tamperLogits: otherBackend } : i === 2 ? { tamperLogits: nudger } : {}),
  });
}, 60_000);
afterAll(() => rig?.close());

describe('a nudger beside two honest replicas that differ in their last bits', () => {
  it('moves no log-probability of a scored prompt or of a seeded generation: the median is served', async () => {
    const { client, reference } = rig as ApiSwarm;
    const ids = reference.tokenizer.encode(PROMPT);
    const scored = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 0, echo: true, logprobs: 1 });
    const want = await promptLogprobs(reference, ids);
    const lp = scored.choices[0]?.logprobs?.token_logprobs ?? [];
    expect(lp).toHaveLength(ids.length);
    for (let i = 1; i < ids.length; i++) expect(Math.abs((lp[i] as number) - (want[i - 1] as number)), `position ${i}`).toBeLessThan(BOUND);

    // Sampled: the reference's seeded tokens, each with the reference's log-probability.
    const sampling = { temperature: 1, topK: 0, topP: 1, seed: 11 };
    const expected = (await reference.generateIds(ids, 12, sampling)).tokens;
    const gen = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 12, temperature: 1, seed: 11, logprobs: 1 });
    const body = gen as unknown as { webswarm?: { tokens: number[] } };
    expect(body.webswarm?.tokens).toEqual(expected);
    const path = await promptLogprobs(reference, [...ids, ...expected]);
    const got = gen.choices[0]?.logprobs?.token_logprobs ?? [];
    expect(got).toHaveLength(expected.length);
    for (let t = 0; t < expected.length; t++)
      expect(Math.abs((got[t] as number) - (path[ids.length - 1 + t] as number)), `token ${t}`).toBeLessThan(BOUND);

    // The nudger lied on every step, and the lie shows: on the reference's own rows, a mean of the three answers
    // would move most positions' log-probability past the bound (the first answer, where it is the nudger's, 3 × that).
    expect(nudged.calls).toBeGreaterThan(12);
    const session = reference.session();
    let visible = 0;
    for (let i = 0; i + 1 < ids.length; i++) {
      const row = (await session.forward([ids[i] as number])).subarray(-VOCAB);
      const shift = Math.abs(logprobOf(nudge(row.slice()), ids[i + 1] as number) - logprobOf(row, ids[i + 1] as number));
      if (shift / 3 > BOUND) visible += 1;
    }
    expect(visible).toBeGreaterThan((ids.length - 1) / 2);
  });
});
