// A scored prompt (completions' echo) in process: real stages, real onnxruntime
// sessions, real replicas (ReplicaCore) and the real coordinator (see
// in-process-swarm.ts). Its tokens are known before their steps, so they go to
// stage 0 up to MESH_AHEAD steps ahead and the stages compute them as a
// pipeline; the coordinator still votes on every position. Each position's
// log-probability must be the reference runner's (fed the prompt a token at a
// time), with liars, a stage retried on spares (the pipeline rolled back) and
// a replica that leaves mid-prompt, and with the pipeline off (MESH_LOOP=off).
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

beforeAll(async () => {
  golden = await startGoldenSwarm('webswarm-score-ahead-', { stages: STAGES, r: 3, tokens: TOKENS, timeouts: TIMEOUTS });
  roomy = await createInProcessSwarm(golden.swarm.manifest, golden.stageBytes, 3, TIMEOUTS, 2);
  want = await promptLogprobs(golden.reference, golden.promptIds);
});

afterAll(async () => {
  if (roomy !== undefined) await releaseInProcessSwarm(roomy);
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
    const on = await score(g.swarm);
    await expectReference(on);
    expect(on.votes.every((v) => v.every((n) => n >= 2))).toBe(true);
    // Every forced step's token went ahead; stage 0 computed some before they began here (the pipeline at work).
    expect(on.r.inputsAhead).toBe(g.promptIds.length - 1);
    expect(on.r.stepsAhead).toBeGreaterThan(0);
    const off = await score({ ...g.swarm, meshLoop: false });
    await expectReference(off);
    expect(off.r.inputsAhead).toBe(0);
    expect(off.r.stepsAhead).toBe(0);
  });

  it('one liar a stage is outvoted at every position it answers, evicted mid-prompt and replaced; the log-probabilities stay the reference', async () => {
    const g = golden as GoldenSwarm;
    const liars = ['s0r1', 's1r0', 's2r2'];
    const r = await score(g.swarm, Object.fromEntries(liars.map((id, i) => [id, faultBehaviour('noise', 3 + i)])));
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
    const r = await score(roomy, { s1r0: liar(11), s1r2: liar(12) });
    await expectReference(r);
    expect(r.r.inputsAhead).toBeGreaterThan(6);
    // Three answers apart, none a majority: two of them go (which two, the record decides), both at step 6.
    expect(r.r.replacements.map((x) => `${x.joined}@${x.atStep}`).sort()).toEqual(['s1spare2@6', 's1spare@6']);
  });

  it('a replica of stage 0 that leaves mid-prompt: its spare gets the tokens sent ahead too, and every position is the reference', async () => {
    const r = await score(roomy, {}, { who: 's0r1', afterSteps: 5, spare: 's0spare' });
    await expectReference(r);
    expect(r.r.replacements.map((x) => `${x.left}>${x.joined}`)).toEqual(['s0r1>s0spare']);
  });
});
