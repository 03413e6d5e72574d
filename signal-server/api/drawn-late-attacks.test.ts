// Red team of drawn forms (shared/vote/drawn-forms.ts) where honest replicas are slow, found by a red-team helper:
// a liar answers first with a drawn form whose weights sit at the tolerance's edge and whose drawn token is another,
// one honest replica comes 40 ms later, the other after the vote's settle wait (SETTLE_MS, 250 ms). The liar and
// the first honest replica agree, no token has a majority of draws, and the coordinator took the vote when the wait
// ran out: a draw again from the median of the two forms, whose weights the liar moved, served other tokens than the
// reference runner's. Now a drawn form with no majority token is not taken before the last replica answers (or the
// step times out: an error). Over the real protocol: three Node clients of the real replica, one stage of austen-2m.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SamplingParams } from '../../shared/model/sampling.js';
import type { StepLogits } from '../../shared/protocol/messages.js';
import { SETTLE_MS } from '../../shared/swarm/replica-core.js';
import { DRAWN_EXTRA, drawnFormLength, drawnParts } from '../../shared/vote/drawn-forms.js';
import { MIN_TOP_LOGITS, topParts } from '../../shared/vote/top-logits.js';
import { mapLogitValues } from '../../testing/logit-values.js';
import { type ApiSwarm, API_MODEL as MODEL, startApiSwarm, type WebswarmBody } from '../testing/api-swarm.js';

const VOCAB = 2048;
const PROMPT = 'It is a truth universally acknowledged, that a single man';
const TOKENS = 12;
const SAMPLING: SamplingParams = { temperature: 1, topK: 0, topP: 1, seed: 5 };
const lied = { calls: 0 };

/** The liar: the weights 99 % of the tolerance down (the mass the draw is scaled by shrinks), another token drawn. */
function liar(m: StepLogits): StepLogits {
  const all = new Float32Array(m.logits);
  if (all.length !== drawnFormLength(MIN_TOP_LOGITS)) return m;
  lied.calls += 1;
  const out = mapLogitValues(all, VOCAB, (v, role, tol) => (role === 'weight' ? v - 0.99 * tol : v));
  const { values, ids } = topParts(drawnParts(out).form);
  // Another of the named tokens, at its named value (a well-formed form).
  const j = ids[0] === drawnParts(out).drawn ? 1 : 0;
  out[out.length - DRAWN_EXTRA + 2] = ids[j] as number;
  out[out.length - 1] = values[j] as number;
  return { ...m, logits: out.buffer as ArrayBuffer };
}

const after = (ms: number) => ({ output: (_step: number, d: Float32Array) => d, delayMs: ms });

let rig: ApiSwarm | undefined;
beforeAll(async () => {
  rig = await startApiSwarm('webswarm-drawn-late-', {
    redundancy: 3,
    apiMaxConcurrent: 0,
    volunteer: (i) => (i === 0 ? { tamperLogits: liar } : i === 1 ? { fault: after(40) } : { fault: after(SETTLE_MS + 350) }),
  });
}, 60_000);
afterAll(() => rig?.close());

describe('a liar answering first beside one honest replica, the other honest one after the settle wait', () => {
  it('cannot have a draw made from its weights: the majority’s draw is waited for, and every token is the reference’s', async () => {
    const { client, reference } = rig as ApiSwarm;
    const ids = reference.tokenizer.encode(PROMPT);
    const want = (await reference.generateIds(ids, TOKENS, SAMPLING)).tokens;
    const res = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: TOKENS, temperature: 1, seed: 5 });
    const body = res as unknown as WebswarmBody;
    expect(body.webswarm.tokens).toEqual(want);
    expect(lied.calls).toBeGreaterThanOrEqual(TOKENS);
    // Each step waited for the late replica: all three in the vote.
    for (const v of body.webswarm.votes) expect(v.votes[0]?.agreed).toBe(3);
  }, 90_000);
});
