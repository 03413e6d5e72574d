// Red team of the logits vote's combine where the honest replicas are not bit-identical (a stage of WebGPU and WASM
// volunteers): the element-wise median, not the first answer or a mean, is what the requester is served. Over the
// real protocol: three Node clients of the real replica, one stage of austen-2m (so every replica is the last stage);
// the scored prompt's rows come as scored forms (top-logits.ts), a sampled generation's as drawn forms
// (drawn-forms.ts), and with logit_bias as whole rows. The second's logits leave scaled by 1 + 2e-6 (another
// backend's rounding: honest, far inside the tolerance, not identical); the third is a nudger: every value but each
// row's (or form's) most likely one lowered by 90 % of the tolerance,
// so that it always agrees (same argmax, within the tolerance) and moves the other tokens' log-probabilities.
// The reference runner on the same stage is the oracle.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SamplingParams } from '../../shared/model/sampling.js';
import type { StepLogits } from '../../shared/protocol/messages.js';
import { mapLogitValues } from '../../testing/logit-values.js';
import { type ApiSwarm, API_MODEL as MODEL, startApiSwarm } from '../testing/api-swarm.js';
import { logprobOf, promptLogprobs } from '../testing/prompt-logprobs.js';

/** The honest spread (2e-6 relative) moves a log-probability by under 1e-4; the nudge by about 100 × that. */
const BOUND = 1e-4;
const VOCAB = 2048;
const PROMPT = 'It is a truth universally acknowledged, that a single man in possession of a good fortune';

/** How often the nudger lied (every step it computed). */
const nudged = { calls: 0 };

/** Another backend's rounding: every value × (1 + 2e-6), which keeps each form's order. */
function otherBackend(m: StepLogits): StepLogits {
  return { ...m, logits: mapLogitValues(new Float32Array(m.logits), VOCAB, (v) => v * (1 + 2e-6)).buffer as ArrayBuffer };
}

/**
 * The nudge: every value but each row's (or form's) most likely one, and a form's `rest`, lowered by 90 % of the
 * tolerance; a form's log-sum-exp and a drawn form's weights left.
 */
function nudge(all: Float32Array): Float32Array {
  return mapLogitValues(all, VOCAB, (v, role, tol) => (role === 'value' || role === 'rest' ? v - 0.9 * tol : v));
}

function nudger(m: StepLogits): StepLogits {
  nudged.calls += 1;
  return { ...m, logits: nudge(new Float32Array(m.logits)).buffer as ArrayBuffer };
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

    // Sampled (drawn forms), and with logit_bias (whole rows): the reference's seeded tokens, each with the
    // reference's log-probability.
    for (const [sampling, extra] of [
      [{ temperature: 1, topK: 0, topP: 1, seed: 11 }, {}],
      [{ temperature: 1, topK: 0, topP: 1, seed: 11, logitBias: [[9, 1]] }, { logit_bias: { '9': 1 } }],
    ] as [SamplingParams, Record<string, unknown>][]) {
      const expected = (await reference.generateIds(ids, 12, sampling)).tokens;
      const gen = await client.completions.create({
        model: MODEL,
        prompt: PROMPT,
        max_tokens: 12,
        temperature: 1,
        seed: 11,
        logprobs: 1,
        ...extra,
      });
      const body = gen as unknown as { webswarm?: { tokens: number[] } };
      expect(body.webswarm?.tokens).toEqual(expected);
      const path = await promptLogprobs(reference, [...ids, ...expected]);
      const got = gen.choices[0]?.logprobs?.token_logprobs ?? [];
      expect(got).toHaveLength(expected.length);
      for (let t = 0; t < expected.length; t++)
        expect(Math.abs((got[t] as number) - (path[ids.length - 1 + t] as number)), `token ${t}`).toBeLessThan(BOUND);
    }

    // The nudger lied on every step, and the lie shows: on the reference's own rows, a mean of the three answers
    // would move most positions' log-probability past the bound (the first answer, where it is the nudger's, 3 × that).
    expect(nudged.calls).toBeGreaterThan(24);
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
