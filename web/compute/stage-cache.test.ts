// The stage cache hands back a built stage only when it hashes to the
// manifest's sha256 again; anything else is deleted, never run. Real stage
// files built from a real checkpoint; the store is the in-memory one (the
// Cache API is exercised in the browser, e2e/layer-fetch.spec.ts).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildStages } from '../../shared/model/build-stages.js';
import { parseModelConfig } from '../../shared/model/config.js';
import type { StageManifest } from '../../shared/model/manifest.js';
import { parseSafetensors } from '../../shared/model/safetensors.js';
import type { HeadPositions } from '../../shared/model/stage-graph.js';
import { goldenModelDir } from '../../testing/golden.js';
import { keepStage, readCachedStage, stageMismatch } from './stage-cache.js';
import { memoryStore, tensorKey } from './tensor-store.js';

const dir = goldenModelDir('tiny-gqa-bias');
let manifest: StageManifest;
let files: Map<string, Uint8Array>;

/** The two stages of tiny-gqa-bias, the head on the last position (the product) or, as before, on every position. */
function build(head: HeadPositions) {
  return buildStages({
    modelId: 'tiny-gqa-bias',
    config: parseModelConfig('config.json', JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'))),
    weightsFile: 'model.safetensors',
    tensors: parseSafetensors('model.safetensors', readFileSync(join(dir, 'model.safetensors'))),
    tokenizerJson: readFileSync(join(dir, 'tokenizer.json')),
    tokenizerConfigJson: null,
    partition: { stages: 2 },
    head,
  });
}

beforeAll(async () => {
  const built = await build('last');
  manifest = built.manifest;
  files = new Map([...built.files].map(([name, bytes]) => [name, new Uint8Array(bytes)]));
});

function stageFile(index: number): Uint8Array {
  const f = files.get(manifest.stages[index]?.file ?? '');
  if (f === undefined) throw new Error(`no file for stage ${index}`);
  return f;
}

const keyOf = (index: number) => tensorKey(manifest.modelId, manifest.stages[index]?.sha256 ?? '');

describe('the stage cache', () => {
  it('hands back a kept stage byte for byte, and nothing for a stage never kept', async () => {
    const store = memoryStore();
    await keepStage(store, manifest, 1, stageFile(1));
    const hit = await readCachedStage(store, manifest, 1);
    expect(hit.kind).toBe('hit');
    expect(hit.kind === 'hit' && Buffer.from(hit.bytes).equals(Buffer.from(stageFile(1)))).toBe(true);
    expect(await readCachedStage(store, manifest, 0)).toEqual({ kind: 'miss' });
    expect(await readCachedStage(null, manifest, 1)).toEqual({ kind: 'miss' });
    expect(await readCachedStage(store, manifest, 7)).toEqual({ kind: 'miss' });
  });

  it('refuses and deletes an entry with one bit flipped: it is never handed back', async () => {
    const store = memoryStore();
    const tampered = stageFile(0).slice();
    tampered[tampered.byteLength >> 1] = ((tampered[tampered.byteLength >> 1] as number) ^ 0x01) & 0xff;
    await store.put(keyOf(0), tampered);
    const r = await readCachedStage(store, manifest, 0);
    expect(r.kind).toBe('rejected');
    expect(r.kind === 'rejected' && r.reason).toMatch(
      new RegExp(
        `^the cached stage 0 is ${tampered.byteLength} bytes with sha256 [0-9a-f]{64}; the manifest says .*${manifest.stages[0]?.sha256}$`,
      ),
    );
    expect(store.size).toBe(0);
    expect(await readCachedStage(store, manifest, 0)).toEqual({ kind: 'miss' });
  });

  it('refuses a truncated entry, and another stage’s file under this stage’s key', async () => {
    const store = memoryStore();
    await store.put(keyOf(0), stageFile(0).subarray(0, stageFile(0).byteLength - 1));
    expect((await readCachedStage(store, manifest, 0)).kind).toBe('rejected');
    await store.put(keyOf(1), stageFile(0));
    expect((await readCachedStage(store, manifest, 1)).kind).toBe('rejected');
    expect(store.size).toBe(0);
  });

  it('never hands a last stage kept before the head ran on the last position only to the new manifest; stage 0, unchanged, still is', async () => {
    const store = memoryStore();
    const before = await build('all');
    for (const [i, entry] of before.manifest.stages.entries())
      await keepStage(store, before.manifest, i, before.files.get(entry.file) as Uint8Array);
    expect(store.size).toBe(2);
    expect(await readCachedStage(store, manifest, 1)).toEqual({ kind: 'miss' });
    expect((await readCachedStage(store, manifest, 0)).kind).toBe('hit');
    expect((await readCachedStage(store, before.manifest, 1)).kind).toBe('hit');
  });

  it('keys by model and sha256: the same stage under another model id is not found', async () => {
    const store = memoryStore();
    await keepStage(store, manifest, 0, stageFile(0));
    expect(await readCachedStage(store, { ...manifest, modelId: 'another-model' }, 0)).toEqual({ kind: 'miss' });
    expect(await stageMismatch(manifest, 0, stageFile(0))).toBeNull();
    expect(await stageMismatch(manifest, 3, stageFile(0))).toBe('not in the manifest');
  });
});
