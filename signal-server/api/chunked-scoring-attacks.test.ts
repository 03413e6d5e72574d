// Red team of chunked prompt scoring: a last-stage volunteer whose step:logits for a scored prompt's first step
// (a row per position: SessionOpen.scoreRows, each as its scored form), or for a chunk after it (SessionOpen.scoreChunks), are of its own making, over the real protocol (a Node client of
// the real replica whose logits are changed as they leave: node-volunteer.ts's tamperLogits), its digests honest.
// Beside one honest replica (r = 2, both needed) the step has no majority and the request fails by name: nothing
// unagreed is scored. Beside two (r = 3) it is outvoted: every position the reference's.
import { afterEach, describe, expect, it } from 'vitest';
import { maxScoreRows, type StepLogits } from '../../shared/protocol/messages.js';
import { RELATIVE_TOLERANCE } from '../../shared/vote/tolerance.js';
import { SCORED_ROW_LENGTH, SCORED_TOP, scoredFormRows, topParts } from '../../shared/vote/top-logits.js';
import { type ApiSwarm, API_MODEL as MODEL, postRaw, startApiSwarm } from '../testing/api-swarm.js';
import { promptLogprobs } from '../testing/prompt-logprobs.js';

const TOLERANCE = 1e-5;
const STEP_TIMEOUT_MS = 5_000;
/** 103 tokens of austen-2m: its first 96 (the default rows at austen-2m's vocabulary) in one step. */
const PROMPT =
  'It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife. However little known the feelings or views of such a man may be on his first entering a neighbourhood, this truth is so well fixed in the minds of the surrounding families, that he is considered the rightful property of some one or other of their daughters.';

type Lie = 'one row' | 'a row more' | 'past the limit' | 'one row’s argmax';
/** How far the argmax lie moved its row, against the tolerance of the whole tensor (set when it lies). */
const moved = { by: 0, tolerance: 0 };

/**
 * Step `at`'s logits (several rows) as the liar sends them; other steps' as computed. A scored prompt's rows come as
 * scored forms (top-logits.ts: each row's top tokens, rest, log-sum-exp, the scored token's value), so the lies are
 * made on those: a row is a form.
 */
function lie(how: Lie, vocab: number, at = 0): (m: StepLogits) => StepLogits {
  return (m) => {
    const all = new Float32Array(m.logits.slice(0));
    const unit = all.length % SCORED_ROW_LENGTH === 0 && all.length % vocab !== 0 ? SCORED_ROW_LENGTH : vocab;
    const rows = all.length / unit;
    if (m.step !== at || rows < 2) return m;
    const row = (k: number) => all.subarray(k * unit, (k + 1) * unit);
    let out: Float32Array;
    switch (how) {
      case 'one row':
        out = row(rows - 1).slice();
        break;
      case 'a row more':
        out = new Float32Array((rows + 1) * unit);
        out.set(all);
        out.set(row(rows - 1), rows * unit);
        break;
      case 'past the limit':
        out = new Float32Array((unit === vocab ? maxScoreRows(vocab) + 1 : scoredFormRows(vocab) + 1) * unit);
        break;
      case 'one row’s argmax': {
        if (unit !== SCORED_ROW_LENGTH) throw new Error('a scored prompt’s rows should come as scored forms');
        // The row whose two most likely tokens are closest: its second pushed just past its first, the smallest
        // change that moves a row's argmax (within the tolerance where the gap is small). The form stays well made:
        // the two swap places, and the scored token's value follows where it is one of them.
        const k = SCORED_TOP;
        const gapOf = (j: number) => (all[j * unit] as number) - (all[j * unit + 1] as number);
        let best = 0;
        for (let j = 1; j < rows; j++) if (gapOf(j) < gapOf(best)) best = j;
        out = all.slice();
        const r = out.subarray(best * unit, (best + 1) * unit);
        const [v0, v1, id0, id1] = [r[0] as number, r[1] as number, r[k] as number, r[k + 1] as number];
        r[0] = v0 + 1e-5;
        r[1] = v0;
        r[k] = id1;
        r[k + 1] = id0;
        if (r[2 * k + 2] === v1) r[2 * k + 2] = v0 + 1e-5;
        moved.by = v0 + 1e-5 - v1;
        const { values, logSumExp } = topParts(row(best).subarray(0, unit - 1));
        moved.tolerance = RELATIVE_TOLERANCE * Math.max(1, Math.abs(logSumExp), ...[...values].map(Math.abs));
        break;
      }
    }
    return { ...m, logits: out.buffer as ArrayBuffer };
  };
}

let rig: ApiSwarm | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

/** `at` > 0: the liar lies about that step, a chunk of 5 given tokens (scoreRows 5). */
const start = async (redundancy: number, how: Lie, at = 0) => {
  // The liar is the last volunteer; austen-2m's vocabulary is 2048.
  rig = await startApiSwarm('webswarm-chunked-attacks-', {
    redundancy,
    apiMaxConcurrent: 0,
    // A message refused at the boundary is no answer: the step times out, after 5 s rather than 30.
    stepTimeoutMs: STEP_TIMEOUT_MS,
    // A row more than 96 (the default at austen-2m's vocabulary) is past the limit: 5 rows, so that the session,
    // not the boundary, refuses the sixth.
    ...(how === 'a row more' || at > 0 ? { scoreRows: 5 } : {}),
    volunteer: (i) => (i === redundancy - 1 ? { tamperLogits: lie(how, 2048, at) } : {}),
  });
  return rig;
};
const body = { model: MODEL, prompt: PROMPT, max_tokens: 0, echo: true, logprobs: 1 };

describe('a last-stage liar about a scored prompt’s first step', () => {
  it.each(['one row', 'a row more', 'past the limit', 'one row’s argmax'] as Lie[])(
    'r = 2, %s: no majority, the request fails by name; nothing is scored from it',
    async (how) => {
      const { server, reference, volunteers } = await start(2, how);
      expect(reference.tokenizer.encode(PROMPT).length).toBeGreaterThan(maxScoreRows(2048));
      const r = await postRaw(`${server.address().url}/v1/completions`, body);
      expect(r.status, r.raw).toBeGreaterThanOrEqual(500);
      // Refused at the boundary, a message past the limit is no answer at all: the step times out instead.
      expect(r.body?.error?.code, r.raw).toBe(how === 'past the limit' ? 'ERR_STEP_TIMEOUT' : 'ERR_NO_QUORUM');
      if (how === 'past the limit')
        expect(volunteers[1]?.errors.map((e) => `${e.code} ${e.message}`)).toContainEqual(
          expect.stringMatching(/^ERR_BAD_MESSAGE step:logits: logits hold/),
        );
      if (how === 'one row’s argmax') {
        // The lie is within the tolerance: only the rule that every row's argmax agrees refuses it.
        expect(moved.by).toBeGreaterThan(0);
        expect(moved.by).toBeLessThanOrEqual(moved.tolerance);
      }
    },
    60_000,
  );

  it.each(['one row', 'one row’s argmax'] as Lie[])(
    'r = 3, %s: outvoted, every position the reference’s',
    async (how) => {
      const { client, reference } = await start(3, how);
      const ids = reference.tokenizer.encode(PROMPT);
      const want = await promptLogprobs(reference, ids);
      const got = await client.completions.create(body);
      const lp = got.choices[0]?.logprobs?.token_logprobs ?? [];
      expect(lp).toHaveLength(ids.length);
      for (let i = 1; i < ids.length; i++)
        expect(Math.abs((lp[i] as number) - (want[i - 1] as number)), `position ${i}`).toBeLessThan(TOLERANCE);
    },
    60_000,
  );
});

describe('a last-stage liar about a chunk of the prompt after the first step', () => {
  it.each(['one row', 'a row more'] as Lie[])(
    'r = 2, %s of step 3: no majority, the request fails by name at that step',
    async (how) => {
      const { server } = await start(2, how, 3);
      const r = await postRaw(`${server.address().url}/v1/completions`, body);
      expect(r.status, r.raw).toBeGreaterThanOrEqual(500);
      expect(r.body?.error?.code, r.raw).toBe('ERR_NO_QUORUM');
      expect(r.body?.error?.message, r.raw).toMatch(/^step 3: the logits of .+ were refused/);
    },
    60_000,
  );

  it('r = 3, one row of step 3: outvoted, every position the reference’s', async () => {
    const { client, reference } = await start(3, 'one row', 3);
    const ids = reference.tokenizer.encode(PROMPT);
    const want = await promptLogprobs(reference, ids);
    const got = await client.completions.create(body);
    const lp = got.choices[0]?.logprobs?.token_logprobs ?? [];
    expect(lp).toHaveLength(ids.length);
    for (let i = 1; i < ids.length; i++)
      expect(Math.abs((lp[i] as number) - (want[i - 1] as number)), `position ${i}`).toBeLessThan(TOLERANCE);
  }, 60_000);
});
