// Stage files built and read in a thread of their own (stage-files.ts): the same results and errors as
// model-folder.ts on the main thread, and the event loop free meanwhile. Real files, a real worker thread.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ModelError } from '../../shared/model/errors.js';
import { longestStall } from '../../testing/event-loop.js';
import { ensureRandomCheckpoint, SMOLLM_135M_SHAPE } from '../../testing/random-checkpoint.js';
import { partitionBuilder } from '../stage-runners.js';
import { MODEL } from '../testing/http-swarm.js';
import { ensureStages, loadStageSet } from './model-folder.js';
import { ensureStagesOffThread, loadStageSetOffThread } from './stage-files.js';

const cache = mkdtempSync(join(tmpdir(), 'webswarm-stage-files-'));
afterAll(() => rmSync(cache, { recursive: true, force: true }));

describe('stage files in a thread', () => {
  it('builds, finds cached and reads what model-folder.ts does on the main thread, byte for byte', async () => {
    const partition = { stages: 3 } as const;
    // A choice other than the default, to see it reach the thread.
    const first = await ensureStagesOffThread(MODEL, partition, join(cache, 'thread'), { weights: 'q8' }, 'thread');
    expect(first.built).toBe(true);
    expect(first.manifest.weights).toBe('q8');
    const again = await ensureStagesOffThread(MODEL, partition, join(cache, 'thread'), { weights: 'q8' }, 'thread');
    expect(again.built).toBe(false);
    expect(again.manifest).toEqual(first.manifest);
    const here = await ensureStages(MODEL, partition, join(cache, 'main'), { weights: 'q8' });
    expect(first.manifest).toEqual(here.manifest);

    const set = await loadStageSetOffThread(first.dir, 'thread');
    const oracle = await loadStageSet(here.dir);
    expect(set.manifest).toEqual(oracle.manifest);
    expect(set.stageBytes.map((b) => Buffer.from(b).equals(oracle.stageBytes[set.stageBytes.indexOf(b)] ?? new Uint8Array()))).toEqual([
      true,
      true,
      true,
    ]);
    expect(set.tokenizerJson).toBe(oracle.tokenizerJson);
    expect(set.tokenizerConfigJson).toBe(oracle.tokenizerConfigJson);
  });

  it('throws what the main thread throws: a ModelError with its code, file and message', async () => {
    const missing = join(cache, 'no-such-model');
    const there = await ensureStagesOffThread(missing, { stages: 2 }, cache, {}, 'thread').catch((e: unknown) => e);
    const here = await ensureStages(missing, { stages: 2 }, cache).catch((e: unknown) => e);
    expect(there).toBeInstanceOf(ModelError);
    expect(here).toBeInstanceOf(ModelError);
    expect([(there as ModelError).code, (there as ModelError).file, (there as ModelError).message]).toEqual([
      'ERR_MODEL_FILE_MISSING',
      (here as ModelError).file,
      (here as ModelError).message,
    ]);

    // A stage file changed on disk after it was built: refused by its sha256, naming the file.
    const { dir, manifest } = await ensureStages(MODEL, { stages: 2 }, join(cache, 'tampered'));
    const file = manifest.stages[1]?.file ?? '';
    writeFileSync(join(dir, file), new Uint8Array(manifest.stages[1]?.sizeBytes ?? 0));
    const tampered = await loadStageSetOffThread(dir, 'thread').catch((e: unknown) => e);
    expect(tampered).toBeInstanceOf(ModelError);
    expect((tampered as ModelError).code).toBe('ERR_MANIFEST_SHA256');
    expect((tampered as ModelError).message).toContain(file);
  });

  it("leaves the event loop free while a re-partition's stages are built and its oracle loads them", async () => {
    // A SmolLM-135M-shaped checkpoint cut to 6 layers (43 MB of bfloat16, 90 MB of stages): big enough that the main
    // thread is held for a measurable time (about 0.5–0.7 s at a stretch here), small enough for CI.
    const checkpoint = ensureRandomCheckpoint(join(cache, 'smollm-6'), { ...SMOLLM_135M_SHAPE, layers: 6 }, 7);
    const stageCache = join(cache, 'smollm');
    const built: { served?: Awaited<ReturnType<typeof ensureStages>> } = {};
    const onMain = await longestStall(async () => {
      built.served = await ensureStages(checkpoint, { stages: 2 }, stageCache);
    });
    const served = built.served;
    if (served === undefined) throw new Error('not built');
    const builder = partitionBuilder({ ...served, modelDir: checkpoint }, stageCache, () => {});
    if (builder === null) throw new Error('no builder');
    let challenge: unknown = null;
    const offMain = await longestStall(async () => {
      const cut = await builder.build([
        { start: 0, end: 4 },
        { start: 4, end: 6 },
      ]);
      challenge = await cut.oracle.make(1);
    });
    await builder.release?.();
    console.log(`event loop held at most ${onMain.toFixed(0)} ms building on the main thread, ${offMain.toFixed(0)} ms building in a thread`);
    expect(challenge).not.toBeNull();
    // The main thread's figure is the control: the same work there holds the loop for far longer.
    expect(onMain).toBeGreaterThan(3 * offMain);
    expect(offMain).toBeLessThan(250);
  });
});
