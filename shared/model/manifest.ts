import type { ModelConfig } from './config.js';
import { ModelError } from './errors.js';
import type { Dim, ElemType, ValueSpec } from './onnx-graph.js';
import { isWeightPrecision, WEIGHT_PRECISIONS, type WeightPrecision } from './quantize.js';
import { parseRopeScaling } from './rope.js';
import type { LayerRange } from './stage-graph.js';
import { GRAPH_FORMS, type GraphForm } from './stage-graph-fused.js';

export const MANIFEST_FORMAT = 'webswarm-stages';
export const MANIFEST_VERSION = 1;

/** A file the manifest points to, with what it must hash to. */
export interface FileEntry {
  readonly file: string;
  readonly sizeBytes: number;
  readonly sha256: string;
}

export interface StageEntry extends FileEntry {
  readonly index: number;
  readonly layers: LayerRange;
  readonly inputs: readonly ValueSpec[];
  readonly outputs: readonly ValueSpec[];
}

/** What volunteers and runners download: the model's dimensions and one entry per stage file. */
export interface StageManifest {
  readonly format: typeof MANIFEST_FORMAT;
  readonly version: typeof MANIFEST_VERSION;
  readonly modelId: string;
  readonly model: ModelConfig;
  /**
   * How every stage stores its weights (f32, f16, q8, q4): one precision for
   * the whole stage set, so all replicas of a stage run the same file.
   */
  readonly weights: WeightPrecision;
  /**
   * The stage graphs' form: plain operators or onnxruntime's fused ones. Every
   * replica of a stage runs the same file, so the same form (its sha256 covers it).
   */
  readonly graph: GraphForm;
  readonly tokenizer: FileEntry;
  readonly tokenizerConfig: FileEntry | null;
  readonly stages: readonly StageEntry[];
}

type Obj = Record<string, unknown>;

/** Validates a parsed manifest.json; `file` names it in errors. */
export function parseManifest(file: string, raw: unknown): StageManifest {
  const bad = (detail: string): ModelError => new ModelError('ERR_MANIFEST_INVALID', file, detail);
  const obj = (v: unknown, where: string): Obj => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(`${where} must be an object`);
    return v as Obj;
  };
  const int = (v: unknown, where: string, min = 0): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min)
      throw bad(`${where} must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
    return v;
  };
  const str = (v: unknown, where: string): string => {
    if (typeof v !== 'string' || v.length === 0) throw bad(`${where} must be a non-empty string`);
    return v;
  };
  const fileEntry = (v: unknown, where: string): FileEntry => {
    const o = obj(v, where);
    const name = str(o.file, `${where}.file`);
    // A manifest names files beside it; never a path that climbs out or goes elsewhere.
    if (!/^[A-Za-z0-9._-]+$/.test(name) || name.startsWith('.')) throw bad(`${where}.file "${name}" is not a plain file name`);
    const sha = str(o.sha256, `${where}.sha256`);
    if (!/^[0-9a-f]{64}$/.test(sha)) throw bad(`${where}.sha256 is not 64 hex digits`);
    return { file: name, sizeBytes: int(o.sizeBytes, `${where}.sizeBytes`, 1), sha256: sha };
  };
  const valueSpecs = (v: unknown, where: string): ValueSpec[] => {
    if (!Array.isArray(v) || v.length === 0) throw bad(`${where} must be a non-empty array`);
    return v.map((e, i) => {
      const o = obj(e, `${where}[${i}]`);
      const dtype = o.dtype;
      if (dtype !== 'float32' && dtype !== 'int64' && dtype !== 'int32') throw bad(`${where}[${i}].dtype must be float32, int64 or int32`);
      if (
        !Array.isArray(o.shape) ||
        !o.shape.every((d) => (typeof d === 'number' && Number.isInteger(d) && d > 0) || (typeof d === 'string' && d.length > 0))
      ) {
        throw bad(`${where}[${i}].shape must list positive sizes or axis names`);
      }
      return { name: str(o.name, `${where}[${i}].name`), dtype: dtype as ElemType, shape: o.shape as Dim[] };
    });
  };

  const m = obj(raw, 'manifest');
  if (m.format !== MANIFEST_FORMAT) throw bad(`format must be "${MANIFEST_FORMAT}", got ${JSON.stringify(m.format)}`);
  if (m.version !== MANIFEST_VERSION) throw bad(`version ${JSON.stringify(m.version)} is not supported (expected ${MANIFEST_VERSION})`);
  const modelId = str(m.modelId, 'modelId');
  const mc = obj(m.model, 'model');
  const arch = mc.architecture;
  if (arch !== 'llama' && arch !== 'qwen2')
    throw new ModelError('ERR_MODEL_UNSUPPORTED', file, `architecture ${JSON.stringify(arch)} is not supported`);
  const optId = (v: unknown, where: string): number | null => (v === null ? null : int(v, where));
  const num = (v: unknown, where: string): number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw bad(`${where} must be a positive number`);
    return v;
  };
  const bool = (v: unknown, where: string): boolean => {
    if (typeof v !== 'boolean') throw bad(`${where} must be true or false`);
    return v;
  };
  const model: ModelConfig = {
    architecture: arch,
    vocabSize: int(mc.vocabSize, 'model.vocabSize', 1),
    hiddenSize: int(mc.hiddenSize, 'model.hiddenSize', 1),
    intermediateSize: int(mc.intermediateSize, 'model.intermediateSize', 1),
    numLayers: int(mc.numLayers, 'model.numLayers', 1),
    numHeads: int(mc.numHeads, 'model.numHeads', 1),
    numKvHeads: int(mc.numKvHeads, 'model.numKvHeads', 1),
    headDim: int(mc.headDim, 'model.headDim', 2),
    maxPositions: int(mc.maxPositions, 'model.maxPositions', 1),
    rmsNormEps: num(mc.rmsNormEps, 'model.rmsNormEps'),
    ropeTheta: num(mc.ropeTheta, 'model.ropeTheta'),
    ropeScaling: manifestRopeScaling(file, mc.ropeScaling),
    tieWordEmbeddings: bool(mc.tieWordEmbeddings, 'model.tieWordEmbeddings'),
    qkvBias: bool(mc.qkvBias, 'model.qkvBias'),
    oBias: bool(mc.oBias, 'model.oBias'),
    eosTokenId: optId(mc.eosTokenId, 'model.eosTokenId'),
    bosTokenId: optId(mc.bosTokenId, 'model.bosTokenId'),
  };
  // Manifests written before precisions existed are float32.
  const weights = m.weights ?? 'f32';
  if (!isWeightPrecision(weights)) throw bad(`weights must be one of ${WEIGHT_PRECISIONS.join(', ')}, got ${JSON.stringify(weights)}`);
  if (!Array.isArray(m.stages) || m.stages.length === 0) throw bad('stages must be a non-empty array');
  let nextLayer = 0;
  const stages = m.stages.map((s, i): StageEntry => {
    const where = `stages[${i}]`;
    const o = obj(s, where);
    if (o.index !== i) throw bad(`${where}.index must be ${i}`);
    const layers = obj(o.layers, `${where}.layers`);
    const start = int(layers.start, `${where}.layers.start`);
    const end = int(layers.end, `${where}.layers.end`, 1);
    if (start !== nextLayer || end <= start) throw bad(`${where}.layers [${start}, ${end}) does not continue from layer ${nextLayer}`);
    nextLayer = end;
    return {
      ...fileEntry(o, where),
      index: i,
      layers: { start, end },
      inputs: valueSpecs(o.inputs, `${where}.inputs`),
      outputs: valueSpecs(o.outputs, `${where}.outputs`),
    };
  });
  if (nextLayer !== model.numLayers) throw bad(`stages cover layers [0, ${nextLayer}) but the model has ${model.numLayers}`);
  // Manifests written before the fused form have no graph field: they are plain.
  const graph = m.graph ?? 'plain';
  if (!(GRAPH_FORMS as readonly unknown[]).includes(graph))
    throw bad(`graph must be one of ${GRAPH_FORMS.join(', ')}, got ${JSON.stringify(graph)}`);
  return {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    modelId,
    model,
    weights,
    graph: graph as GraphForm,
    tokenizer: fileEntry(m.tokenizer, 'tokenizer'),
    tokenizerConfig: m.tokenizerConfig === null || m.tokenizerConfig === undefined ? null : fileEntry(m.tokenizerConfig, 'tokenizerConfig'),
    stages,
  };
}

/** The manifest's ropeScaling: the parsed form, checked by the same rules as config.json's. */
function manifestRopeScaling(file: string, raw: unknown): ModelConfig['ropeScaling'] {
  if (raw === undefined || raw === null) return null;
  if (typeof raw !== 'object' || Array.isArray(raw))
    throw new ModelError('ERR_MANIFEST_INVALID', file, 'model.ropeScaling must be an object or null');
  const r = raw as Record<string, unknown>;
  const asConfig = {
    rope_type: r.type,
    factor: r.factor,
    low_freq_factor: r.lowFreqFactor,
    high_freq_factor: r.highFreqFactor,
    original_max_position_embeddings: r.originalMaxPositions,
  };
  return parseRopeScaling(file, asConfig, 'model.ropeScaling');
}
