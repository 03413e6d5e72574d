// The fused-operator stage graphs against the plain ones (the reference), on
// onnxruntime-web's WASM backend in Node: every stage's output, PyTorch's
// logits, greedy tokens, and the KV cache's roll-back and close.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CachingExecutor, mainOutput, PipelineSession, type StageExecutor, type TensorData } from '../../shared/model/pipeline.js';
import { argmax, GREEDY } from '../../shared/model/sampling.js';
import { faultBehaviour } from '../../shared/swarm/faults.js';
import { maxAbsDifference } from '../../shared/vote/tolerance.js';
import { GOLDEN_MODEL_IDS, goldenModelDir, lastRow, readGolden } from '../../testing/golden.js';
import { ensureStages, loadStageSet, readModelFolder } from '../models/model-folder.js';
import { createInProcessSwarm, type InProcessSwarm, releaseInProcessSwarm, runInProcess } from '../testing/in-process-swarm.js';
import { ReferenceRunner } from './reference-runner.js';

/** Fused vs PyTorch: the plain graph's bound (measured: 1.3e-5 austen-2m, 5.3e-5 tiny-gqa-bias; plain 1.3e-5, 5.1e-5). */
const LOGIT_TOLERANCE = 1e-4;
/** Fused vs plain, per stage, relative to the largest value (measured: ≤ 8.1e-7 austen-2m, ≤ 1.8e-6 tiny-gqa-bias). */
const STAGE_RELATIVE_TOLERANCE = 2e-5;
const STAGES = 3;

const cacheRoot = mkdtempSync(join(tmpdir(), 'webswarm-fused-'));
afterAll(() => rmSync(cacheRoot, { recursive: true, force: true }));

/** Each stage's main output for `ids` in a fresh session. */
async function trace(runner: ReferenceRunner, ids: readonly number[]): Promise<Float32Array[]> {
  const outs: Float32Array[] = [];
  const n = runner.manifest.stages.length;
  const recorder: StageExecutor = {
    async run(stage, feeds) {
      const out = await runner.stageExecutor.run(stage, feeds);
      outs.push(mainOutput(out, stage, n).data.slice());
      return out;
    },
  };
  await new PipelineSession(runner.manifest, recorder).forward(ids);
  return outs;
}

function maxAbs(a: Float32Array): number {
  let m = 0;
  for (const v of a) m = Math.max(m, Math.abs(v));
  return m;
}

/** Golden models whose head_dim onnxruntime's GroupQueryAttention takes (a multiple of 16). */
const FUSED_MODELS = GOLDEN_MODEL_IDS.filter((id) => id !== 'tiny-untied');

it('a model whose head_dim GroupQueryAttention cannot take is refused by name, not built wrong', async () => {
  expect(readModelFolder(goldenModelDir('tiny-untied')).config.headDim).toBe(8);
  await expect(
    ReferenceRunner.fromModelDir(goldenModelDir('tiny-untied'), { stages: 1 }, cacheRoot, { graph: 'fused' }),
  ).rejects.toMatchObject({
    code: 'ERR_MODEL_UNSUPPORTED',
    message: expect.stringContaining('head_dim 8 is not a multiple of 16'),
  });
});

describe.each(FUSED_MODELS)('fused stage graphs of %s', (modelId) => {
  const dir = goldenModelDir(modelId);
  const golden = readGolden(modelId);
  let plain: ReferenceRunner;
  let fused: ReferenceRunner;

  beforeAll(async () => {
    plain = await ReferenceRunner.fromModelDir(dir, { stages: STAGES }, cacheRoot, { graph: 'plain' });
    fused = await ReferenceRunner.fromModelDir(dir, { stages: STAGES }, cacheRoot, { graph: 'fused' });
  });
  afterAll(async () => {
    await plain?.close();
    await fused?.close();
  });

  it('are a different file set, marked fused in the manifest', () => {
    expect(plain.manifest.graph).toBe('plain');
    expect(fused.manifest.graph).toBe('fused');
    for (let s = 0; s < STAGES; s++) expect(fused.manifest.stages[s]?.sha256).not.toBe(plain.manifest.stages[s]?.sha256);
  });

  it("agree with the plain graphs stage by stage, give PyTorch's logits and its greedy tokens", async () => {
    for (const p of golden.prompts) {
      const a = await trace(plain, p.ids);
      const b = await trace(fused, p.ids);
      for (let s = 0; s < STAGES; s++) {
        const x = a[s] as Float32Array;
        const y = b[s] as Float32Array;
        expect(y.length).toBe(x.length);
        expect(maxAbsDifference(y, x) / Math.max(1, maxAbs(x)), `stage ${s}, "${p.text}"`).toBeLessThan(STAGE_RELATIVE_TOLERANCE);
      }
      expect(maxAbsDifference(b[STAGES - 1] as Float32Array, lastRow(p)), `"${p.text}"`).toBeLessThan(LOGIT_TOLERANCE);
      const r = await fused.generateIds(p.ids, p.greedy.length, GREEDY);
      expect(r.tokens, `greedy after "${p.text}"`).toEqual(p.greedy);
    }
  });

  it('roll back by count alone: a wrong step cut off and redone, several tokens after a past, a closed session', async () => {
    const p = golden.prompts[0] as (typeof golden.prompts)[number];
    const expected = p.greedy.slice(0, 8);
    const vocab = fused.manifest.model.vocabSize;
    const caches = new CachingExecutor(fused.manifest, fused.stageExecutor);
    const ids = (tokens: readonly number[]): TensorData => ({
      dtype: 'int64',
      dims: [1, tokens.length],
      data: BigInt64Array.from(tokens, (t) => BigInt(t)),
    });
    const forward = async (session: number, tokens: readonly number[]): Promise<Float32Array> => {
      let carry = ids(tokens);
      for (let s = 0; s < STAGES; s++) carry = await caches.step(session, s, carry);
      return (carry as Extract<TensorData, { dtype: 'float32' }>).data;
    };
    const last = (logits: Float32Array) => argmax(logits.subarray(logits.length - vocab));

    // Session 1: the prompt, 3 tokens; then a wrong token, cut off, and the right one.
    const got: number[] = [last(await forward(1, p.ids))];
    for (let i = 0; i < 2; i++) got.push(last(await forward(1, [got[i] as number])));
    await forward(1, [(got[2] as number) === 7 ? 8 : 7]);
    await caches.truncate(1, p.ids.length + 2);
    for (let i = 2; i < 5; i++) got.push(last(await forward(1, [got[i] as number])));
    // Two tokens in one step after a past (a replay), and the rest one by one.
    await caches.truncate(1, p.ids.length + 3);
    got.splice(4);
    got.push(last(await forward(1, [got[3] as number])));
    got.push(last(await forward(1, [got[4] as number])));
    await caches.truncate(1, p.ids.length + 4);
    const two = await forward(1, [got[4] as number, got[5] as number]);
    // The head runs on the step's last position only: one row, the one after both.
    expect(two.length).toBe(vocab);
    got.push(last(two));
    got.push(last(await forward(1, [got[6] as number])));
    expect(got).toEqual(expected);

    // Closed: the same session id starts from nothing.
    caches.release(1);
    expect(caches.sessions).toBe(0);
    expect(last(await forward(1, p.ids))).toBe(expected[0]);
    // A roll-back to nothing, then the prompt again.
    await caches.truncate(1, 0);
    expect(last(await forward(1, p.ids))).toBe(expected[0]);
    caches.release(1);
  });

  it.each(['plain', 'fused'] as const)('%s: a cut that arrives while a step computes applies after it', async (graph) => {
    const runner = graph === 'plain' ? plain : fused;
    const p = golden.prompts[0] as (typeof golden.prompts)[number];
    const caches = new CachingExecutor(runner.manifest, runner.stageExecutor);
    const input = (tokens: readonly number[]): TensorData => ({
      dtype: 'int64',
      dims: [1, tokens.length],
      data: BigInt64Array.from(tokens, (t) => BigInt(t)),
    });
    await caches.step(1, 0, input(p.ids));
    // The step of a wrong token is still computing when the roll-back comes (as in ReplicaCore.rollBack).
    const moot = caches.step(1, 0, input([7]));
    const cut = caches.truncate(1, p.ids.length);
    await Promise.all([moot, cut]);
    // Stage 0 again with the right token: the same hidden states as a fresh session's.
    const again = await caches.step(1, 0, input([p.greedy[0] as number]));
    const fresh = new CachingExecutor(runner.manifest, runner.stageExecutor);
    await fresh.step(2, 0, input(p.ids));
    const want = await fresh.step(2, 0, input([p.greedy[0] as number]));
    expect(maxAbsDifference(again.data, want.data)).toBe(0);
    caches.release(1);
    fresh.release(2);
  });
});

describe('a swarm of fused stages (in process: real replicas, real coordinator)', () => {
  const TOKENS = 10;
  let swarm: InProcessSwarm;
  let reference: ReferenceRunner;
  let promptIds: number[];
  let expected: number[];

  beforeAll(async () => {
    const { dir } = await ensureStages(goldenModelDir('tiny-gqa-bias'), { stages: STAGES }, cacheRoot, { graph: 'fused' });
    const set = await loadStageSet(dir);
    swarm = await createInProcessSwarm(set.manifest, set.stageBytes, 3, { joinMs: 5_000, stepMs: 10_000 }, 2);
    reference = await ReferenceRunner.fromStageDir(dir);
    promptIds = reference.tokenizer.encode('It is a truth universally acknowledged');
    expected = (await reference.generateIds(promptIds, TOKENS, GREEDY)).tokens;
  });
  afterAll(async () => {
    await releaseInProcessSwarm(swarm);
    await reference?.close();
  });

  it("a crash mid-generation: the spare replays the agreed inputs into its fused cache, and the tokens are the reference's", async () => {
    const r = await runInProcess(swarm, promptIds, TOKENS, {}, [], { who: 's1r1', afterSteps: 4, spare: 's1spare' });
    expect(r.error).toBeNull();
    expect(r.tokens).toEqual(expected);
    expect(r.computedBy.get('s1spare')).toBe(TOKENS);
    expect(r.audit.get('s1spare').disagreed).toBe(0);
  });

  it('equivocators caught at a step: the stages after roll their fused caches back, and the tokens do not change', async () => {
    const r = await runInProcess(swarm, promptIds, TOKENS, {
      s0r0: faultBehaviour('equivocate', 1),
      s0r1: faultBehaviour('equivocate', 1),
    });
    expect(r.error).toBeNull();
    expect(r.tokens).toEqual(expected);
    expect(r.equivocators.length).toBeGreaterThan(0);
  });
});
