// The worker's stage build: the stage made from fetched tensors must be the
// server's file, byte for byte, or it is refused by name.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildStages } from '../../shared/model/build-stages.js';
import { parseModelConfig } from '../../shared/model/config.js';
import { WEIGHT_PRECISIONS, type WeightPrecision } from '../../shared/model/quantize.js';
import { parseSafetensors, type TensorInfo } from '../../shared/model/safetensors.js';
import { sha256Hex } from '../../shared/model/sha256.js';
import { GRAPH_FORMS, type GraphForm } from '../../shared/model/stage-graph-fused.js';
import { stageTensorNames } from '../../shared/model/tensor-index.js';
import { goldenModelDir } from '../../testing/golden.js';
import { ComputeError } from './ort-web.js';
import { buildVerifiedStage } from './stage-build.js';

const dir = goldenModelDir('tiny-gqa-bias');
const config = parseModelConfig('config.json', JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')));
const tensors = parseSafetensors('model.safetensors', readFileSync(join(dir, 'model.safetensors')));

async function setup(choice: { weights?: WeightPrecision; graph?: GraphForm } = {}) {
  const { manifest, files } = await buildStages({
    ...choice,
    modelId: 'tiny-gqa-bias',
    config,
    weightsFile: 'model.safetensors',
    tensors,
    tokenizerJson: readFileSync(join(dir, 'tokenizer.json')),
    tokenizerConfigJson: null,
    partition: { stages: 2 },
  });
  const stage = manifest.stages[1];
  if (stage === undefined) throw new Error('no stage 1');
  const names = stageTensorNames(config, { index: 1, count: 2, layers: stage.layers });
  return { manifest, files, names, of: (ns: string[]) => ns.map((n) => tensors.get(n) as TensorInfo) };
}

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ComputeError) return `${e.code}: ${e.message}`;
    throw e;
  }
  throw new Error('expected a refusal');
}

describe('building a stage in the worker', () => {
  it('gives the server’s stage file, byte for byte', async () => {
    const { manifest, files, names, of } = await setup();
    const built = await buildVerifiedStage(manifest, { index: 1, tensors: of(names) });
    expect(await sha256Hex(new Uint8Array(built.bytes))).toBe(await sha256Hex(files.get('stage-1.onnx') as Uint8Array));
  });

  // The swarm's precision and form come from the manifest: the worker must build that very file for each.
  for (const weights of WEIGHT_PRECISIONS) {
    for (const graph of GRAPH_FORMS) {
      it(`gives the server’s file for every stage with weights ${weights}, graph ${graph}`, async () => {
        const { manifest, files, of } = await setup({ weights, graph });
        expect(manifest.weights).toBe(weights);
        expect(manifest.graph).toBe(graph);
        for (const s of manifest.stages) {
          const names = stageTensorNames(config, { index: s.index, count: manifest.stages.length, layers: s.layers });
          const built = await buildVerifiedStage(manifest, { index: s.index, tensors: of(names) });
          expect(await sha256Hex(new Uint8Array(built.bytes))).toBe(await sha256Hex(files.get(s.file) as Uint8Array));
        }
      });
    }
  }

  it('refuses a stage that differs from the manifest’s, and tensors that do not make it', async () => {
    const { manifest, names, of } = await setup();
    const other = { ...manifest, stages: manifest.stages.map((s) => ({ ...s, sha256: '0'.repeat(64) })) };
    expect(await refusal(buildVerifiedStage(other, { index: 1, tensors: of(names) }))).toMatch(/^ERR_STAGE_MISMATCH: stage 1 built here/);
    expect(await refusal(buildVerifiedStage(manifest, { index: 1, tensors: of(names.slice(1)) }))).toMatch(
      /^ERR_STAGE_BUILD: stage 1: .*is missing \[ERR_MODEL_TENSOR_MISSING\]/,
    );
    expect(await refusal(buildVerifiedStage(manifest, { index: 5, tensors: [] }))).toMatch(/^ERR_STAGE_BUILD: the manifest has no stage 5/);
  });
});
