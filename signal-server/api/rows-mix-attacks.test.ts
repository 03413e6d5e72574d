// Red team of whole rows (a temperature with a logit_bias or penalties: no drawn form carries those, so each
// last-stage replica sends its whole row). The accepted row is the element-wise median of the agreeing rows, each
// value a median on its own. Where two honest replicas round differently (another backend: a tenth of the
// tolerance, up for some tokens and down for others), a liar within half a tolerance of both picks, token by token,
// which honest value the median takes, and moves the draw made from it: the requester was served another token than
// both honest replicas' rows give. With one honest replica after the settle wait, the median of the liar's row and
// one honest row (their mean) was drawn from at the wait's end. The coordinator now serves the token a majority of
// the replicas' own rows give (rowsMajorityDraw), and waits for the rest where none has one. Over the real protocol:
// three Node clients of the real replica, one stage of austen-2m (so every replica is the last stage). The liar
// answers at once. The reference runner is the oracle; each test finds, on the reference's own row, a seed at which
// the median's draw is another token than the honest replicas' (the rig check), then asks the swarm with it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomAt, type SamplingParams, sampleToken } from '../../shared/model/sampling.js';
import type { StepLogits } from '../../shared/protocol/messages.js';
import { SETTLE_MS } from '../../shared/swarm/replica-core.js';
import { agreeLogitRows, elementwiseMedian } from '../../shared/vote/quorum.js';
import { liftMostLikely, rowTolerance } from '../../testing/logit-values.js';
import { type ApiSwarm, API_MODEL as MODEL, startApiSwarm, type WebswarmBody } from '../testing/api-swarm.js';

const VOCAB = 2048;
const PROMPT = 'It is a truth universally acknowledged, that a single man';
const BIAS = { '5': 1 } as const;
const sampling = (seed: number): SamplingParams => ({ temperature: 1, topK: 0, topP: 1, seed, logitBias: [[5, 1]] });
/** Another backend's rounding, in tolerances, up or down token by token (the measured WebGPU-vs-WASM spread). */
const ROUNDING = 0.1;
/** How many seeds the rig check tries. */
const SEEDS = 4000;
/** How many of the most likely tokens the liar raises (the rest it lowers), tried in turn by the rig check. */
const RAISED = [1, 2, 3, 4, 6, 8, 12, 16, 32, 64];

const sign = (i: number) => (Math.imul(i + 1, 0x9e3779b1) >>> 31 === 1 ? 1 : -1);
const isRow = (a: Float32Array) => a.length === VOCAB;

/** Another backend's rounding of a row: each value a tenth of the tolerance up or down. */
function otherRounding(row: Float32Array): Float32Array {
  const tol = rowTolerance(row);
  return row.map((v, i) => v + ROUNDING * tol * sign(i));
}

/** The liar's settings, set by each test before it asks: how many tokens it raises and how far (in tolerances). */
const liar = { raised: 1, by: 0.5, calls: 0 };
const liarHook = (m: StepLogits): StepLogits => {
  const row = new Float32Array(m.logits);
  if (!isRow(row)) return m;
  liar.calls += 1;
  return { ...m, logits: liftMostLikely(row, liar.raised, liar.by).buffer as ArrayBuffer };
};
const roundingHook = (m: StepLogits): StepLogits => {
  const row = new Float32Array(m.logits);
  return isRow(row) ? { ...m, logits: otherRounding(row).buffer as ArrayBuffer } : m;
};
const draw = (row: Float32Array, seed: number) => sampleToken(row, sampling(seed), () => randomAt(seed, 0));

/**
 * A seed and a number of raised tokens at which the median of the liar's and the honest rows (`median`) draws
 * another token than every honest row, and stays another with the draw's number a hair either way (so the replicas'
 * rows need not be the reference's to the last bit); `alsoLiar`: the liar's own row draws another token too.
 */
function findSeed(
  honest: Float32Array,
  median: (lied: Float32Array) => Float32Array,
  alsoLiar: boolean,
): { seed: number; raised: number; want: number; got: number } {
  const rounded = otherRounding(honest);
  for (const raised of RAISED) {
    const lied = liftMostLikely(honest, raised, liar.by);
    const mid = median(lied);
    for (let seed = 1; seed <= SEEDS; seed++) {
      const want = draw(honest, seed);
      if (draw(rounded, seed) !== want || (alsoLiar && draw(lied, seed) === want)) continue;
      const u = randomAt(seed, 0);
      const moved = [u * (1 - 1e-4), u, u * (1 + 1e-4)].every((x) => sampleToken(mid, sampling(seed), () => x) !== want);
      if (moved) return { seed, raised, want, got: draw(mid, seed) };
    }
  }
  throw new Error('no seed moves the draw: the rig finds no attack to test');
}

async function referenceRow(rig: ApiSwarm): Promise<Float32Array> {
  const ids = rig.reference.tokenizer.encode(PROMPT);
  return (await rig.reference.session().forward(ids)).slice(-VOCAB);
}

/** Asks the swarm with the liar set to `found`: the honest token served, the liar lied, all three in the vote. */
async function askAndCheck(rig: ApiSwarm, found: { seed: number; raised: number; want: number }): Promise<void> {
  liar.raised = found.raised;
  const before = liar.calls;
  const res = await rig.client.completions.create({
    model: MODEL,
    prompt: PROMPT,
    max_tokens: 1,
    temperature: 1,
    seed: found.seed,
    logit_bias: BIAS,
  });
  const body = res as unknown as WebswarmBody;
  expect(liar.calls).toBeGreaterThan(before);
  expect(body.webswarm.tokens).toEqual([found.want]);
  expect(body.webswarm.votes[0]?.votes[0]).toMatchObject({ agreed: 3, disagreed: 0 });
}

const delayed = (ms: number) => ({ output: (_step: number, d: Float32Array) => d, delayMs: ms });

describe('a liar mixing two honest replicas’ rows token by token (both honest replicas 40 ms after it)', () => {
  let rig: ApiSwarm | undefined;
  beforeAll(async () => {
    rig = await startApiSwarm('webswarm-rows-mix-', {
      redundancy: 3,
      apiMaxConcurrent: 0,
      volunteer: (i) =>
        i === 0 ? { tamperLogits: liarHook } : i === 1 ? { fault: delayed(40) } : { fault: delayed(40), tamperLogits: roundingHook },
    });
  }, 60_000);
  afterAll(() => rig?.close());

  it('cannot move the token the honest replicas’ rows give, though the median row’s draw is another', async () => {
    const r = rig as ApiSwarm;
    const honest = await referenceRow(r);
    liar.by = 0.5;
    const rounded = otherRounding(honest);
    const found = findSeed(honest, (lied) => elementwiseMedian([lied, honest, rounded]), false);
    // The rig: the liar agrees with both honest rows, and they with each other, both ways round.
    const agree = agreeLogitRows(VOCAB);
    const lied = liftMostLikely(honest, found.raised, liar.by);
    for (const [a, b] of [
      [lied, honest],
      [lied, rounded],
      [honest, rounded],
    ] as const)
      expect(agree(a, b) && agree(b, a)).toBe(true);
    expect(found.got).not.toBe(found.want);
    const want = (await r.reference.generateIds(r.reference.tokenizer.encode(PROMPT), 1, sampling(found.seed))).tokens;
    expect(want).toEqual([found.want]);

    // Within the tolerance, the liar is in the majority: it cannot move the draw all the same.
    await askAndCheck(r, found);
  }, 90_000);
});

describe('a liar answering first beside one honest replica, the other after the settle wait', () => {
  let rig: ApiSwarm | undefined;
  beforeAll(async () => {
    rig = await startApiSwarm('webswarm-rows-late-', {
      redundancy: 3,
      apiMaxConcurrent: 0,
      volunteer: (i) => (i === 0 ? { tamperLogits: liarHook } : i === 1 ? { fault: delayed(40) } : { fault: delayed(SETTLE_MS + 350) }),
    });
  }, 60_000);
  afterAll(() => rig?.close());

  it('cannot have the draw made from the mean of its row and one honest row: the third is waited for', async () => {
    const r = rig as ApiSwarm;
    const honest = await referenceRow(r);
    liar.by = 0.99;
    // Its own row draws another token too, so no token has a majority of the two that answered first.
    const found = findSeed(honest, (lied) => elementwiseMedian([lied, honest]), true);
    const agree = agreeLogitRows(VOCAB);
    const lied = liftMostLikely(honest, found.raised, liar.by);
    expect(agree(lied, honest) && agree(honest, lied)).toBe(true);

    // The step waited for the late replica: all three in the vote.
    await askAndCheck(r, found);
  }, 90_000);
});
