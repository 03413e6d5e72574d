import type { ModelConfig } from './config.js';
import { ModelError } from './errors.js';
import type { TensorInfo, WeightDtype } from './safetensors.js';
import { BYTES_PER_ELEMENT, isWeightDtype } from './safetensors-header.js';
import { sha256Hex } from './sha256.js';
import type { StageSpec } from './stage-graph.js';
import { layerWeightNames } from './weights.js';

export const TENSOR_INDEX_FORMAT = 'webswarm-tensors';
export const TENSOR_INDEX_VERSION = 1;

/** The file of a Hugging Face model folder that says where the weights are: one file, or the index of its shards. */
export type WeightsEntryFile = 'model.safetensors' | 'model.safetensors.index.json';

/** One checkpoint tensor as the swarm vouches for it: what its raw bytes in the safetensors file must hash to. */
export interface TensorDigest {
  readonly name: string;
  readonly dtype: WeightDtype;
  readonly shape: readonly number[];
  readonly sizeBytes: number;
  readonly sha256: string;
}

/**
 * The per-tensor sha256 list of a checkpoint, computed by the server from the
 * model folder at start-up and served from the swarm's origin: a volunteer
 * fetches its tensors from the folder (any static server) and keeps only what
 * hashes to this.
 */
export interface TensorIndex {
  readonly format: typeof TENSOR_INDEX_FORMAT;
  readonly version: typeof TENSOR_INDEX_VERSION;
  readonly modelId: string;
  readonly weightsFile: WeightsEntryFile;
  /** Where the model folder is served (absolute, or relative to the index's own URL); null in the file on disk. */
  readonly weightsUrl: string | null;
  readonly tensors: readonly TensorDigest[];
}

/** Bounds on what an index may hold: far above any llama-family checkpoint, far below what would hurt a tab. */
export const TENSOR_INDEX_LIMITS = { tensors: 100_000, nameChars: 512, rank: 8 } as const;

/** Computes the index of a checkpoint's tensors (their raw bytes as stored, whatever their dtype). */
export async function buildTensorIndex(
  modelId: string,
  weightsFile: WeightsEntryFile,
  tensors: ReadonlyMap<string, TensorInfo>,
): Promise<TensorIndex> {
  const out: TensorDigest[] = [];
  for (const t of [...tensors.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    out.push({ name: t.name, dtype: t.dtype, shape: [...t.shape], sizeBytes: t.bytes.byteLength, sha256: await sha256Hex(t.bytes) });
  }
  return { format: TENSOR_INDEX_FORMAT, version: TENSOR_INDEX_VERSION, modelId, weightsFile, weightsUrl: null, tensors: out };
}

/** Validates a parsed tensors.json; `file` names it in errors. */
export function parseTensorIndex(file: string, raw: unknown): TensorIndex {
  const bad = (detail: string): ModelError => new ModelError('ERR_MANIFEST_INVALID', file, detail);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad('the tensor index must be an object');
  const m = raw as Record<string, unknown>;
  if (m.format !== TENSOR_INDEX_FORMAT) throw bad(`format must be "${TENSOR_INDEX_FORMAT}", got ${JSON.stringify(m.format)}`);
  if (m.version !== TENSOR_INDEX_VERSION) throw bad(`version ${JSON.stringify(m.version)} is not supported`);
  if (typeof m.modelId !== 'string' || m.modelId.length === 0) throw bad('modelId must be a non-empty string');
  if (m.weightsFile !== 'model.safetensors' && m.weightsFile !== 'model.safetensors.index.json') {
    throw bad(`weightsFile must be model.safetensors or model.safetensors.index.json, got ${JSON.stringify(m.weightsFile)}`);
  }
  if (m.weightsUrl !== null && (typeof m.weightsUrl !== 'string' || m.weightsUrl.length === 0 || m.weightsUrl.length > 2048)) {
    throw bad('weightsUrl must be null or a URL');
  }
  if (!Array.isArray(m.tensors) || m.tensors.length === 0 || m.tensors.length > TENSOR_INDEX_LIMITS.tensors) {
    throw bad(`tensors must list 1 to ${TENSOR_INDEX_LIMITS.tensors} tensors`);
  }
  const seen = new Set<string>();
  const tensors = m.tensors.map((e, i): TensorDigest => {
    const where = `tensors[${i}]`;
    if (typeof e !== 'object' || e === null) throw bad(`${where} must be an object`);
    const t = e as Record<string, unknown>;
    const { name, dtype, shape, sizeBytes, sha256 } = t;
    if (typeof name !== 'string' || name.length === 0 || name.length > TENSOR_INDEX_LIMITS.nameChars) throw bad(`${where}.name is invalid`);
    if (seen.has(name)) throw bad(`${where}: tensor ${name} is listed twice`);
    seen.add(name);
    if (!isWeightDtype(dtype)) throw bad(`${where}.dtype must be F32, F16 or BF16`);
    if (
      !Array.isArray(shape) ||
      shape.length > TENSOR_INDEX_LIMITS.rank ||
      !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)
    ) {
      throw bad(`${where}.shape must list at most ${TENSOR_INDEX_LIMITS.rank} sizes`);
    }
    const elements = (shape as number[]).reduce((a, b) => a * b, 1);
    if (sizeBytes !== elements * BYTES_PER_ELEMENT[dtype]) throw bad(`${where}.sizeBytes does not match ${dtype}${JSON.stringify(shape)}`);
    if (typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256)) throw bad(`${where}.sha256 is not 64 hex digits`);
    return { name, dtype, shape: shape as number[], sizeBytes, sha256 };
  });
  return {
    format: TENSOR_INDEX_FORMAT,
    version: TENSOR_INDEX_VERSION,
    modelId: m.modelId,
    weightsFile: m.weightsFile,
    weightsUrl: m.weightsUrl as string | null,
    tensors,
  };
}

/**
 * The checkpoint tensors one stage's graph is built from (buildStageGraph reads
 * exactly these): the embedding for the first stage, its layers' weights, and
 * the final norm and LM head (the embedding when tied) for the last.
 */
export function stageTensorNames(cfg: ModelConfig, stage: StageSpec): string[] {
  const names: string[] = [];
  if (stage.index === 0) names.push('model.embed_tokens.weight');
  for (let l = stage.layers.start; l < stage.layers.end; l++) {
    const n = layerWeightNames(l);
    names.push(n.inputNorm, n.postNorm, n.q, n.k, n.v, n.o);
    if (cfg.qkvBias) names.push(n.qBias, n.kBias, n.vBias);
    if (cfg.oBias) names.push(n.oBias);
    names.push(n.gate, n.up, n.down);
  }
  if (stage.index === stage.count - 1) {
    names.push('model.norm.weight');
    names.push(cfg.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight');
  }
  return [...new Set(names)];
}

/**
 * What a volunteer of each stage downloads the first time: the bytes of that stage's checkpoint tensors as `index`
 * stores them (a tensor the index does not hold counts nothing here; the volunteer's fetch refuses it by name).
 */
export function stageDownloadBytes(
  cfg: ModelConfig,
  stages: readonly { readonly layers: StageSpec['layers'] }[],
  index: TensorIndex,
): number[] {
  const size = new Map(index.tensors.map((t) => [t.name, t.sizeBytes]));
  return stages.map((s, i) =>
    stageTensorNames(cfg, { index: i, count: stages.length, layers: s.layers }).reduce((a, n) => a + (size.get(n) ?? 0), 0),
  );
}
