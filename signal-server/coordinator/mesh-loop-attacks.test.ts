// The mesh loop attacked in process: real stages, real onnxruntime sessions,
// real replicas (ReplicaCore) and the real coordinator (in-process-swarm.ts),
// with the attacker in the data path (a Wire) or in a replica's fault hook.
// Whatever the last stage sends stage 0, the requester must get the reference
// runner's tokens, and no honest replica may be evicted or suspected.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SamplingParams } from '../../shared/model/sampling.js';
import { encodeFrame, FrameAssembler } from '../../shared/protocol/frames.js';
import type { FaultBehaviour } from '../../shared/swarm/faults.js';
import { goldenModelDir } from '../../testing/golden.js';
import { ensureStages, loadStageSet } from '../models/model-folder.js';
import { ReferenceRunner } from '../reference/reference-runner.js';
import { createInProcessSwarm, type InProcessSwarm, releaseInProcessSwarm, runInProcess, type Wire } from '../testing/in-process-swarm.js';

const TOKENS = 10;
const TIMEOUTS = { joinMs: 5_000, stepMs: 10_000 };
/** Seeded sampling at temperature 1 with a nucleus: the sampler's top-p branch, drawn alike by replicas and coordinator. */
const NUCLEUS: SamplingParams = { temperature: 1, topK: 0, topP: 0.9, seed: 31 };
const GREEDY_PARAMS: SamplingParams = { temperature: 0, topK: 0, topP: 1, seed: 0 };

let cache: string;
let three: InProcessSwarm;
let single: InProcessSwarm;
let reference: ReferenceRunner;
let promptIds: number[];
let greedy: number[];
let nucleus: number[];
let vocab: number;
let last: number;

beforeAll(async () => {
  cache = mkdtempSync(join(tmpdir(), 'webswarm-meshattacks-'));
  const { dir } = await ensureStages(goldenModelDir('tiny-gqa-bias'), { stages: 3 }, cache);
  const set = await loadStageSet(dir);
  vocab = set.manifest.model.vocabSize;
  last = set.manifest.stages.length - 1;
  three = await createInProcessSwarm(set.manifest, set.stageBytes, 3, TIMEOUTS, 1);
  single = await createInProcessSwarm(set.manifest, set.stageBytes, 1, TIMEOUTS, 1);
  reference = await ReferenceRunner.fromStageDir(dir);
  promptIds = reference.tokenizer.encode('It is a truth universally acknowledged');
  greedy = (await reference.generateIds(promptIds, TOKENS, GREEDY_PARAMS)).tokens;
  nucleus = (await reference.generateIds(promptIds, TOKENS, NUCLEUS)).tokens;
});

afterAll(async () => {
  for (const s of [three, single]) await releaseInProcessSwarm(s);
  await reference.close();
  rmSync(cache, { recursive: true, force: true });
});

/** Honest logits and reports; to stage 0, another token than it sampled at the steps `when` picks. */
function lieWhen(when: (step: number) => boolean): FaultBehaviour {
  return { output: (_s, d) => d, delayMs: 0, token: (step, sampled) => (when(step) ? (sampled + 1) % vocab : sampled) };
}

/**
 * A man in the middle before `victim` (a stage-0 replica in league with the
 * liar): every last-stage token frame it gets says what the liar says, so it
 * computes on the liar's token and reports, as its own evidence, that every
 * honest last-stage replica sent it.
 */
function deceive(victim: string): Wire {
  return (from, to, bytes) => {
    if (to !== victim) return [{ from, bytes }];
    const r = new FrameAssembler().push(bytes);
    if (r.kind !== 'complete' || r.frame.stage !== last || r.frame.data.length !== 1) return [{ from, bytes }];
    const lie = ((r.frame.data[0] as number) + 1) % vocab;
    return encodeFrame({ ...r.frame, data: Float32Array.of(lie) }).map((b) => ({ from, bytes: b }));
  };
}

describe('the mesh loop under attack, in process', () => {
  it('r = 3: a last-stage liar with a stage-0 replica in league cannot make stage 0 roll back, nor frame the honest last-stage replicas', async () => {
    const r = await runInProcess(three, promptIds, TOKENS, { s2r0: lieWhen(() => true) }, [], null, GREEDY_PARAMS, deceive('s0r0'));
    expect(r.error).toBeNull();
    expect(r.tokens).toEqual(greedy);
    expect(r.streamed).toEqual(greedy);
    // The deceived replica computed on the liar's token (its stage outvoted it: 2 of 3 agreed)…
    expect(r.votes.some((v) => v[0] === 2)).toBe(true);
    // …while the honest majority of stage 0 computed on the verified token: nothing to roll back.
    expect(r.meshRollBacks).toBe(0);
    // The colluder's word alone (one receiver of three) accuses nobody.
    const honestLast = ['s2r1', 's2r2'];
    expect(r.suspects.map((s) => s.volunteer).filter((v) => honestLast.includes(v))).toEqual([]);
    expect(r.equivocators).toEqual([]);
    expect([...r.evicted.keys()].filter((v) => v !== 's0r0' && v !== 's2r0')).toEqual([]);
  });

  it('seeded, temperature 1, top-p 0.9: the reference tokens at r = 3 with a liar outvoted, and at r = 1 with the liar rolled back and evicted', async () => {
    expect(nucleus).not.toEqual(greedy);
    const outvoted = await runInProcess(three, promptIds, TOKENS, { s2r0: lieWhen(() => true) }, [], null, NUCLEUS);
    expect(outvoted.error).toBeNull();
    expect(outvoted.tokens).toEqual(nucleus);
    expect(outvoted.streamed).toEqual(nucleus);
    expect(outvoted.meshRollBacks).toBe(0);
    const alone = await runInProcess(single, promptIds, TOKENS, { s2r0: lieWhen(() => true) }, [], null, NUCLEUS);
    expect(alone.error).toBeNull();
    expect(alone.tokens).toEqual(nucleus);
    expect(alone.streamed).toEqual(nucleus);
    expect(alone.meshRollBacks).toBeGreaterThan(0);
    expect(alone.evicted.get('s2r0')).toBe('ERR_EQUIVOCATION');
  });

  it('r = 1, a liar that lies once, late (step 5): until then stage 0 runs ahead on its tokens; then one roll-back, eviction, the reference tokens', async () => {
    const r = await runInProcess(single, promptIds, TOKENS, { s2r0: lieWhen((step) => step === 5) }, [], null, NUCLEUS);
    expect(r.error).toBeNull();
    expect(r.tokens).toEqual(nucleus);
    expect(r.streamed).toEqual(nucleus);
    expect(r.meshRollBacks).toBe(1);
    expect(r.evicted.get('s2r0')).toBe('ERR_EQUIVOCATION');
    expect(r.equivocators.map((e) => `${e.volunteer}@${e.stage}@${e.step}`)).toEqual(['s2r0@2@5']);
    expect(r.replacements.map((x) => x.joined)).toEqual(['s2spare']);
  });

  it('r = 1, a roll-back racing a replacement: the liar lies at step 4 while a stage-0 or stage-1 replica leaves after its 4th step', async () => {
    for (const who of ['s0r0', 's1r0']) {
      const crash = { who, afterSteps: 4, spare: `${who.slice(0, 2)}spare` };
      const r = await runInProcess(single, promptIds, TOKENS, { s2r0: lieWhen((step) => step === 4) }, [], crash, NUCLEUS);
      expect(r.error, who).toBeNull();
      expect(r.tokens, who).toEqual(nucleus);
      expect(r.streamed, who).toEqual(nucleus);
      expect(r.evicted.get('s2r0'), who).toBe('ERR_EQUIVOCATION');
      expect(r.replacements.map((x) => x.joined).sort(), who).toEqual([crash.spare, 's2spare'].sort());
    }
  });
});
