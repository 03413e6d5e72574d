// Builds a stage's ONNX graph in the compute worker from the tensors its
// volunteer fetched, with the project's own stage builder, and checks that it
// is the very file the server built (the manifest's sha256): a volunteer never
// runs a stage that differs from the one the server's oracle runs.
import { ModelError } from '../../shared/model/errors.js';
import type { StageManifest } from '../../shared/model/manifest.js';
import type { TensorInfo } from '../../shared/model/safetensors.js';
import { buildStageGraph } from '../../shared/model/stage-graph.js';
import { buildFusedStageGraph } from '../../shared/model/stage-graph-fused.js';
import { WeightReader } from '../../shared/model/weights.js';
import { ComputeError } from './ort-web.js';
import { stageMismatch } from './stage-cache.js';

/** One stage to build: its index in the manifest and the checkpoint tensors it is built from. */
export interface StageTensors {
  readonly index: number;
  readonly tensors: readonly TensorInfo[];
}

export async function buildVerifiedStage(manifest: StageManifest, stage: StageTensors): Promise<{ index: number; bytes: ArrayBuffer }> {
  const entry = manifest.stages[stage.index];
  if (entry === undefined) throw new ComputeError('ERR_STAGE_BUILD', `the manifest has no stage ${stage.index}`);
  const spec = { index: stage.index, count: manifest.stages.length, layers: entry.layers };
  let bytes: Uint8Array;
  try {
    const weights = new WeightReader(`stage ${stage.index} tensors`, new Map(stage.tensors.map((t) => [t.name, t])));
    // The manifest's precision and form, as the server built it (shared/model/build-stages.ts).
    bytes =
      manifest.graph === 'fused'
        ? buildFusedStageGraph(manifest.model, weights, spec, manifest.weights)
        : buildStageGraph(manifest.model, weights, spec, manifest.weights);
  } catch (e) {
    throw new ComputeError('ERR_STAGE_BUILD', `stage ${stage.index}: ${e instanceof ModelError ? e.message : String(e)}`);
  }
  const why = await stageMismatch(manifest, stage.index, bytes);
  if (why !== null) throw new ComputeError('ERR_STAGE_MISMATCH', `stage ${stage.index} built here is ${why}`);
  const own = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes.buffer : bytes.slice().buffer;
  return { index: stage.index, bytes: own as ArrayBuffer };
}
