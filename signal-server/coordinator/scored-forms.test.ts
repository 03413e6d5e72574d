// A scored prompt at a vocabulary where whole rows of logits crowd a message: a seeded random checkpoint with 8 192
// tokens (2 layers in 2 stages), in process (real stages, onnxruntime sessions, replicas and coordinator, r = 3).
// Whole rows (32 KiB each) would let a step carry 24 (maxScoreRows); as scored forms (top-logits.ts: each row's top
// 32 tokens, rest, log-sum-exp and the scored token's value, 268 bytes) a step carries 96, so a 240-token prompt takes
// 3 steps instead of 10. Every position's log-probability must be the reference runner's, fed the prompt a token at
// a time; with a noisy replica in the last stage, outvoted at every position.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StageManifest } from '../../shared/model/manifest.js';
import { GREEDY } from '../../shared/model/sampling.js';
import { maxScoreRows } from '../../shared/protocol/messages.js';
import { faultBehaviour } from '../../shared/swarm/faults.js';
import { scoredFormRows } from '../../shared/vote/top-logits.js';
import { ensureRandomCheckpoint, randomIds } from '../../testing/random-checkpoint.js';
import { ensureStages, loadStageSet } from '../models/model-folder.js';
import { ReferenceRunner } from '../reference/reference-runner.js';
import { createInProcessSwarm, type InProcessSwarm, releaseInProcessSwarm, runInProcess } from '../testing/in-process-swarm.js';
import { logprobOf, promptLogprobs } from '../testing/prompt-logprobs.js';

const SHAPE = { layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 8192 };
const PROMPT_TOKENS = 240;
/** Stage by stage on the same WASM kernels, a step's positions in one call: float32 rounding. */
const TOLERANCE = 1e-4;

let cache: string;
let manifest: StageManifest;
let swarm: InProcessSwarm;
let reference: ReferenceRunner;
let ids: number[];
let want: number[];

beforeAll(async () => {
  cache = mkdtempSync(join(tmpdir(), 'webswarm-scored-forms-'));
  const checkpoint = ensureRandomCheckpoint(join(cache, 'checkpoint'), SHAPE, 8192);
  const { dir } = await ensureStages(checkpoint, { stages: 2 }, cache);
  const set = await loadStageSet(dir);
  manifest = set.manifest;
  swarm = await createInProcessSwarm(manifest, set.stageBytes, 3);
  reference = await ReferenceRunner.fromStageDir(dir);
  ids = randomIds(SHAPE.vocab, PROMPT_TOKENS, 5);
  want = await promptLogprobs(reference, ids);
}, 120_000);

afterAll(async () => {
  if (swarm !== undefined) await releaseInProcessSwarm(swarm);
  await reference?.close();
  rmSync(cache, { recursive: true, force: true });
});

/** The prompt scored, then 2 tokens: each position's log-probability, and the runtime calls each volunteer made. */
async function scored(faults: Parameters<typeof runInProcess>[3] = {}) {
  const got: number[] = [];
  const r = await runInProcess(swarm, ids, 2, faults, [], null, GREEDY, null, 0, (position, rec) => {
    got[position - 1] = logprobOf(rec.logits, rec.token, rec.logSumExp);
  });
  return { r, got };
}

describe('a scored prompt at an 8 192-token vocabulary, its rows as scored forms', () => {
  it('takes 96 positions a step where whole rows would allow 24, every position the reference’s', async () => {
    expect(manifest.model.vocabSize).toBe(8192);
    expect(maxScoreRows(8192)).toBe(24);
    expect(scoredFormRows(8192)).toBe(96);
    const { r, got } = await scored();
    expect(r.error?.message ?? null).toBeNull();
    expect(got).toHaveLength(PROMPT_TOKENS - 1);
    for (const [i, lp] of got.entries()) expect(Math.abs(lp - (want[i] as number)), `position ${i + 1}`).toBeLessThan(TOLERANCE);
    // Step 0: 96 positions; then one chunk of 96 and one of 47; the prompt's last token with the first sampled step,
    // and the second: 1 + ⌈(240 − 96 − 1) ÷ 96⌉ + 2 = 5 steps, each volunteer one runtime call a step after its
    // challenge's (with whole rows: 1 + ⌈(240 − 24 − 1) ÷ 24⌉ + 2 = 12).
    const steps = 1 + Math.ceil((PROMPT_TOKENS - 96 - 1) / 96) + 2;
    const routed = [...r.runsBy.entries()].filter(([id]) => !id.includes('spare'));
    expect(routed.length).toBe(6);
    for (const [id, runs] of routed) expect(runs, id).toBe(1 + steps);
  }, 120_000);

  it('a last-stage replica that sends noise is outvoted at every position: the log-probabilities stay the reference’s', async () => {
    const { r, got } = await scored({ s1r2: faultBehaviour('noise', 4) });
    expect(r.error?.message ?? null).toBeNull();
    for (const [i, lp] of got.entries()) expect(Math.abs(lp - (want[i] as number)), `position ${i + 1}`).toBeLessThan(TOLERANCE);
    expect(r.votes.every((v) => (v[1] as number) >= 2)).toBe(true);
  }, 120_000);
});
