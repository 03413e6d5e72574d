// Batching across sessions (shared/model/step-batcher.ts), on onnxruntime-web's
// WASM backend in Node: several sessions of different lengths stepped at once
// through one CachingExecutor, whose decode steps share runtime calls, give
// every session what it gets alone (one call per step), bit for bit, through
// roll-backs and a session closed while the others go on; a poisoned row does
// not reach its neighbours.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CachingExecutor, DEFAULT_MAX_BATCH, type Float32Tensor, type TensorData } from '../../shared/model/pipeline.js';
import type { GraphForm } from '../../shared/model/stage-graph-fused.js';
import { StepBatcher } from '../../shared/model/step-batcher.js';
import { maxAbsDifference } from '../../shared/vote/tolerance.js';
import { goldenModelDir, readGolden } from '../../testing/golden.js';
import { SerialExecutor } from '../coordinator/fallback.js';
import { ReferenceRunner } from './reference-runner.js';

const STAGES = 3;
const cacheRoot = mkdtempSync(join(tmpdir(), 'webswarm-batch-'));
afterAll(() => rmSync(cacheRoot, { recursive: true, force: true }));

/** One operation of a session's script: a step of these token ids, a roll-back to a length, or a close. */
type Op = { readonly step: readonly number[] } | { readonly truncate: number } | { readonly release: true };

function ids(tokens: readonly number[]): TensorData {
  return { dtype: 'int64', dims: [1, tokens.length], data: BigInt64Array.from(tokens, (t) => BigInt(t)) };
}

/** Runs a session's script on one executor, or one per stage; returns every stage's output of every step, in order. */
async function play(on: CachingExecutor | readonly CachingExecutor[], session: number, script: readonly Op[]): Promise<Float32Array[]> {
  const execs = Array.isArray(on) ? on : Array.from({ length: STAGES }, () => on as CachingExecutor);
  const distinct = [...new Set(execs)];
  const outs: Float32Array[] = [];
  for (const op of script) {
    if ('truncate' in op) for (const e of distinct) await e.truncate(session, op.truncate);
    else if ('release' in op) for (const e of distinct) e.release(session);
    else {
      let carry: TensorData = ids(op.step);
      for (let s = 0; s < STAGES; s++) {
        carry = await (execs[s] as CachingExecutor).step(session, s, carry);
        outs.push((carry as Float32Tensor).data.slice());
      }
    }
  }
  return outs;
}

/** Decode steps of fixed tokens (the outputs are compared with the oracle's, not sampled from). */
function decode(n: number, seed: number): Op[] {
  return Array.from({ length: n }, (_, i) => ({ step: [(seed * 31 + i * 17) % 2000] }));
}

/**
 * Sessions of different lengths: two of one prompt length (the plain graph
 * batches only equal lengths), a one-token prompt (its first step is already a
 * decode step, on an empty cache), one rolled back twice (a wrong step undone,
 * then two back), one closed half way, and one that starts later.
 */
function scripts(prompts: readonly (readonly number[])[]): Op[][] {
  const [a, b] = prompts as [readonly number[], readonly number[]];
  const b2 = [...a.slice(0, -1), (((a[a.length - 1] as number) + 1) % 2000) as number];
  return [
    [{ step: a }, ...decode(10, 1)],
    [{ step: b2 }, ...decode(10, 2)],
    [{ step: [5] }, ...decode(9, 3)],
    [{ step: b }, ...decode(3, 4), { truncate: b.length + 2 }, ...decode(4, 5), { truncate: b.length + 3 }, ...decode(3, 6)],
    [{ step: a }, ...decode(4, 7), { release: true }],
    [...decode(3, 8), { step: [9, 10, 11] }, ...decode(5, 9)],
  ];
}

describe.each([
  ['austen-2m', 'plain'],
  ['austen-2m', 'fused'],
  ['tiny-gqa-bias', 'fused'],
] as const)('%s, %s stage graphs: sessions stepped together', (modelId, graph: GraphForm) => {
  let runner: ReferenceRunner;
  const golden = readGolden(modelId);
  const prompts = golden.prompts.map((p) => p.ids);

  beforeAll(async () => {
    runner = await ReferenceRunner.fromModelDir(goldenModelDir(modelId), { stages: STAGES }, cacheRoot, { graph });
  });
  afterAll(async () => {
    await runner?.close();
  });

  it.each(['one executor for every stage (a tab)', "one per stage sharing a batcher (the server's replicas)"])(
    '%s: share runtime calls and give each session bit for bit what it gets alone, through roll-backs and a close',
    async (how) => {
      const all = scripts(prompts);
      // The oracle: each session alone, one call per step.
      const alone = new CachingExecutor(runner.manifest, runner.stageExecutor, { maxBatch: 1 });
      const want: Float32Array[][] = [];
      for (const [i, script] of all.entries()) want.push(await play(alone, i + 1, script));

      const shared = new StepBatcher(runner.manifest, new SerialExecutor(async () => runner.stageExecutor), DEFAULT_MAX_BATCH);
      const perStage = Array.from(
        { length: STAGES },
        () => new CachingExecutor(runner.manifest, runner.stageExecutor, { batcher: shared }),
      );
      const together = how.startsWith('one executor') ? new CachingExecutor(runner.manifest, runner.stageExecutor) : perStage;
      const got = await Promise.all(all.map((script, i) => play(together, i + 1, script)));
      for (const [i, outs] of got.entries()) {
        const w = want[i] as Float32Array[];
        expect(outs.length).toBe(w.length);
        for (const [k, out] of outs.entries()) expect(maxAbsDifference(out, w[k] as Float32Array), `session ${i + 1}, output ${k}`).toBe(0);
      }
      const first = Array.isArray(together) ? (together[0] as CachingExecutor) : together;
      const counts = first.batching;
      expect(counts.steps).toBe(alone.batching.steps);
      // The fused graph: most decode steps shared a call (measured 156 of 171 in 48 calls); the prefills ran alone.
      // The plain graph: only those of equal lengths (90 of 171 in 120 calls).
      expect(counts.batchedSteps).toBeGreaterThan(counts.steps / (graph === 'fused' ? 2 : 3));
      expect(counts.calls).toBeLessThan(counts.steps / (graph === 'fused' ? 2 : 1.3));
      expect(counts.largestBatch).toBeGreaterThanOrEqual(graph === 'fused' ? 4 : 2);
      expect(alone.batching).toMatchObject({ batchedSteps: 0, largestBatch: 1 });
      // The closed session is forgotten; the rest are closed now.
      for (const e of Array.isArray(together) ? together : [together]) {
        expect(e.sessions).toBe(all.length - 1);
        for (let i = 1; i <= all.length; i++) e.release(i);
        expect(e.sessions).toBe(0);
      }
    },
  );

  it('split for a pipeline (a volunteer holding one of 3 stages): a call takes at most a third of the sessions, each the same bit for bit', async () => {
    const all = scripts(prompts);
    const alone = new CachingExecutor(runner.manifest, runner.stageExecutor, { maxBatch: 1 });
    const want: Float32Array[][] = [];
    for (const [i, script] of all.entries()) want.push(await play(alone, i + 1, script));
    const exec = new CachingExecutor(runner.manifest, runner.stageExecutor, { microBatches: STAGES });
    const got = await Promise.all(all.map((script, i) => play(exec, i + 1, script)));
    for (const [i, outs] of got.entries()) {
      for (const [k, out] of outs.entries()) expect(maxAbsDifference(out, (want[i] as Float32Array[])[k] as Float32Array)).toBe(0);
    }
    // Six sessions, three groups: calls of at most two, and still shared.
    expect(exec.batching.largestBatch).toBe(2);
    expect(exec.batching.batchedSteps).toBeGreaterThan(0);
    exec.dispose();
  });

  it('a runtime that fails on a batch: each step is run again alone, and every session still gets its own result', async () => {
    const all = scripts(prompts).slice(0, 3);
    const alone = new CachingExecutor(runner.manifest, runner.stageExecutor, { maxBatch: 1 });
    const want: Float32Array[][] = [];
    for (const [i, script] of all.entries()) want.push(await play(alone, i + 1, script));
    let refused = 0;
    // As a runtime out of memory for B rows would: the call throws, and nothing of the caches has changed.
    const failsOnBatches = {
      run: async (stage: number, feeds: Parameters<typeof runner.stageExecutor.run>[1]) => {
        if ((Object.values(feeds)[0]?.dims[0] ?? 1) > 1) {
          refused++;
          throw new Error('out of memory');
        }
        return runner.stageExecutor.run(stage, feeds);
      },
    };
    const exec = new CachingExecutor(runner.manifest, failsOnBatches);
    const got = await Promise.all(all.map((script, i) => play(exec, i + 1, script)));
    for (const [i, outs] of got.entries()) {
      for (const [k, out] of outs.entries()) expect(maxAbsDifference(out, (want[i] as Float32Array[])[k] as Float32Array)).toBe(0);
    }
    expect(refused).toBeGreaterThan(0);
    expect(exec.batching).toMatchObject({ batchedSteps: 0, largestBatch: 1 });
    exec.dispose();
  });

  it("a row of NaN and huge hidden states shares a call without reaching its neighbours' rows", async () => {
    const exec = new CachingExecutor(runner.manifest, runner.stageExecutor);
    const alone = new CachingExecutor(runner.manifest, runner.stageExecutor, { maxBatch: 1 });
    const d = runner.manifest.model.hiddenSize;
    const p = prompts[0] as number[];
    // Sessions 1 and 2 hold one prompt's past at stage 1; session 3 holds garbage.
    const hidden = await alone.step(9, 0, ids(p));
    for (const s of [1, 2, 3]) await exec.step(s, 1, hidden);
    await alone.step(9, 1, hidden);
    const next = await alone.step(9, 0, ids([7]));
    const poison: TensorData = {
      dtype: 'float32',
      dims: [1, 1, d],
      data: Float32Array.from({ length: d }, (_, i) => (i % 2 ? Number.NaN : 3e38)),
    };
    const before = exec.batching.batchedSteps;
    const [r1, r3, r2] = await Promise.all([exec.step(1, 1, next), exec.step(3, 1, poison), exec.step(2, 1, next)]);
    expect(exec.batching.batchedSteps - before).toBe(3);
    const want = await alone.step(9, 1, next);
    expect(maxAbsDifference(r1.data, want.data)).toBe(0);
    expect(maxAbsDifference(r2.data, want.data)).toBe(0);
    expect(r3.data.some((v) => !Number.isFinite(v))).toBe(true);
    // And the next step of the clean sessions, batched again with the poisoned one, is still the oracle's.
    const after = await alone.step(9, 0, ids([8]));
    const [s1, , s2] = await Promise.all([exec.step(1, 1, after), exec.step(3, 1, after), exec.step(2, 1, after)]);
    const want2 = await alone.step(9, 1, after);
    expect(maxAbsDifference(s1.data, want2.data)).toBe(0);
    expect(maxAbsDifference(s2.data, want2.data)).toBe(0);
    exec.dispose();
    alone.dispose();
  });
});
