import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GOLDEN_MODEL_IDS, goldenModelDir } from '../../testing/golden.js';
import { buildStages } from './build-stages.js';
import { parseModelConfig } from './config.js';
import { ModelError } from './errors.js';
import { resolvePartition } from './partition.js';
import { parseSafetensors, type TensorInfo } from './safetensors.js';
import { sha256Hex } from './sha256.js';
import { buildStageGraph } from './stage-graph.js';
import { buildTensorIndex, parseTensorIndex, stageDownloadBytes, stageTensorNames } from './tensor-index.js';
import { WeightReader } from './weights.js';

function readFolder(id: string) {
  const dir = goldenModelDir(id);
  const config = parseModelConfig('config.json', JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')));
  const tensors = parseSafetensors('model.safetensors', readFileSync(join(dir, 'model.safetensors')));
  return { config, tensors, tokenizerJson: readFileSync(join(dir, 'tokenizer.json')) };
}

describe('stageTensorNames', () => {
  it.each(GOLDEN_MODEL_IDS)('%s: a stage built from only its named tensors is byte-identical to the server’s', async (id) => {
    const { config, tensors, tokenizerJson } = readFolder(id);
    for (const stages of [1, 2, 3]) {
      const { manifest } = await buildStages({
        modelId: id,
        config,
        weightsFile: 'model.safetensors',
        tensors,
        tokenizerJson,
        tokenizerConfigJson: null,
        partition: { stages },
      });
      const ranges = resolvePartition(config.numLayers, { stages });
      for (const [index, layers] of ranges.entries()) {
        const spec = { index, count: ranges.length, layers };
        const names = stageTensorNames(config, spec);
        const only = new Map<string, TensorInfo>(names.map((n) => [n, tensors.get(n) as TensorInfo]));
        expect(
          names.every((n) => tensors.has(n)),
          `${id} stage ${index}/${stages}`,
        ).toBe(true);
        const bytes = buildStageGraph(config, new WeightReader('subset', only), spec);
        expect(await sha256Hex(bytes), `${id} stage ${index}/${stages}`).toBe(manifest.stages[index]?.sha256);
      }
    }
  });

  it('names the embedding once for a single tied stage, and the LM head when untied', () => {
    const tied = readFolder('austen-2m').config;
    const one = stageTensorNames(tied, { index: 0, count: 1, layers: { start: 0, end: tied.numLayers } });
    expect(one.filter((n) => n === 'model.embed_tokens.weight')).toHaveLength(1);
    expect(one).not.toContain('lm_head.weight');
    const untied = readFolder('tiny-untied').config;
    const last = stageTensorNames(untied, { index: 1, count: 2, layers: { start: 1, end: untied.numLayers } });
    expect(last).toContain('lm_head.weight');
    expect(last).not.toContain('model.embed_tokens.weight');
    expect(last).not.toContain('model.layers.0.mlp.up_proj.weight');
  });
});

describe('stageDownloadBytes', () => {
  it.each(GOLDEN_MODEL_IDS)('%s: every tensor is downloaded by one stage, a tied embedding by the first and the last', async (id) => {
    const { config, tensors } = readFolder(id);
    const index = await buildTensorIndex(id, 'model.safetensors', tensors);
    const all = [...tensors.values()].reduce((a, t) => a + t.bytes.byteLength, 0);
    const embed = tensors.get('model.embed_tokens.weight')?.bytes.byteLength ?? 0;
    for (const stages of [1, 2, 3]) {
      const bytes = stageDownloadBytes(
        config,
        resolvePartition(config.numLayers, { stages }).map((layers) => ({ layers })),
        index,
      );
      expect(bytes).toHaveLength(stages);
      for (const b of bytes) expect(b).toBeGreaterThan(0);
      expect(bytes.reduce((a, b) => a + b, 0)).toBe(all + (config.tieWordEmbeddings && stages > 1 ? embed : 0));
    }
  });
});

describe('the tensor index', () => {
  it('hashes each tensor’s stored bytes and survives its own parser', async () => {
    const { tensors } = readFolder('tiny-gqa-bias');
    const index = await buildTensorIndex('tiny-gqa-bias', 'model.safetensors', tensors);
    expect(index.tensors).toHaveLength(tensors.size);
    const embed = index.tensors.find((t) => t.name === 'model.embed_tokens.weight');
    const raw = tensors.get('model.embed_tokens.weight') as TensorInfo;
    expect(embed).toMatchObject({
      dtype: raw.dtype,
      shape: raw.shape,
      sizeBytes: raw.bytes.byteLength,
      sha256: await sha256Hex(raw.bytes),
    });
    expect(parseTensorIndex('tensors.json', JSON.parse(JSON.stringify(index)))).toEqual(index);
  });

  it('refuses a malformed index by name', async () => {
    const { tensors } = readFolder('tiny-untied');
    const good = JSON.parse(JSON.stringify(await buildTensorIndex('tiny-untied', 'model.safetensors', tensors)));
    const cases: [string, (m: Record<string, unknown> & { tensors: Record<string, unknown>[] }) => void, RegExp][] = [
      ['format', (m) => (m.format = 'other'), /format/],
      ['weightsFile', (m) => (m.weightsFile = '../etc/passwd'), /weightsFile/],
      ['sha', (m) => ((m.tensors[0] as Record<string, unknown>).sha256 = 'zz'), /sha256/],
      ['size', (m) => ((m.tensors[0] as Record<string, unknown>).sizeBytes = 3), /sizeBytes/],
      ['twice', (m) => m.tensors.push(m.tensors[0] as Record<string, unknown>), /listed twice/],
      ['empty', (m) => (m.tensors = []), /1 to/],
    ];
    for (const [what, change, message] of cases) {
      const m = structuredClone(good);
      change(m);
      expect(() => parseTensorIndex('tensors.json', m), what).toThrowError(ModelError);
      expect(() => parseTensorIndex('tensors.json', m), what).toThrowError(message);
    }
  });
});
