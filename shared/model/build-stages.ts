import type { ModelConfig } from './config.js';
import { type FileEntry, MANIFEST_FORMAT, MANIFEST_VERSION, type StageEntry, type StageManifest } from './manifest.js';
import { type Partition, resolvePartition } from './partition.js';
import type { WeightPrecision } from './quantize.js';
import type { TensorInfo } from './safetensors.js';
import { sha256Hex } from './sha256.js';
import { buildStageGraph, type HeadPositions, stageInputs, stageOutputs } from './stage-graph.js';
import { buildFusedStageGraph, fusedStageInputs, fusedStageOutputs, type GraphForm } from './stage-graph-fused.js';
import { checkAllWeights, WeightReader } from './weights.js';

export interface BuildInput {
  readonly modelId: string;
  readonly config: ModelConfig;
  /** The checkpoint's tensors and the file they came from (for errors). */
  readonly weightsFile: string;
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly tokenizerJson: Uint8Array;
  readonly tokenizerConfigJson: Uint8Array | null;
  readonly partition: Partition;
  /** How the stages store their weights; float32 when absent. */
  readonly weights?: WeightPrecision;
  /** The graphs' form (default plain, the reference). */
  readonly graph?: GraphForm;
  /** The LM head on each row's last position (default, what the product builds) or on every position (benches, tests). */
  readonly head?: HeadPositions;
}

export interface BuildOutput {
  readonly manifest: StageManifest;
  /** File name → bytes, for every file the manifest names. */
  readonly files: ReadonlyMap<string, Uint8Array>;
}

async function entry(file: string, bytes: Uint8Array): Promise<FileEntry> {
  return { file, sizeBytes: bytes.byteLength, sha256: await sha256Hex(bytes) };
}

/**
 * Cuts a checkpoint into stage graphs and describes them in a manifest.
 * Pure: bytes in, bytes out; the caller reads and writes files.
 */
export async function buildStages(input: BuildInput): Promise<BuildOutput> {
  const { config } = input;
  const weights = new WeightReader(input.weightsFile, input.tensors);
  checkAllWeights(config, weights);
  const ranges = resolvePartition(config.numLayers, input.partition);
  const precision = input.weights ?? 'f32';
  const graph = input.graph ?? 'plain';
  const fused = graph === 'fused';
  const options = { head: input.head ?? 'last' } as const;
  const files = new Map<string, Uint8Array>();
  const stages: StageEntry[] = [];
  for (const [index, layers] of ranges.entries()) {
    const spec = { index, count: ranges.length, layers };
    const bytes = fused
      ? buildFusedStageGraph(config, weights, spec, precision, options)
      : buildStageGraph(config, weights, spec, precision, options);
    const file = `stage-${index}.onnx`;
    files.set(file, bytes);
    const inputs = fused ? fusedStageInputs(config, spec, options.head) : stageInputs(config, spec, options.head);
    const outputs = fused ? fusedStageOutputs(config, spec, options.head) : stageOutputs(config, spec, options.head);
    stages.push({ ...(await entry(file, bytes)), index, layers, inputs, outputs });
  }
  files.set('tokenizer.json', input.tokenizerJson);
  let tokenizerConfig: FileEntry | null = null;
  if (input.tokenizerConfigJson !== null) {
    files.set('tokenizer_config.json', input.tokenizerConfigJson);
    tokenizerConfig = await entry('tokenizer_config.json', input.tokenizerConfigJson);
  }
  const manifest: StageManifest = {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    modelId: input.modelId,
    model: config,
    weights: precision,
    graph,
    tokenizer: await entry('tokenizer.json', input.tokenizerJson),
    tokenizerConfig,
    stages,
  };
  return { manifest, files };
}
