// Weights in the precision a volunteer can run: f16 initializers cast to
// float32, and weight-only 8- and 4-bit blocks through onnxruntime's
// MatMulNBits, run by the same onnxruntime-web (WASM) the volunteers use.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ModelError } from '../../shared/model/errors.js';
import { parseManifest } from '../../shared/model/manifest.js';
import { GraphBuilder } from '../../shared/model/onnx-graph.js';
import { dequantizeBlockwise, quantizeBlockwise, toFloat16, WEIGHT_PRECISIONS, type WeightPrecision } from '../../shared/model/quantize.js';
import { halfToFloat } from '../../shared/model/safetensors.js';
import { GREEDY } from '../../shared/model/sampling.js';
import { gatherEmbedding, matMulWeight } from '../../shared/model/weight-nodes.js';
import { maxAbs, maxAbsDifference } from '../../shared/vote/tolerance.js';
import { goldenModelDir, readGolden } from '../../testing/golden.js';
import { ensureStages, loadStageSet } from '../models/model-folder.js';
import { OrtExecutor } from './ort-executor.js';
import { ReferenceRunner } from './reference-runner.js';

const work = mkdtempSync(join(tmpdir(), 'webswarm-precision-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/**
 * Largest logit difference from the f32 stages, relative to the largest f32
 * logit, on austen-2m's golden prompts: measured 4.3e-4 (f16), 1.05e-2 (q8),
 * 0.14 (q4); each bound leaves about 2× headroom.
 */
const LOGIT_BOUND: Record<WeightPrecision, number> = { f32: 0, f16: 1e-3, q8: 2.5e-2, q4: 0.3 };

function seededUniform(seed: number): () => number {
  let s = seed;
  return () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 4294967296 - 0.5;
  };
}

describe('one Linear layer in each precision, run by onnxruntime-web', () => {
  // K = 72: two whole blocks of 32 and a partial one; N = 40; 3 positions.
  const [N, K, M] = [40, 72, 3];
  const rnd = seededUniform(9);
  const w = Float32Array.from({ length: N * K }, rnd);
  const x = Float32Array.from({ length: M * K }, rnd);

  /** x @ Wᵀ in float64 for the weights the precision stands for. */
  function expected(p: WeightPrecision): Float64Array {
    const stood =
      p === 'f32'
        ? w
        : p === 'f16'
          ? Float32Array.from(toFloat16(w), halfToFloat)
          : dequantizeBlockwise(quantizeBlockwise(w, N, K, p === 'q8' ? 8 : 4));
    const y = new Float64Array(M * N);
    for (let m = 0; m < M; m++)
      for (let n = 0; n < N; n++)
        for (let k = 0; k < K; k++) y[m * N + n] = (y[m * N + n] as number) + (x[m * K + k] as number) * (stood[n * K + k] as number);
    return y;
  }

  it.each(WEIGHT_PRECISIONS)('%s: x @ Wᵀ for the weights the file stands for (MatMulNBits on the WASM provider for q8, q4)', async (p) => {
    const g = new GraphBuilder();
    matMulWeight(g, 'x', 'w', w, N, K, p, 'y');
    const bytes = g.toBytes(
      'linear',
      [{ name: 'x', dtype: 'float32', shape: [M, K] }],
      [{ name: 'y', dtype: 'float32', shape: [M, N] }],
      '',
    );
    const ort = await OrtExecutor.create([bytes]);
    try {
      const out = await ort.run(0, { x: { dtype: 'float32', dims: [M, K], data: x } });
      const y = out.y?.data as Float32Array;
      expect(maxAbsDifference(y, expected(p))).toBeLessThan(1e-5);
      // and the quantised file is not the float32 one: its error is what quantisation costs.
      if (p === 'q4') expect(maxAbsDifference(y, expected('f32'))).toBeGreaterThan(1e-3);
    } finally {
      await ort.release();
    }
  });
});

describe('the embedding table in each precision, run by onnxruntime-web', () => {
  // dim 72: a partial last block, sliced off after dequantisation.
  const [V, D] = [50, 72];
  const rnd = seededUniform(4);
  const table = Float32Array.from({ length: V * D }, rnd);
  const ids = [3, 49, 0, 3];

  it.each(WEIGHT_PRECISIONS)('%s: the rows the file stands for (8-bit rows for q8 and q4)', async (p) => {
    const g = new GraphBuilder();
    g.op('Identity', [gatherEmbedding(g, 'ids', 'embed', table, V, D, p)], {}, 'rows');
    const bytes = g.toBytes(
      'embed',
      [{ name: 'ids', dtype: 'int64', shape: [1, ids.length] }],
      [{ name: 'rows', dtype: 'float32', shape: [1, ids.length, D] }],
      '',
    );
    const stood =
      p === 'f32'
        ? table
        : p === 'f16'
          ? Float32Array.from(toFloat16(table), halfToFloat)
          : dequantizeBlockwise(quantizeBlockwise(table, V, D, 8));
    const ort = await OrtExecutor.create([bytes]);
    try {
      const out = await ort.run(0, { ids: { dtype: 'int64', dims: [1, ids.length], data: BigInt64Array.from(ids, BigInt) } });
      expect(out.rows?.dims).toEqual([1, ids.length, D]);
      const expected = ids.flatMap((id) => [...stood.subarray(id * D, (id + 1) * D)]);
      expect(maxAbsDifference(out.rows?.data as Float32Array, expected)).toBeLessThan(1e-6);
    } finally {
      await ort.release();
    }
  });
});

describe('austen-2m stages in each precision', () => {
  const dir = goldenModelDir('austen-2m');
  const golden = readGolden('austen-2m');

  it('are cached apart, recorded in the manifest, and smaller the fewer the bits', async () => {
    const sizes: number[] = [];
    for (const p of WEIGHT_PRECISIONS) {
      const { dir: stageDir, manifest, built } = await ensureStages(dir, { stages: 3 }, work, { weights: p });
      expect(built).toBe(true);
      expect(manifest.weights).toBe(p);
      expect(stageDir.endsWith(p === 'f32' ? 'r0-2_2-4_4-6' : `r0-2_2-4_4-6-${p}`)).toBe(true);
      expect((await loadStageSet(stageDir)).manifest.weights).toBe(p);
      expect((await ensureStages(dir, { stages: 3 }, work, { weights: p })).built).toBe(false);
      sizes.push(manifest.stages.reduce((a, s) => a + s.sizeBytes, 0));
    }
    const [f32, f16, q8, q4] = sizes as [number, number, number, number];
    expect(f16 / f32).toBeGreaterThan(0.49);
    expect(f16 / f32).toBeLessThan(0.51);
    expect(q8).toBeLessThan(f16);
    expect(q4).toBeLessThan(q8);
  });

  it.each(['f16', 'q8', 'q4'] as const)('%s: logits near the f32 stages, within the measured bound', async (p) => {
    const f32 = await ReferenceRunner.fromModelDir(dir, { stages: 3 }, work, { weights: 'f32' });
    const low = await ReferenceRunner.fromModelDir(dir, { stages: 3 }, work, { weights: p });
    try {
      let rel = 0;
      for (const prompt of golden.prompts) {
        const a = await f32.session().forward(prompt.ids);
        const b = await low.session().forward(prompt.ids);
        rel = Math.max(rel, maxAbsDifference(b, a) / Math.max(1, maxAbs(a)));
      }
      expect(rel).toBeLessThan(LOGIT_BOUND[p]);
      // Not the f32 file under another name: the precision shows in the numbers.
      expect(rel).toBeGreaterThan(LOGIT_BOUND[p] / 100);
      if (p === 'f16') {
        // f16 keeps austen-2m's greedy continuation of every golden prompt.
        for (const prompt of golden.prompts) {
          expect((await low.generateIds(prompt.ids, prompt.greedy.length, GREEDY)).tokens).toEqual(prompt.greedy);
        }
      }
    } finally {
      await f32.close();
      await low.close();
    }
  });
});

describe('the manifest', () => {
  it('reads a missing precision as f32 (older manifests) and refuses an unknown one', async () => {
    const { dir } = await ensureStages(goldenModelDir('tiny-untied'), { stages: 1 }, work);
    const { manifest } = await loadStageSet(dir);
    const { weights: _, ...older } = manifest;
    expect(parseManifest('m.json', JSON.parse(JSON.stringify(older))).weights).toBe('f32');
    expect(() => parseManifest('m.json', { ...manifest, weights: 'int3' })).toThrow(ModelError);
    expect(() => parseManifest('m.json', { ...manifest, weights: 'int3' })).toThrow('weights must be one of f32, f16, q8, q4, got "int3"');
  });
});
