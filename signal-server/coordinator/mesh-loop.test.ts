// The mesh loop in process: real stages, real onnxruntime sessions, real
// replicas (ReplicaCore) and the real coordinator (see in-process-swarm.ts).
// Each last-stage replica samples its own logits and feeds stage 0; the
// coordinator verifies every step off the critical path. The tokens must be the
// reference runner's, greedy and seeded, whatever the last stage sends stage 0.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GREEDY, type SamplingParams } from '../../shared/model/sampling.js';
import type { FaultBehaviour } from '../../shared/swarm/faults.js';
import { goldenModelDir } from '../../testing/golden.js';
import { ensureStages, loadStageSet } from '../models/model-folder.js';
import { ReferenceRunner } from '../reference/reference-runner.js';
import { createInProcessSwarm, type InProcessSwarm, releaseInProcessSwarm, runInProcess } from '../testing/in-process-swarm.js';

const TOKENS = 10;
const TIMEOUTS = { joinMs: 5_000, stepMs: 10_000 };
const SEEDED: SamplingParams = { temperature: 1.2, topK: 0, topP: 1, seed: 2024 };

let cache: string;
let three: InProcessSwarm;
let single: InProcessSwarm;
let oneStage: InProcessSwarm;
let noSpares: InProcessSwarm;
let reference: ReferenceRunner;
let referenceOneStage: ReferenceRunner;
let promptIds: number[];
let greedy: number[];
let seeded: number[];
let vocab: number;

beforeAll(async () => {
  cache = mkdtempSync(join(tmpdir(), 'webswarm-meshloop-'));
  const model = goldenModelDir('tiny-gqa-bias');
  const { dir } = await ensureStages(model, { stages: 3 }, cache);
  const set = await loadStageSet(dir);
  vocab = set.manifest.model.vocabSize;
  three = await createInProcessSwarm(set.manifest, set.stageBytes, 3, TIMEOUTS, 1);
  single = await createInProcessSwarm(set.manifest, set.stageBytes, 1, TIMEOUTS, 1);
  noSpares = await createInProcessSwarm(set.manifest, set.stageBytes, 3, { joinMs: 1_500, stepMs: 2_000 }, 0, { mode: 'stage' });
  const one = await ensureStages(model, { stages: 1 }, cache);
  const oneSet = await loadStageSet(one.dir);
  oneStage = await createInProcessSwarm(oneSet.manifest, oneSet.stageBytes, 3, TIMEOUTS, 0);
  reference = await ReferenceRunner.fromStageDir(dir);
  referenceOneStage = await ReferenceRunner.fromStageDir(one.dir);
  promptIds = reference.tokenizer.encode('It is a truth universally acknowledged');
  greedy = (await reference.generateIds(promptIds, TOKENS, GREEDY)).tokens;
  seeded = (await reference.generateIds(promptIds, TOKENS, SEEDED)).tokens;
});

afterAll(async () => {
  for (const s of [three, single, oneStage, noSpares]) await releaseInProcessSwarm(s);
  await reference.close();
  await referenceOneStage.close();
  rmSync(cache, { recursive: true, force: true });
});

/** A last-stage replica that computes honestly and reports honestly, but sends stage 0 another token than it sampled. */
function wrongToken(): FaultBehaviour {
  return { output: (_s, d) => d, delayMs: 0, token: (_step, sampled) => (sampled + 1) % vocab };
}

describe('the mesh loop, in process', () => {
  it('r = 3, greedy: the reference tokens, stage 0 running ahead of the verification; the same tokens with the loop off', async () => {
    const on = await runInProcess(three, promptIds, TOKENS);
    expect(on.error).toBeNull();
    expect(on.tokens).toEqual(greedy);
    expect(on.streamed).toEqual(greedy);
    expect(on.meshSteps).toBeGreaterThan(0);
    expect(on.meshRollBacks).toBe(0);
    expect(on.votes.every((v) => v.every((n) => n >= 2))).toBe(true);
    const off = await runInProcess({ ...three, meshLoop: false }, promptIds, TOKENS);
    expect(off.tokens).toEqual(greedy);
    expect(off.meshSteps).toBe(0);
  });

  it('seeded sampling (temperature 1.2): the reference tokens at r = 3 and r = 1, the loop on and off', async () => {
    expect(seeded).not.toEqual(greedy);
    for (const swarm of [three, single, { ...three, meshLoop: false }]) {
      const r = await runInProcess(swarm, promptIds, TOKENS, {}, [], null, SEEDED);
      expect(r.error).toBeNull();
      expect(r.tokens).toEqual(seeded);
      expect(r.meshRollBacks).toBe(0);
      expect(r.meshSteps > 0).toBe(swarm.meshLoop !== false);
    }
  });

  it('r = 1, greedy: the reference tokens through the loop', async () => {
    const r = await runInProcess(single, promptIds, TOKENS);
    expect(r.error).toBeNull();
    expect(r.tokens).toEqual(greedy);
    expect(r.meshSteps).toBeGreaterThan(0);
  });

  it('one of three last-stage replicas sends stage 0 wrong tokens: outvoted there, the reference tokens, no roll-back, suspected only', async () => {
    const r = await runInProcess(three, promptIds, TOKENS, { s2r0: wrongToken() });
    expect(r.error).toBeNull();
    expect(r.tokens).toEqual(greedy);
    expect(r.meshRollBacks).toBe(0);
    expect(r.meshSteps).toBeGreaterThan(0);
    // Stage 0 took the majority's token: the link held, so the receivers' word alone convicts nobody.
    expect(r.suspects.map((s) => `${s.volunteer}@${s.stage}`)).toContain('s2r0@2');
    expect(r.evicted.has('s2r0')).toBe(false);
  });

  it('r = 1, the last stage lies to stage 0 (greedy and seeded): rolled back, never streamed, the reference tokens; the liar is evicted', async () => {
    for (const [sampling, want] of [
      [GREEDY, greedy],
      [SEEDED, seeded],
    ] as const) {
      const r = await runInProcess(single, promptIds, TOKENS, { s2r0: wrongToken() }, [], null, sampling);
      expect(r.error).toBeNull();
      expect(r.tokens).toEqual(want);
      // Only verified tokens reached the requester: exactly the reference's, in order, none taken back.
      expect(r.streamed).toEqual(want);
      expect(r.meshRollBacks).toBeGreaterThan(0);
      // Its logits were the very value the token was sampled from: the sampler is deterministic, the lie proven.
      expect(r.evicted.get('s2r0')).toBe('ERR_EQUIVOCATION');
      expect(r.equivocators.map((e) => `${e.volunteer}@${e.stage}`)).toEqual(['s2r0@2']);
      expect(r.replacements.map((x) => x.joined)).toEqual(['s2spare']);
    }
  });

  it('two of three last-stage replicas send stage 0 the same wrong token: rolled back, the reference tokens, both evicted', async () => {
    const r = await runInProcess(three, promptIds, TOKENS, { s2r0: wrongToken(), s2r1: wrongToken() });
    expect(r.error).toBeNull();
    expect(r.tokens).toEqual(greedy);
    expect(r.streamed).toEqual(greedy);
    expect(r.meshRollBacks).toBeGreaterThan(0);
    expect(r.equivocators.map((e) => e.volunteer).sort()).toEqual(['s2r0', 's2r1']);
  });

  it('a one-stage model (every replica first and last): the reference tokens, the replicas feeding each other', async () => {
    const ids = referenceOneStage.tokenizer.encode('It is a truth universally acknowledged');
    const want = (await referenceOneStage.generateIds(ids, TOKENS, SEEDED)).tokens;
    const r = await runInProcess(oneStage, ids, TOKENS, {}, [], null, SEEDED);
    expect(r.error).toBeNull();
    expect(r.tokens).toEqual(want);
    expect(r.meshSteps).toBeGreaterThan(0);
  });

  it("the server's replica as the last stage, then as stage 0 (every volunteer of it gone mid-generation): the reference tokens, labelled", async () => {
    for (const stage of [2, 0]) {
      const lose = [0, 1, 2].map((i) => ({ who: `s${stage}r${i}`, afterSteps: 3, spare: null }));
      const r = await runInProcess(noSpares, promptIds, TOKENS, {}, [], lose, SEEDED);
      expect(r.error).toBeNull();
      expect(r.tokens).toEqual(seeded);
      expect(r.serverStages.at(-1)).toEqual([stage]);
      expect(r.meshSteps).toBeGreaterThan(0);
    }
  });
});
