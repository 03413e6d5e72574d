import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Partition } from '../../shared/model/partition.js';
import { GREEDY } from '../../shared/model/sampling.js';
import { maxAbsDifference } from '../../shared/vote/tolerance.js';
import { GOLDEN_MODEL_IDS, goldenModelDir, lastRow, readGolden } from '../../testing/golden.js';
import { readModelFolder } from '../models/model-folder.js';
import { ReferenceRunner } from './reference-runner.js';

/** The bound: stage chains must give PyTorch's logits within 1e-4. */
const LOGIT_TOLERANCE = 1e-4;
const cacheRoot = mkdtempSync(join(tmpdir(), 'webswarm-stages-'));
afterAll(() => rmSync(cacheRoot, { recursive: true, force: true }));

function partitionsFor(numLayers: number): { label: string; partition: Partition }[] {
  return [
    { label: '1 stage', partition: { stages: 1 } },
    { label: '2 stages', partition: { stages: 2 } },
    { label: '3 stages', partition: { stages: 3 } },
    { label: 'one layer per stage', partition: { stages: numLayers } },
  ];
}

// Every golden model, present or not: a missing one fails here, naming what to run.
describe.each(GOLDEN_MODEL_IDS)('reference runner on %s', (modelId) => {
  const dir = goldenModelDir(modelId);
  const golden = readGolden(modelId);
  const numLayers = readModelFolder(dir).config.numLayers;

  it.each(partitionsFor(numLayers))(
    "$label: PyTorch's last-position logits within 1e-4 and its greedy tokens",
    async ({ label, partition }) => {
      const runner = await ReferenceRunner.fromModelDir(dir, partition, cacheRoot);
      try {
        expect(runner.manifest.stages.length, label).toBe('stages' in partition ? partition.stages : 0);
        for (const p of golden.prompts) {
          const logits = await runner.session().forward(p.ids);
          // The head runs on the last position only: one row, PyTorch's last.
          expect(logits.length).toBe(p.shape[1]);
          expect(maxAbsDifference(logits, lastRow(p)), `${label}: "${p.text}"`).toBeLessThan(LOGIT_TOLERANCE);
          const r = await runner.generateIds(p.ids, p.greedy.length, GREEDY);
          expect(r.tokens, `${label}: greedy after "${p.text}"`).toEqual(p.greedy);
        }
      } finally {
        await runner.close();
      }
    },
  );

  it("the head on every position (the builder option benches use) gives all of PyTorch's logits, and its last row is the product's", async () => {
    const every = await ReferenceRunner.fromModelDir(dir, { stages: 2 }, cacheRoot, { head: 'all' });
    const runner = await ReferenceRunner.fromModelDir(dir, { stages: 2 }, cacheRoot);
    try {
      for (const p of golden.prompts) {
        const all = await every.session().forward(p.ids);
        expect(all.length).toBe(p.shape[0] * p.shape[1]);
        expect(maxAbsDifference(all, p.logits), `"${p.text}"`).toBeLessThan(LOGIT_TOLERANCE);
        const last = await runner.session().forward(p.ids);
        expect(maxAbsDifference(last, all.subarray(all.length - p.shape[1])), `"${p.text}"`).toBeLessThan(1e-5);
        expect((await every.generateIds(p.ids, p.greedy.length, GREEDY)).tokens).toEqual(p.greedy);
      }
    } finally {
      await every.close();
      await runner.close();
    }
  });

  it('incremental decoding with the KV cache equals full recomputation', async () => {
    // The recomputation needs every position's logits: a stage set with the head on all of them.
    const every = await ReferenceRunner.fromModelDir(dir, { stages: 2 }, cacheRoot, { head: 'all' });
    const runner = await ReferenceRunner.fromModelDir(dir, { stages: 2 }, cacheRoot);
    try {
      const vocab = runner.manifest.model.vocabSize;
      const p = golden.prompts[0] as (typeof golden.prompts)[number];
      const all = [...p.ids, ...p.greedy];
      const full = await every.session().forward(all);
      const inc = runner.session();
      // Prompt in one pass (its last row), then one token at a time.
      const rows: Float32Array[] = [await inc.forward(p.ids)];
      for (const t of p.greedy) rows.push(await inc.forward([t]));
      expect(inc.length).toBe(all.length);
      const joined = new Float32Array((p.greedy.length + 1) * vocab);
      let off = 0;
      for (const r of rows) {
        joined.set(r, off);
        off += r.length;
      }
      expect(off).toBe((p.greedy.length + 1) * vocab);
      expect(maxAbsDifference(joined, full.subarray((p.ids.length - 1) * vocab))).toBeLessThan(LOGIT_TOLERANCE);
    } finally {
      await every.close();
      await runner.close();
    }
  });
});
