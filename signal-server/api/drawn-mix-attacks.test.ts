// Red team of drawn forms (shared/vote/drawn-forms.ts), found by a red-team helper: a drawn form's weights (`allT`,
// `nucleusT`) are numbers apart from its values, and the accepted form takes each number's median on its own. Where
// two honest replicas differ by a tenth of the tolerance (another backend's rounding), a liar within half a tolerance
// of both has the values of one and the weights of the other taken, and a draw again from that median form is scaled
// by a mass no replica had: at seed 80 the requester was served another token than both honest replicas drew (with
// `verified: true`), at seed 2126 a 503. The coordinator now serves the token the majority drew. Over the real
// protocol: three Node clients of the real replica, one stage of austen-2m; the liar answers first, both honest
// replicas 40 ms later. The reference runner is the oracle; the seeds are the helper's, found by an offline search.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StepLogits } from '../../shared/protocol/messages.js';
import { drawnFormLength } from '../../shared/vote/drawn-forms.js';
import { MIN_TOP_LOGITS } from '../../shared/vote/top-logits.js';
import { mapLogitValues } from '../../testing/logit-values.js';
import { type ApiSwarm, API_MODEL as MODEL, postRaw, startApiSwarm, type WebswarmBody } from '../testing/api-swarm.js';

const VOCAB = 2048;
const PROMPT = 'It is a truth universally acknowledged, that a single man';

/** Values half a tolerance up and weights half down (`inside`: the mass shrinks), or the reverse (`beyond`). */
let mode: 'inside' | 'beyond' = 'inside';
const lied = { calls: 0 };

const isDrawn = (a: Float32Array) => a.length === drawnFormLength(MIN_TOP_LOGITS);
const tamper = (f: (a: Float32Array) => Float32Array) => (m: StepLogits) => {
  const a = new Float32Array(m.logits);
  return isDrawn(a) ? { ...m, logits: f(a).buffer as ArrayBuffer } : m;
};
const mix = (a: Float32Array) => {
  lied.calls += 1;
  return mapLogitValues(a, VOCAB, (v, role, tol) => ((role === 'weight') === (mode === 'beyond') ? v + 0.5 * tol : v - 0.5 * tol));
};
const slow = { output: (_step: number, d: Float32Array) => d, delayMs: 40 };

let rig: ApiSwarm | undefined;
beforeAll(async () => {
  rig = await startApiSwarm('webswarm-drawn-mix-', {
    redundancy: 3,
    apiMaxConcurrent: 0,
    volunteer: (i) =>
      i === 0
        ? { tamperLogits: tamper(mix) }
        : i === 1
          ? { fault: slow }
          : { fault: slow, tamperLogits: tamper((a) => mapLogitValues(a, VOCAB, (v, _role, tol) => v + 0.1 * tol)) },
  });
}, 60_000);
afterAll(() => rig?.close());

describe('a liar that mixes one honest replica’s values with the other’s weights', () => {
  for (const [how, seed, was] of [
    ['inside', 80, 'another token'],
    ['beyond', 2126, 'a 503'],
  ] as const)
    it(`cannot move the token the honest majority drew (${how}, seed ${seed}: it was ${was})`, async () => {
      mode = how;
      const { server, reference } = rig as ApiSwarm;
      const ids = reference.tokenizer.encode(PROMPT);
      const want = (await reference.generateIds(ids, 1, { temperature: 1, topK: 0, topP: 1, seed })).tokens;
      const before = lied.calls;
      const r = await postRaw(`${server.address().url}/v1/completions`, {
        model: MODEL,
        prompt: PROMPT,
        max_tokens: 1,
        temperature: 1,
        seed,
      });
      expect(r.status, r.raw).toBe(200);
      const body = JSON.parse(r.raw) as WebswarmBody;
      expect(body.webswarm.tokens).toEqual(want);
      expect(lied.calls).toBeGreaterThan(before);
      // The liar stays within the tolerance: it agrees, and still cannot move the draw.
      expect(body.webswarm.votes[0]?.votes[0]?.agreed).toBe(3);
    }, 60_000);
});
