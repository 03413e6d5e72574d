// Red team: a scored prompt (echo) whose tokens go to stage 0 up to MESH_AHEAD steps ahead (283ae5c).
// In process: real stages, real replicas (ReplicaCore), the real coordinator. Oracles: the reference runner's
// log-probability of each prompt position (promptLogprobs) and its tokens after the prompt (generateIds, with
// the same sampling). Attacks: roll-backs at the switch from forced to sampled steps, at the last forced step,
// in stage 0 and in the last stage, a replica leaving during a roll-back, the fallback taking a stage
// mid-prompt, penalties, logit_bias and a seeded temperature after the prompt. Each position a step
// (`scoreRows: 1`, the path a replay and a prompt past maxScoreRows take), so that the attacks land on the steps
// they name; the first positions in one step are attacked in coordinator/score-ahead.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GREEDY, type SamplingParams } from '../shared/model/sampling.js';
import { type FaultBehaviour, faultBehaviour } from '../shared/swarm/faults.js';
import { closeGoldenSwarm, type GoldenSwarm, startGoldenSwarm } from './testing/golden-swarm.js';
import { type Crash, createInProcessSwarm, type InProcessSwarm, releaseInProcessSwarm, runInProcess } from './testing/in-process-swarm.js';
import { promptLogprobs } from './testing/prompt-logprobs.js';
import { expectScoredAsReference, type ScoredRun, scoreInProcess } from './testing/scored-run.js';

const STAGES = 3;
const TOKENS = 4;
const TIMEOUTS = { joinMs: 5_000, stepMs: 10_000 };

let golden: GoldenSwarm | undefined;
/** Two spares a stage. */
let roomy: InProcessSwarm;
/** No spares, the server's fallback on (FALLBACK=stage). */
let served: InProcessSwarm;
let want: number[];

beforeAll(async () => {
  golden = await startGoldenSwarm('webswarm-rt-score-', { stages: STAGES, r: 3, tokens: TOKENS, timeouts: TIMEOUTS });
  roomy = await createInProcessSwarm(golden.swarm.manifest, golden.stageBytes, 3, TIMEOUTS, 2);
  served = await createInProcessSwarm(golden.swarm.manifest, golden.stageBytes, 3, { joinMs: 1_500, stepMs: 2_000 }, 0, { mode: 'stage' });
  want = await promptLogprobs(golden.reference, golden.promptIds);
}, 120_000);

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
) => scoreInProcess(golden as GoldenSwarm, { ...swarm, scoreRows: 1 }, TOKENS, faults, crash, sampling);
const expectReference = (got: ScoredRun, sampling: SamplingParams = GREEDY) =>
  expectScoredAsReference(golden as GoldenSwarm, want, got, TOKENS, sampling);

/** A noise liar from step `from` on (honest before). */
const liarFrom = (from: number, seed: number, until = Number.POSITIVE_INFINITY): FaultBehaviour => {
  const noise = faultBehaviour('noise', seed);
  return { ...noise, output: (step, d, l) => (step >= from && step <= until ? noise.output(step, d, l) : d) };
};

describe('a scored prompt sent ahead, rolled back where it is most delicate', () => {
  it("the server's fallback takes stage 1 at the first sampled step (the switch from forced to sampled; two replicas leave, no spare): every position and token the reference", async () => {
    const g = golden as GoldenSwarm;
    const F = g.promptIds.length - 1;
    for (const after of [F, F + 1]) {
      const r = await score(served, {}, [
        { who: 's1r0', afterSteps: after, spare: null },
        { who: 's1r2', afterSteps: after, spare: null },
      ]);
      await expectReference(r);
      expect(r.r.serverStages.flat()).toContain(1);
    }
  });

  it('stage 1 has no majority at the last forced step only: every position and token the reference', async () => {
    const g = golden as GoldenSwarm;
    const F = g.promptIds.length - 1;
    const r = await score(roomy, { s1r0: liarFrom(F - 1, 23, F - 1), s1r2: liarFrom(F - 1, 24, F - 1) });
    await expectReference(r);
    expect(r.r.replacements.map((x) => x.atStep)).toEqual([F - 1, F - 1]);
  });

  it('stage 0 has no majority mid-prompt: its newcomers get the tokens sent ahead; every position the reference', async () => {
    const r = await score(roomy, { s0r0: liarFrom(5, 25), s0r2: liarFrom(5, 26) });
    await expectReference(r);
    expect(r.r.replacements.map((x) => `${x.joined}@${x.atStep}`).sort()).toEqual(['s0spare2@5', 's0spare@5']);
  });

  it('the last stage has no majority mid-prompt (its logits carried into the new vote): every position the reference', async () => {
    const r = await score(roomy, { s2r0: liarFrom(4, 27), s2r1: liarFrom(4, 28) });
    await expectReference(r);
    expect(r.r.replacements.map((x) => x.atStep)).toEqual([4, 4]);
  });

  it('a replica of stage 0 leaves just as stage 1 is retried and the pipeline rolled back: every position the reference', async () => {
    // s0r1 computes step 6 (its 7th) and goes: stage 0 ran ahead, so it leaves about when step 6 is retried.
    const r = await score(roomy, { s1r0: liarFrom(6, 29), s1r2: liarFrom(6, 30) }, { who: 's0r1', afterSteps: 7, spare: 's0spare' });
    await expectReference(r);
    expect(r.r.replacements.map((x) => x.left).sort()).toEqual(expect.arrayContaining(['s0r1']));
  });

  it('the same, its place left unfilled (a dead slot through the roll-back): every position the reference', async () => {
    const r = await score(roomy, { s1r0: liarFrom(6, 31), s1r2: liarFrom(6, 32) }, { who: 's2r1', afterSteps: 6, spare: 's2spare' });
    await expectReference(r);
  });

  it("the server's fallback takes stage 1 mid-prompt (two of its replicas leave, no spare): every position and token the reference", async () => {
    const r = await score(served, {}, [
      { who: 's1r0', afterSteps: 5, spare: null },
      { who: 's1r1', afterSteps: 5, spare: null },
    ]);
    await expectReference(r);
    expect(r.r.serverStages.flat()).toContain(1);
  });

  it("the server's fallback takes stage 0 mid-prompt, its tokens sent ahead: every position the reference", async () => {
    const r = await score(served, {}, [
      { who: 's0r0', afterSteps: 4, spare: null },
      { who: 's0r2', afterSteps: 4, spare: null },
    ]);
    await expectReference(r);
    expect(r.r.serverStages.flat()).toContain(0);
  });
});

describe('a scored prompt sent ahead, repaired again and again', () => {
  it('three roll-backs in one prompt (stage 0 at step 2, stage 1 at step 4, stage 2 at step 7), each on spares: every position and token the reference', async () => {
    const r = await score(roomy, {
      s0r0: liarFrom(2, 41, 2),
      s0r1: liarFrom(2, 42, 2),
      s1r1: liarFrom(4, 43, 4),
      s1r2: liarFrom(4, 44, 4),
      s2r0: liarFrom(7, 45, 7),
      s2r2: liarFrom(7, 46, 7),
    });
    await expectReference(r);
    expect(r.r.replacements.map((x) => x.atStep).sort((a, b) => a - b)).toEqual([2, 2, 4, 4, 7, 7]);
  });

  it('a replica of the last stage leaves in the same task as its last report, just as stage 1 is retried and everything rolled back: every position the reference', async () => {
    for (const afterSteps of [5, 6, 7]) {
      const r = await score(
        roomy,
        { s1r0: liarFrom(5, 47, 5), s1r2: liarFrom(5, 48, 5) },
        { who: 's2r1', afterSteps, spare: 's2spare', reportsLastStep: true },
      );
      await expectReference(r);
    }
  });

  it("a replica of stage 0 leaves in the same task as its last report, no spare, and the server's fallback takes stage 0 while it had computed ahead: every position the reference", async () => {
    for (const afterSteps of [3, 6]) {
      const r = await score(served, {}, [
        { who: 's0r0', afterSteps, spare: null, reportsLastStep: true },
        { who: 's0r1', afterSteps, spare: null, reportsLastStep: true },
      ]);
      await expectReference(r);
      expect(r.r.serverStages.flat()).toContain(0);
    }
  });
});

describe('a scored prompt sent ahead, then tokens sampled with history or bias', () => {
  it("frequency_penalty after the prompt, stage 1 rolled back mid-prompt: the tokens are the reference runner's with the same penalty", async () => {
    const sampling: SamplingParams = { ...GREEDY, frequencyPenalty: 2 };
    const r = await score(roomy, { s1r0: liarFrom(5, 33), s1r2: liarFrom(5, 34) }, null, sampling);
    await expectReference(r, sampling);
  });

  it("a seeded temperature and logit_bias after the prompt, the last stage rolled back at the last forced step: the reference runner's tokens", async () => {
    const g = golden as GoldenSwarm;
    const F = g.promptIds.length - 1;
    const sampling: SamplingParams = { temperature: 0.9, topK: 0, topP: 1, seed: 17, logitBias: [[g.expected[1] as number, 5]] };
    const r = await score(roomy, { s2r0: liarFrom(F - 1, 35, F - 1), s2r2: liarFrom(F - 1, 36, F - 1) }, null, sampling);
    await expectReference(r, sampling);
    expect(r.r.replacements.map((x) => x.atStep)).toEqual([F - 1, F - 1]);
  });

  it("a seeded temperature with frequency_penalty, one liar a stage from the switch on (outvoted, evicted, replaced while tokens are sampled): the reference runner's tokens", async () => {
    const g = golden as GoldenSwarm;
    const F = g.promptIds.length - 1;
    const sampling: SamplingParams = { temperature: 0.7, topK: 0, topP: 1, seed: 5, frequencyPenalty: 1 };
    const r = await score(roomy, { s0r1: liarFrom(F, 37), s1r0: liarFrom(F, 38), s2r2: liarFrom(F, 39) }, null, sampling);
    await expectReference(r, sampling);
  });
});

describe('the honest path around the pipeline', () => {
  it('slow honest replicas in stage 0 and stage 1 (30 ms a step more), with either fan-out: nobody struck or evicted, every position the reference', async () => {
    const slow = (): FaultBehaviour => ({ output: (_s, d) => d, delayMs: 30 });
    for (const fanout of ['all', 'majority'] as const) {
      const r = await score({ ...roomy, fanout }, { s0r2: slow(), s1r1: slow() });
      await expectReference(r);
      expect([...r.r.evicted.keys()]).toEqual([]);
      expect(r.r.replacements).toEqual([]);
    }
  });

  it('sessions without echo are as before: nothing sent ahead, with the mesh loop (stage 0 ahead on mesh tokens) and without it (penalties)', async () => {
    const g = golden as GoldenSwarm;
    const mesh = await runInProcess(roomy, g.promptIds, TOKENS);
    expect(mesh.error).toBeNull();
    expect(mesh.tokens).toEqual(g.expected.slice(0, TOKENS));
    expect(mesh.inputsAhead).toBe(0);
    const sampling: SamplingParams = { ...GREEDY, frequencyPenalty: 1 };
    const penalised = await runInProcess(roomy, g.promptIds, TOKENS, {}, [], null, sampling);
    expect(penalised.error).toBeNull();
    expect(penalised.tokens).toEqual((await g.reference.generateIds(g.promptIds, TOKENS, sampling)).tokens);
    expect(penalised.inputsAhead).toBe(0);
    expect(penalised.stepsAhead).toBe(0);
  });
});
