// A scored prompt (completions' echo) in process: real stages, real onnxruntime
// sessions, real replicas (ReplicaCore) and the real coordinator (see
// in-process-swarm.ts). Its tokens are known before their steps, so they go to
// stage 0 up to MESH_AHEAD steps ahead and the stages compute them as a
// pipeline; the coordinator still votes on every position. Each position's
// log-probability must be the reference runner's (fed the prompt a token at a
// time), with liars, a stage retried on spares (the pipeline rolled back) and
// a replica that leaves mid-prompt, and with the pipeline off (MESH_LOOP=off). A fresh prompt's first
// positions go in one step (the last stage a row of logits for each): its rows are voted row by row, a wrong row
// count is refused; the prompt's tokens after them go in chunks of as many a step, voted the same way (here
// `scoreRows: 3`, so that a prompt has several); `scoreRows: 1` is a position a step.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GREEDY, type SamplingParams } from '../../shared/model/sampling.js';
import { type FaultBehaviour, faultBehaviour } from '../../shared/swarm/faults.js';
import { MESH_AHEAD } from '../../shared/swarm/mesh-loop.js';
import { closeGoldenSwarm, type GoldenSwarm, startGoldenSwarm } from '../testing/golden-swarm.js';
import { type Crash, createInProcessSwarm, type InProcessSwarm, releaseInProcessSwarm } from '../testing/in-process-swarm.js';
import { promptLogprobs } from '../testing/prompt-logprobs.js';
import { expectScoredAsReference, type ScoredRun, scoreInProcess } from '../testing/scored-run.js';

const STAGES = 3;
const TOKENS = 4;
const TIMEOUTS = { joinMs: 5_000, stepMs: 10_000 };

let golden: GoldenSwarm | undefined;
/** Two spares a stage: a stage with two liars is retried on both. */
let roomy: InProcessSwarm;
/** The reference's log-probability of each prompt token after the first. */
let want: number[];

/** The golden swarm, each position a step (scoreRows 1). */
let stepwise: InProcessSwarm;
/** No spares, the server's fallback on for a stage short of a majority. */
let served: InProcessSwarm;

beforeAll(async () => {
  golden = await startGoldenSwarm('webswarm-score-ahead-', { stages: STAGES, r: 3, tokens: TOKENS, timeouts: TIMEOUTS });
  roomy = await createInProcessSwarm(golden.swarm.manifest, golden.stageBytes, 3, TIMEOUTS, 2);
  stepwise = { ...golden.swarm, scoreRows: 1 };
  served = await createInProcessSwarm(golden.swarm.manifest, golden.stageBytes, 3, { joinMs: 1_500, stepMs: 2_000 }, 0, { mode: 'stage' });
  want = await promptLogprobs(golden.reference, golden.promptIds);
});

afterAll(async () => {
  if (roomy !== undefined) await releaseInProcessSwarm(roomy);
  if (served !== undefined) await releaseInProcessSwarm(served);
  await closeGoldenSwarm(golden);
});

const score = (
  swarm: InProcessSwarm,
  faults: Record<string, FaultBehaviour> = {},
  crash: Crash | readonly Crash[] | null = null,
  sampling: SamplingParams = GREEDY,
) => scoreInProcess(golden as GoldenSwarm, swarm, TOKENS, faults, crash, sampling);
const expectReference = (got: ScoredRun, sampling: SamplingParams = GREEDY) =>
  expectScoredAsReference(golden as GoldenSwarm, want, got, TOKENS, sampling);

describe('a scored prompt, its tokens sent ahead', () => {
  it("r = 3: every position the reference's, stage 0 computing steps before the coordinator began them; the same with MESH_LOOP=off, step by step", async () => {
    const g = golden as GoldenSwarm;
    expect(g.promptIds.length).toBeGreaterThan(2 * MESH_AHEAD + 2);
    const on = await score(stepwise);
    await expectReference(on);
    expect(on.votes.every((v) => v.every((n) => n >= 2))).toBe(true);
    // Every forced step's token went ahead; stage 0 computed some before they began here (the pipeline at work).
    expect(on.r.inputsAhead).toBe(g.promptIds.length - 1);
    expect(on.r.stepsAhead).toBeGreaterThan(0);
    const off = await score({ ...stepwise, meshLoop: false });
    await expectReference(off);
    expect(off.r.inputsAhead).toBe(0);
    expect(off.r.stepsAhead).toBe(0);
  });

  it('one liar a stage is outvoted at every position it answers, evicted mid-prompt and replaced; the log-probabilities stay the reference', async () => {
    const liars = ['s0r1', 's1r0', 's2r2'];
    const r = await score(stepwise, Object.fromEntries(liars.map((id, i) => [id, faultBehaviour('noise', 3 + i)])));
    await expectReference(r);
    expect(r.votes.every((v) => v.every((n) => n >= 2))).toBe(true);
    expect([...r.r.evicted.keys()].sort()).toEqual(liars);
    for (const id of liars) expect(r.r.scores.get(id)).toEqual({ agreed: 0, disagreed: 3 });
    expect(r.r.replacements.map((x) => `${x.left}>${x.joined}`)).toEqual(['s0r1>s0spare', 's1r0>s1spare', 's2r2>s2spare']);
  });

  it('two liars in a stage: retried on spares mid-prompt, the whole pipeline rolled back; every position the reference', async () => {
    // From step 6 on (some steps after it already sent ahead), s1r0 and s1r2 send noise: stage 1 has no majority,
    // is retried on its two spares, and every stage goes back to step 6 and computes it again.
    const liar = (seed: number): FaultBehaviour => {
      const noise = faultBehaviour('noise', seed);
      return { ...noise, output: (step, d, logits) => (step >= 6 ? noise.output(step, d, logits) : d) };
    };
    const r = await score({ ...roomy, scoreRows: 1 }, { s1r0: liar(11), s1r2: liar(12) });
    await expectReference(r);
    expect(r.r.inputsAhead).toBeGreaterThan(6);
    // Three answers apart, none a majority: two of them go (which two, the record decides), both at step 6.
    expect(r.r.replacements.map((x) => `${x.joined}@${x.atStep}`).sort()).toEqual(['s1spare2@6', 's1spare@6']);
  });

  it('a replica of stage 0 that leaves mid-prompt: its spare gets the tokens sent ahead too, and every position is the reference', async () => {
    const r = await score({ ...roomy, scoreRows: 1 }, {}, { who: 's0r1', afterSteps: 5, spare: 's0spare' });
    await expectReference(r);
    expect(r.r.replacements.map((x) => `${x.left}>${x.joined}`)).toEqual(['s0r1>s0spare']);
  });
});

describe('a scored prompt’s first positions in one step', () => {
  const vocab = () => (golden as GoldenSwarm).swarm.manifest.model.vocabSize;
  /** A last-stage liar whose step-0 logits are `rows(d)` (every row of the step), honest after. */
  const rowsLiar = (rows: (d: Float32Array) => Float32Array): FaultBehaviour => ({
    delayMs: 0,
    output: (step, d, logits) => (logits && step === 0 ? rows(d) : d),
  });

  it('r = 3: every position the reference’s, voted row by row in one step; the stages compute 1 + max_tokens steps, not one a position', async () => {
    const g = golden as GoldenSwarm;
    const one = await score(g.swarm);
    await expectReference(one);
    expect(one.votes.every((v) => v.every((n) => n >= 2))).toBe(true);
    const each = await score(stepwise);
    await expectReference(each);
    for (const id of ['s0r0', 's1r0', 's2r0']) {
      expect(one.r.computedBy.get(id), id).toBe(1 + TOKENS);
      expect(each.r.computedBy.get(id), id).toBe(g.promptIds.length - 1 + TOKENS);
      // A runtime call a step (and one for its readiness challenge), the last stage's scored step too: the head on
      // every position, not a call a position.
      expect(one.r.runsBy.get(id), id).toBe(1 + 1 + TOKENS);
    }
  });

  it('a prompt longer than the rows a step may carry: its first 3 positions in step 0, the rest in chunks of 3 a step, sent ahead', async () => {
    const g = golden as GoldenSwarm;
    const r = await score({ ...g.swarm, scoreRows: 3 });
    await expectReference(r);
    // Given after step 0: the prompt's tokens 3 … P − 1; all but the last in chunks of 3, the last with the first sampled step.
    const given = g.promptIds.length - 3;
    const chunks = Math.ceil((given - 1) / 3);
    expect(chunks).toBeGreaterThan(1);
    expect(r.r.computedBy.get('s0r0')).toBe(1 + chunks + TOKENS);
    // The last stage too: each chunk's rows from one runtime call (and one for the readiness challenge).
    for (const id of ['s2r0', 's2r1', 's2r2']) expect(r.r.runsBy.get(id), id).toBe(1 + 1 + chunks + TOKENS);
    expect(r.r.inputsAhead).toBe(1 + chunks);
  });

  it('one liar a stage (noise in every row) is outvoted at every position', async () => {
    const g = golden as GoldenSwarm;
    const liars = ['s0r1', 's1r0', 's2r2'];
    const r = await score(g.swarm, Object.fromEntries(liars.map((id, i) => [id, faultBehaviour('noise', 13 + i)])));
    await expectReference(r);
    expect(r.votes.every((v) => v.every((n) => n >= 2))).toBe(true);
    for (const id of liars) expect(r.r.scores.get(id)?.disagreed, id).toBeGreaterThan(0);
  });

  it('a last-stage replica whose first row alone is false (the last row, the one a step usually carries, true) is outvoted', async () => {
    const v = vocab();
    const firstRowFalse = rowsLiar((d) => {
      const out = d.slice();
      // Row 0 (position 1) made sure of another token; every other row as computed.
      out.fill(-30, 0, v);
      out[7] = 30;
      return out;
    });
    const r = await score((golden as GoldenSwarm).swarm, { s2r1: firstRowFalse });
    await expectReference(r);
    expect(r.votes[0]?.[2]).toBe(2);
    expect(r.r.scores.get('s2r1')?.disagreed).toBeGreaterThan(0);
  });

  it('last-stage replicas that send one row (the last) or a row too many are refused: the honest rows decide', async () => {
    const v = vocab();
    const short = rowsLiar((d) => d.slice(d.length - v));
    const long = rowsLiar((d) => {
      const out = new Float32Array(d.length + v);
      out.set(d);
      out.set(d.subarray(d.length - v), d.length);
      return out;
    });
    for (const wrong of [short, long]) {
      const r = await score((golden as GoldenSwarm).swarm, { s2r0: wrong });
      await expectReference(r);
      // Stage 2's vote on the scored step: the two others agree, the wrong count counted against nobody honest.
      expect(r.votes[0]?.[2]).toBe(2);
      expect(r.r.scores.get('s2r1')?.disagreed ?? 0).toBe(0);
      expect(r.r.scores.get('s2r2')?.disagreed ?? 0).toBe(0);
    }
  });

  it('two last-stage replicas that agree on one row (a majority of the wrong count) are refused, not taken: retried on spares', async () => {
    const v = vocab();
    const short = rowsLiar((d) => d.slice(d.length - v));
    const r = await score(roomy, { s2r0: short, s2r1: short });
    await expectReference(r);
    // The two that sent the wrong count go, both at the scored step; the honest one stays.
    expect(r.r.replacements.map((x) => `${x.left}@${x.atStep}`).sort()).toEqual(['s2r0@0', 's2r1@0']);
    expect(r.r.replacements.map((x) => x.joined).sort()).toEqual(['s2spare', 's2spare2']);
  });

  it('two last-stage replicas leave after computing the scored step, no spare: the server’s fallback computes it, every row, and every position is the reference', async () => {
    const r = await score(served, {}, [
      { who: 's2r0', afterSteps: 1, spare: null },
      { who: 's2r2', afterSteps: 1, spare: null },
    ]);
    await expectReference(r);
    expect(r.r.serverStages[0]).toEqual([2]);
  });

  it('a last-stage replica that leaves after computing the scored step: its spare computes it again, every row, and every position is the reference', async () => {
    const r = await score(roomy, {}, { who: 's2r1', afterSteps: 1, spare: 's2spare' });
    await expectReference(r);
    expect(r.r.replacements.map((x) => `${x.left}>${x.joined}@${x.atStep}`)).toEqual(['s2r1>s2spare@0']);
  });
});

describe('the rest of a scored prompt in chunks', () => {
  const vocab = () => (golden as GoldenSwarm).swarm.manifest.model.vocabSize;
  /** A last-stage liar whose logits at `at` are `rows(d)`, honest at every other step. */
  const rowsLiarAt = (at: number, rows: (d: Float32Array) => Float32Array): FaultBehaviour => ({
    delayMs: 0,
    output: (step, d, logits) => (logits && step === at ? rows(d) : d),
  });
  /** Steps of the prompt given after step 0's 3 positions, in chunks of 3 (the last given token with the first sampled step). */
  const chunkSteps = () => Math.ceil(((golden as GoldenSwarm).promptIds.length - 4) / 3);

  it('one liar a stage (noise in every row of every chunk) is outvoted at every position', async () => {
    const liars = ['s0r2', 's1r1', 's2r0'];
    const r = await score(
      { ...(golden as GoldenSwarm).swarm, scoreRows: 3 },
      Object.fromEntries(liars.map((id, i) => [id, faultBehaviour('noise', 23 + i)])),
    );
    await expectReference(r);
    expect(r.votes.every((v) => v.every((n) => n >= 2))).toBe(true);
    for (const id of liars) expect(r.r.scores.get(id)?.disagreed, id).toBeGreaterThan(0);
    expect(r.r.computedBy.get('s0r0')).toBe(1 + chunkSteps() + TOKENS);
  });

  it('two last-stage replicas that send one row for a chunk (a majority of the wrong count) are refused and retried on spares there', async () => {
    const v = vocab();
    const short = rowsLiarAt(2, (d) => d.slice(d.length - v));
    const r = await score({ ...roomy, scoreRows: 3 }, { s2r0: short, s2r2: short });
    await expectReference(r);
    expect(r.r.replacements.map((x) => `${x.left}@${x.atStep}`).sort()).toEqual(['s2r0@2', 's2r2@2']);
  });

  it('a chunk whose middle row alone is false, from one last-stage replica: outvoted', async () => {
    const v = vocab();
    const middleFalse = rowsLiarAt(1, (d) => {
      const out = d.slice();
      out.fill(-30, v, 2 * v);
      out[5] = 30;
      return out;
    });
    const r = await score({ ...(golden as GoldenSwarm).swarm, scoreRows: 3 }, { s2r2: middleFalse });
    await expectReference(r);
    expect(r.votes[1]?.[2]).toBe(2);
    expect(r.r.scores.get('s2r2')?.disagreed).toBe(1);
  });

  it('two liars in stage 1 from the second chunk: retried on spares, the pipeline rolled back; every position the reference', async () => {
    const liar = (seed: number): FaultBehaviour => {
      const noise = faultBehaviour('noise', seed);
      return { ...noise, output: (step, d, logits) => (step >= 2 ? noise.output(step, d, logits) : d) };
    };
    const r = await score({ ...roomy, scoreRows: 3 }, { s1r0: liar(31), s1r2: liar(32) });
    await expectReference(r);
    expect(r.r.replacements.map((x) => `${x.joined}@${x.atStep}`).sort()).toEqual(['s1spare2@2', 's1spare@2']);
  });

  it('a last-stage replica that leaves after two chunks: its spare computes every chunk again, and every position is the reference', async () => {
    // Step by step (nothing sent ahead), so that it leaves when the coordinator is past step 2.
    const r = await score({ ...roomy, scoreRows: 3, meshLoop: false }, {}, { who: 's2r1', afterSteps: 3, spare: 's2spare' });
    await expectReference(r);
    expect(r.r.replacements.map((x) => `${x.left}>${x.joined}`)).toEqual(['s2r1>s2spare']);
    expect(r.r.replacements[0]?.atStep).toBeGreaterThanOrEqual(2);
  });

  it('two last-stage replicas leave mid-chunks, no spare: the server’s fallback computes the chunks, every row', async () => {
    const r = await score({ ...served, scoreRows: 3 }, {}, [
      { who: 's2r0', afterSteps: 2, spare: null },
      { who: 's2r1', afterSteps: 2, spare: null },
    ]);
    await expectReference(r);
    expect(r.r.serverStages[0]).toEqual([2]);
  });
});
