// The LM head on the positions a call's logits_from names (stage-graph.ts,
// lmHead): each row's last (what the runtime adapters feed by default) or
// every one. Both graph forms' last stage run as onnxruntime-web runs it, on
// a batch of rows, against the same stage built with the head on every
// position; and the stage cache, which must never serve a set built before
// the change.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { StageManifest } from '../../shared/model/manifest.js';
import type { Feeds, TensorData } from '../../shared/model/pipeline.js';
import { LOGITS_FROM_ALL, LOGITS_FROM_LAST, logitsFromFeed, STAGE_IO } from '../../shared/model/stage-graph.js';
import { FUSED_IO, type GraphForm } from '../../shared/model/stage-graph-fused.js';
import { maxAbsDifference } from '../../shared/vote/tolerance.js';
import { goldenModelDir } from '../../testing/golden.js';
import { randomIds } from '../../testing/random-checkpoint.js';
import { buildStagesToDir, ensureStages, loadStageSet, readModelFolder } from '../models/model-folder.js';
import { OrtExecutor } from './ort-executor.js';

const work = mkdtempSync(join(tmpdir(), 'webswarm-last-head-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A golden model with a fused form (head_dim 16) and grouped-query heads. */
const MODEL = goldenModelDir('tiny-gqa-bias');
const STAGES = 2;
const ROWS = 3;
const POSITIONS = 5;

/** Seeded hidden states [ROWS, POSITIONS, d] in [−1, 1): the last stage's input for a batch of prompts. */
function hiddenStates(d: number): TensorData {
  const data = Float32Array.from(randomIds(2000, ROWS * POSITIONS * d, 3), (v) => v / 1000 - 1);
  return { dtype: 'float32', dims: [ROWS, POSITIONS, d], data };
}

/** The last stage's feeds for a prefill of every row at once: empty pasts (and the fused form's lengths). */
function prefillFeeds(manifest: StageManifest, hidden: TensorData): Feeds {
  const cfg = manifest.model;
  const stage = manifest.stages[STAGES - 1];
  if (stage === undefined) throw new Error('no last stage');
  const feeds: Feeds = { [STAGE_IO.hiddenIn]: hidden };
  const empty: TensorData = { dtype: 'float32', dims: [ROWS, cfg.numKvHeads, 0, cfg.headDim], data: new Float32Array(0) };
  for (let l = stage.layers.start; l < stage.layers.end; l++) {
    feeds[STAGE_IO.pastKey(l)] = empty;
    feeds[STAGE_IO.pastValue(l)] = empty;
  }
  if (manifest.graph === 'fused') {
    feeds[FUSED_IO.seqlensK] = { dtype: 'int32', dims: [ROWS], data: new Int32Array(ROWS).fill(POSITIONS - 1) };
    feeds[FUSED_IO.totalSequenceLength] = { dtype: 'int32', dims: [], data: Int32Array.of(POSITIONS) };
  }
  return feeds;
}

async function lastStageLogits(dir: string, feeds: (m: StageManifest) => Feeds): Promise<{ dims: readonly number[]; data: Float32Array }> {
  const set = await loadStageSet(dir);
  const ort = await OrtExecutor.create(set.stageBytes);
  try {
    const out = (await ort.run(STAGES - 1, feeds(set.manifest)))[STAGE_IO.logits];
    if (out === undefined || out.dtype !== 'float32') throw new Error('no float32 logits');
    return { dims: out.dims, data: out.data };
  } finally {
    await ort.release();
  }
}

describe.each(['plain', 'fused'] as GraphForm[])('the %s last stage', (graph) => {
  it('gives one row of logits per batch row, each the all-positions graph’s last row of that batch row', async () => {
    const last = await ensureStages(MODEL, { stages: STAGES }, work, { graph });
    const every = await ensureStages(MODEL, { stages: STAGES }, work, { graph, head: 'all' });
    const vocab = last.manifest.model.vocabSize;
    expect(last.manifest.stages[STAGES - 1]?.outputs[0]?.shape).toEqual(['batch', 'logit_rows', vocab]);
    expect(last.manifest.stages[STAGES - 1]?.inputs.find((i) => i.name === 'logits_from')).toEqual({
      name: 'logits_from',
      dtype: 'int64',
      shape: [1],
    });
    expect(every.manifest.stages[STAGES - 1]?.inputs.map((i) => i.name)).not.toContain('logits_from');
    expect(every.manifest.stages[STAGES - 1]?.outputs[0]?.shape).toEqual(['batch', 'sequence', vocab]);
    // Stage 0 is the same file either way: only the head changed.
    expect(last.manifest.stages[0]?.sha256).toBe(every.manifest.stages[0]?.sha256);
    expect(last.manifest.stages[STAGES - 1]?.sha256).not.toBe(every.manifest.stages[STAGES - 1]?.sha256);

    const hidden = hiddenStates(last.manifest.model.hiddenSize);
    const one = await lastStageLogits(last.dir, (m) => prefillFeeds(m, hidden));
    const all = await lastStageLogits(every.dir, (m) => prefillFeeds(m, hidden));
    expect(one.dims).toEqual([ROWS, 1, vocab]);
    expect(all.dims).toEqual([ROWS, POSITIONS, vocab]);
    for (let r = 0; r < ROWS; r++) {
      const want = all.data.subarray((r * POSITIONS + POSITIONS - 1) * vocab, (r * POSITIONS + POSITIONS) * vocab);
      const got = one.data.subarray(r * vocab, (r + 1) * vocab);
      expect(maxAbsDifference(got, want), `row ${r}`).toBeLessThan(1e-5);
      // Not some other position's row: the first position's logits differ by far more.
      const first = all.data.subarray(r * POSITIONS * vocab, (r * POSITIONS + 1) * vocab);
      expect(maxAbsDifference(got, first), `row ${r}`).toBeGreaterThan(1e-2);
    }
    // Named: the same.
    const named = await lastStageLogits(last.dir, (m) => ({
      ...prefillFeeds(m, hidden),
      ...{ [STAGE_IO.logitsFrom]: logitsFromFeed(LOGITS_FROM_LAST) },
    }));
    expect(Array.from(named.data)).toEqual(Array.from(one.data));
  });

  it('gives every position’s logits in one call with logits_from 0, the all-positions graph’s rows', async () => {
    const last = await ensureStages(MODEL, { stages: STAGES }, work, { graph });
    const every = await ensureStages(MODEL, { stages: STAGES }, work, { graph, head: 'all' });
    const vocab = last.manifest.model.vocabSize;
    const hidden = hiddenStates(last.manifest.model.hiddenSize);
    const rows = await lastStageLogits(last.dir, (m) => ({
      ...prefillFeeds(m, hidden),
      [STAGE_IO.logitsFrom]: logitsFromFeed(LOGITS_FROM_ALL),
    }));
    const all = await lastStageLogits(every.dir, (m) => prefillFeeds(m, hidden));
    expect(rows.dims).toEqual([ROWS, POSITIONS, vocab]);
    expect(maxAbsDifference(rows.data, all.data)).toBeLessThan(1e-5);
  });
});

describe('the stage cache', () => {
  it('rebuilds a set whose head runs on every position (a builder before this one) instead of serving it', async () => {
    const cache = join(work, 'cache');
    const fresh = await ensureStages(MODEL, { stages: STAGES }, cache);
    // What an older builder left in that directory, from the same model files: the head on every position.
    await buildStagesToDir(readModelFolder(MODEL), { stages: STAGES }, fresh.dir, { head: 'all' });
    const stale = await loadStageSet(fresh.dir);
    expect(stale.manifest.stages[STAGES - 1]?.sha256).not.toBe(fresh.manifest.stages[STAGES - 1]?.sha256);
    const again = await ensureStages(MODEL, { stages: STAGES }, cache);
    expect(again.built).toBe(true);
    expect(again.dir).toBe(fresh.dir);
    expect(again.manifest.stages.map((s) => s.sha256)).toEqual(fresh.manifest.stages.map((s) => s.sha256));
    expect((await ensureStages(MODEL, { stages: STAGES }, cache)).built).toBe(false);
    // The all-positions form asked for by name lives beside it, reused as itself.
    const every = await ensureStages(MODEL, { stages: STAGES }, cache, { head: 'all' });
    expect(every.dir).toBe(`${fresh.dir}-allpos`);
    expect(every.built).toBe(true);
    expect((await ensureStages(MODEL, { stages: STAGES }, cache, { head: 'all' })).built).toBe(false);
    expect((await ensureStages(MODEL, { stages: STAGES }, cache)).built).toBe(false);
  });
});
