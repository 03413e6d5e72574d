/** What the GPU benches share: the weights they build stages of, the stage they probe, the hidden states they feed. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseManifest, type StageEntry, type StageManifest } from '../../shared/model/manifest.js';
import { WEIGHT_PRECISIONS, type WeightPrecision } from '../../shared/model/quantize.js';
import { STAGE_IO } from '../../shared/model/stage-graph.js';
import { FUSED_IO } from '../../shared/model/stage-graph-fused.js';
import { STAGE_CACHE } from '../../signal-server/defaults.js';
import { ensureStages } from '../../signal-server/models/model-folder.js';
import { ensureRandomCheckpoint, SMOLLM_135M_SHAPE } from '../../testing/random-checkpoint.js';
import { envChoices } from '../env.js';

/** BENCH_GPU_WEIGHTS: the stages' weight precision (f32 where unset). */
export function benchWeights(): WeightPrecision {
  const [w, ...more] = envChoices<WeightPrecision>('BENCH_GPU_WEIGHTS', WEIGHT_PRECISIONS, ['f32']);
  if (w === undefined || more.length > 0)
    throw new RangeError('BENCH_GPU_WEIGHTS: one precision a run (device.sh: DEVICE_WEIGHTS for several)');
  return w;
}

/** A seeded stream of uniform numbers in [-1, 1): the probes' hidden states, the same in every session and run. */
export function seededUniform(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return (s / 2 ** 31) * 2 - 1;
  };
}

/** The stage a probe runs: its folder's manifest, its entry and index, its file's bytes as built. */
export interface ProbedStage {
  readonly dir: string;
  readonly manifest: StageManifest;
  readonly index: number;
  readonly entry: StageEntry;
  readonly file: Uint8Array;
}

/**
 * A middle stage of a fused stage folder: the command line's (folder, then index; default 1), or stage 1 of
 * BENCH_GPU_MODEL (default: the seeded SmolLM-135M-shaped checkpoint of bench:gpu) cut into 3 fused stages of
 * BENCH_GPU_WEIGHTS.
 */
export async function middleStage(): Promise<ProbedStage> {
  let dir = process.argv[2];
  if (dir === undefined) {
    const model = process.env.BENCH_GPU_MODEL ?? ensureRandomCheckpoint('.cache/bench-models/smollm-135m-random', SMOLLM_135M_SHAPE, 135);
    dir = (await ensureStages(model, { stages: 3 }, STAGE_CACHE, { graph: 'fused', weights: benchWeights() })).dir;
  }
  const index = Number(process.argv[3] ?? 1);
  const manifest = parseManifest(join(dir, 'manifest.json'), JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')));
  const entry = manifest.stages[index];
  if (entry === undefined || index === 0 || index === manifest.stages.length - 1 || manifest.graph !== 'fused')
    throw new RangeError(`${dir} stage ${index}: a middle stage of a fused stage folder is needed`);
  return { dir, manifest, index, entry, file: new Uint8Array(readFileSync(join(dir, entry.file))) };
}

/** A runtime's tensor constructor (onnxruntime-node's or onnxruntime-web's). */
export type TensorOf<T> = new (type: 'float32' | 'int32', data: Float32Array | Int32Array, dims: readonly number[]) => T;

/** A fused middle stage's feeds for one position: hidden state `x`, the position (seqlens_k, total length), the past. */
export function positionFeeds<T>(Tensor: TensorOf<T>, x: Float32Array, position: number, past: Record<string, T>): Record<string, T> {
  return {
    [STAGE_IO.hiddenIn]: new Tensor('float32', x, [1, 1, x.length]),
    [FUSED_IO.seqlensK]: new Tensor('int32', Int32Array.of(position), [1]),
    [FUSED_IO.totalSequenceLength]: new Tensor('int32', Int32Array.of(position + 1), []),
    ...past,
  };
}
