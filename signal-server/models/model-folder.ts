import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { buildStages } from '../../shared/model/build-stages.js';
import { CHALLENGE_POSITIONS } from '../coordinator/challenge.js';
import { type ModelConfig, parseModelConfig } from '../../shared/model/config.js';
import { ModelError } from '../../shared/model/errors.js';
import { parseManifest, type StageManifest } from '../../shared/model/manifest.js';
import { type Partition, resolvePartition } from '../../shared/model/partition.js';
import type { WeightPrecision } from '../../shared/model/quantize.js';
import { parseSafetensors, type TensorInfo } from '../../shared/model/safetensors.js';
import { sha256Hex } from '../../shared/model/sha256.js';
import { errnoOf, JSON_LIMIT, readWholeFile, WEIGHTS_LIMIT } from './read-whole-file.js';
import { type HeadPositions, headPositionsOf } from '../../shared/model/stage-graph.js';
import type { GraphForm } from '../../shared/model/stage-graph-fused.js';
import { buildTensorIndex, parseTensorIndex, type TensorIndex, type WeightsEntryFile } from '../../shared/model/tensor-index.js';

/** A Hugging Face model folder, read and checked. */
export interface ModelFolder {
  readonly dir: string;
  readonly modelId: string;
  readonly config: ModelConfig;
  readonly weightsFile: string;
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly tokenizerJson: Uint8Array;
  readonly tokenizerConfigJson: Uint8Array | null;
  /** sha256 over config, weights and tokenizer: what a stage cache was built from. */
  readonly sourceHash: string;
}

function readRequired(dir: string, name: string): Uint8Array {
  const path = join(dir, name);
  if (!existsSync(path)) throw new ModelError('ERR_MODEL_FILE_MISSING', path, `${name} is missing from the model folder`);
  return readWholeFile(path, undefined, name.endsWith('.json') ? JSON_LIMIT : WEIGHTS_LIMIT);
}

function parseJsonFile(path: string, bytes: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new ModelError('ERR_MODEL_BAD_JSON', path, `is not valid JSON (${(e as Error).message})`);
  }
}

const SHARD_INDEX = 'model.safetensors.index.json';
const HASH_PIECE_BYTES = 1 << 30;

/** The tensor index (per-tensor sha256) written beside a stage set's manifest. */
export const TENSOR_INDEX_FILE = 'tensors.json';

/** The tensor index of a stage directory, read and validated. */
export function readTensorIndex(stageDir: string): TensorIndex {
  const path = join(stageDir, TENSOR_INDEX_FILE);
  return parseTensorIndex(path, parseJsonFile(path, readRequired(stageDir, TENSOR_INDEX_FILE)));
}

/** A stage directory's source.json, read as any JSON file of it is (a pipe or a folder in its place refused, never waited on). */
function readSource(stageDir: string): { sourceHash?: unknown; modelDir?: unknown } {
  const source = parseJsonFile(join(stageDir, 'source.json'), readRequired(stageDir, 'source.json'));
  if (typeof source !== 'object' || source === null) throw new ModelError('ERR_MODEL_BAD_JSON', join(stageDir, 'source.json'), 'is not an object');
  return source;
}

/** The model folder a stage directory was built from (its source.json), or null when it does not say or is gone. */
export function sourceFolderOf(stageDir: string): string | null {
  try {
    const source = readSource(stageDir);
    return typeof source.modelDir === 'string' && existsSync(source.modelDir) ? source.modelDir : null;
  } catch {
    return null;
  }
}

/** model.safetensors.index.json's weight_map, whatever the file holds (JSON null or a list included: undefined then). */
function weightMapOf(path: string, bytes: Uint8Array): unknown {
  const index = parseJsonFile(path, bytes);
  return typeof index === 'object' && index !== null ? (index as { weight_map?: unknown }).weight_map : undefined;
}

/** Files of a Hugging Face model folder that volunteers may read: config, tokenizer, and the weights (one file, or the index and its shards). */
export function modelFolderFiles(dirIn: string): string[] {
  const dir = resolve(dirIn);
  const files = ['config.json', 'tokenizer.json', 'tokenizer_config.json'].filter((f) => existsSync(join(dir, f)));
  if (existsSync(join(dir, 'model.safetensors')) || !existsSync(join(dir, SHARD_INDEX))) return [...files, 'model.safetensors'];
  const map = weightMapOf(join(dir, SHARD_INDEX), readRequired(dir, SHARD_INDEX));
  const shards = typeof map === 'object' && map !== null ? Object.values(map as Record<string, unknown>) : [];
  const names = new Set(shards.filter((f): f is string => typeof f === 'string' && /^[A-Za-z0-9._-]+\.safetensors$/.test(f)));
  return [...files, SHARD_INDEX, ...names];
}

/** model.safetensors, or the shards that model.safetensors.index.json lists. */
function readWeights(dir: string): { weightsFile: string; tensors: Map<string, TensorInfo>; weightBytes: Uint8Array[] } {
  const single = join(dir, 'model.safetensors');
  const indexPath = join(dir, SHARD_INDEX);
  if (existsSync(single) || !existsSync(indexPath)) {
    const bytes = readRequired(dir, 'model.safetensors');
    return { weightsFile: single, tensors: parseSafetensors(single, bytes), weightBytes: [bytes] };
  }
  const map = weightMapOf(indexPath, readRequired(dir, SHARD_INDEX));
  if (typeof map !== 'object' || map === null) throw new ModelError('ERR_MODEL_BAD_JSON', indexPath, 'has no weight_map object');
  const shards = [...new Set(Object.values(map as Record<string, unknown>))];
  const tensors = new Map<string, TensorInfo>();
  const weightBytes: Uint8Array[] = [];
  for (const shard of shards) {
    if (typeof shard !== 'string' || !/^[A-Za-z0-9._-]+\.safetensors$/.test(shard)) {
      throw new ModelError('ERR_MODEL_BAD_JSON', indexPath, `weight_map names ${JSON.stringify(shard)}, not a safetensors file beside it`);
    }
    const bytes = readRequired(dir, shard);
    weightBytes.push(bytes);
    for (const [name, t] of parseSafetensors(join(dir, shard), bytes)) tensors.set(name, t);
  }
  return { weightsFile: indexPath, tensors, weightBytes };
}

/** A model folder's config.json, read and checked alone (not its weights): its bytes and what they say. */
export function readModelConfig(dirIn: string): { readonly config: ModelConfig; readonly bytes: Uint8Array } {
  const dir = resolve(dirIn);
  if (!existsSync(dir)) throw new ModelError('ERR_MODEL_FILE_MISSING', dir, 'model folder does not exist');
  const bytes = readRequired(dir, 'config.json');
  return { config: parseModelConfig(join(dir, 'config.json'), parseJsonFile(join(dir, 'config.json'), bytes)), bytes };
}

/** Reads config.json, model.safetensors and tokenizer.json (+ tokenizer_config.json if present). */
export function readModelFolder(dirIn: string): ModelFolder {
  const dir = resolve(dirIn);
  const { config, bytes: configBytes } = readModelConfig(dir);
  const { weightsFile, tensors, weightBytes } = readWeights(dir);
  const tokenizerJson = readRequired(dir, 'tokenizer.json');
  parseJsonFile(join(dir, 'tokenizer.json'), tokenizerJson);
  const tcPath = join(dir, 'tokenizer_config.json');
  const tokenizerConfigJson = existsSync(tcPath) ? readWholeFile(tcPath, undefined, JSON_LIMIT) : null;
  if (tokenizerConfigJson !== null) parseJsonFile(tcPath, tokenizerConfigJson);
  const h = createHash('sha256');
  // In pieces: a hash takes at most 2 GiB per update, and checkpoints are bigger.
  for (const b of [configBytes, ...weightBytes, tokenizerJson, tokenizerConfigJson ?? new Uint8Array()]) {
    for (let at = 0; at < b.byteLength; at += HASH_PIECE_BYTES) h.update(b.subarray(at, at + HASH_PIECE_BYTES));
  }
  return {
    dir,
    modelId: basename(dir),
    config,
    weightsFile,
    tensors,
    tokenizerJson,
    tokenizerConfigJson,
    sourceHash: h.digest('hex'),
  };
}

/** Key of a partition (and a weight precision other than f32) in file names: "r0-2_2-4_4-6", "r0-3_3-6-q4". */
export function partitionKey(numLayers: number, p: Partition, weights: WeightPrecision = 'f32'): string {
  const ranges = resolvePartition(numLayers, p);
  return `r${ranges.map((r) => `${r.start}-${r.end}`).join('_')}${weights === 'f32' ? '' : `-${weights}`}`;
}

/** How stages are built: the weights' precision (default f32) and the graphs' form (default plain). */
export interface BuildChoice {
  readonly weights?: WeightPrecision;
  readonly graph?: GraphForm;
  /** The LM head on the last position (default, the product's) or on every position (benches and tests only). */
  readonly head?: HeadPositions;
  /**
   * The positions a session may hold (prompt and completion), where fewer than the model's max_position_embeddings:
   * the manifest's maxPositions, and so the fused form's rotary tables, the KV buffers sized to a full context and
   * the API's limit. Undefined (or the model's own or more): the model's.
   */
  readonly context?: number;
}

/**
 * The fewest positions a served context may have: a challenge step, which every volunteer must answer to be ready,
 * spans CHALLENGE_POSITIONS (onnxruntime's GroupQueryAttention refuses positions past its rotary tables: with fewer,
 * no volunteer of a fused stage could ever be ready).
 */
export const MIN_CONTEXT = CHALLENGE_POSITIONS;

/** `choice` as it is built for a model of `config` (read from `configPath`): a context the model's own or more is left out. */
export function builtChoice(config: ModelConfig, choice: BuildChoice, configPath: string): BuildChoice {
  const { context, ...rest } = choice;
  if (context === undefined || context >= config.maxPositions) return rest;
  if (!Number.isInteger(context) || context < MIN_CONTEXT)
    throw new ModelError(
      'ERR_MODEL_BAD_CONFIG',
      configPath,
      `a served context of ${context} positions: it must be an integer of at least ${MIN_CONTEXT} (a challenge step's)`,
    );
  return { ...rest, context };
}

/** The model config a stage set of `choice` (builtChoice) is built with: max_position_embeddings cut to its context. */
function servedConfig(config: ModelConfig, choice: BuildChoice): ModelConfig {
  return choice.context === undefined ? config : { ...config, maxPositions: choice.context };
}

/**
 * A stage set's directory name: the partition's key, then the precision (not f32), the form (not plain), "-ctx<N>"
 * for a context below the model's (`choice` as builtChoice makes it) and "-allpos" for a head on every position.
 */
export function stageDirName(numLayers: number, p: Partition, choice: BuildChoice = {}): string {
  const key = partitionKey(numLayers, p, choice.weights ?? 'f32');
  const form = (choice.graph ?? 'plain') === 'plain' ? key : `${key}-${choice.graph}`;
  const context = choice.context === undefined ? form : `${form}-ctx${choice.context}`;
  return (choice.head ?? 'last') === 'last' ? context : `${context}-allpos`;
}

/**
 * Builds the stages of a model folder into `outDir` (manifest.json + files), replacing what was there, unless
 * `finished` finds there, once the files are written, a complete build of the same stages that another process
 * finished meanwhile: that one is kept. The processes of a cluster that share a stage cache build each new cut at
 * once; before, the last to finish removed the folder another served and put its own in its place.
 */
export async function buildStagesToDir(
  model: ModelFolder,
  partition: Partition,
  outDir: string,
  choice: BuildChoice = {},
  finished: () => Promise<StageManifest | null> = async () => null,
): Promise<StageManifest> {
  const weights = choice.weights ?? 'f32';
  const graph = choice.graph ?? 'plain';
  const { manifest, files } = await buildStages({
    graph,
    head: choice.head ?? 'last',
    modelId: model.modelId,
    config: servedConfig(model.config, builtChoice(model.config, choice, join(model.dir, 'config.json'))),
    weightsFile: model.weightsFile,
    tensors: model.tensors,
    tokenizerJson: model.tokenizerJson,
    tokenizerConfigJson: model.tokenizerConfigJson,
    partition,
    weights,
  });
  // Of this build alone: builds of one cut by two processes, or two threads of one, never share it.
  const tmp = `${outDir}.tmp-${process.pid}-${randomUUID().slice(0, 8)}`;
  makeFolders(tmp);
  for (const [name, bytes] of files) writeFileSync(join(tmp, name), bytes);
  writeFileSync(join(tmp, 'manifest.json'), `${JSON.stringify(manifest, null, 1)}\n`);
  // Each checkpoint tensor's sha256: what volunteers that fetch their layers from the model folder check against.
  const tensorIndex = await buildTensorIndex(model.modelId, basename(model.weightsFile) as WeightsEntryFile, model.tensors);
  writeFileSync(join(tmp, TENSOR_INDEX_FILE), `${JSON.stringify(tensorIndex)}\n`);
  // What the stages were built from: the hash decides whether to rebuild; the folder is what the server serves to volunteers.
  writeFileSync(join(tmp, 'source.json'), `${JSON.stringify({ sourceHash: model.sourceHash, modelDir: model.dir })}\n`);
  const theirs = async (): Promise<StageManifest | null> => {
    const done = await finished().catch(() => null);
    if (done !== null) rmSync(tmp, { recursive: true, force: true });
    return done;
  };
  const before = await theirs();
  if (before !== null) return before;
  rmSync(outDir, { recursive: true, force: true });
  try {
    renameSync(tmp, outDir);
  } catch (e) {
    // Another process's build landed between the two: kept if complete.
    const after = await theirs();
    if (after !== null) return after;
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return manifest;
}

/**
 * Creates `path` and the folders above it that are missing, one at a time. Not Node's `mkdirSync(…, { recursive:
 * true })`: under a file system that refuses new folders with ENOENT (/proc) it never returned (STAGE_CACHE=/proc/x
 * hung the server's start). Each failure names the folder it could not make.
 */
export function makeFolders(path: string): void {
  const missing: string[] = [];
  for (let p = resolve(path); ; p = dirname(p)) {
    const st = statSync(p, { throwIfNoEntry: false });
    if (st !== undefined) {
      if (!st.isDirectory()) throw new ModelError('ERR_STAGE_DIR', p, 'is not a folder');
      break;
    }
    missing.push(p);
    if (dirname(p) === p) break;
  }
  for (const p of missing.reverse()) {
    try {
      mkdirSync(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST' && statSync(p, { throwIfNoEntry: false })?.isDirectory() === true) continue;
      throw new ModelError('ERR_STAGE_DIR', p, `cannot be created (${errnoOf(e)})`);
    }
  }
}

/**
 * The stages of a model for a partition, weight precision and graph form,
 * built once into `<cacheRoot>/<modelId>/<partition>[-<precision>][-fused]/`
 * and rebuilt when the model files change.
 */
export async function ensureStages(
  modelDir: string,
  partition: Partition,
  cacheRoot: string,
  asked: BuildChoice = {},
): Promise<{ dir: string; manifest: StageManifest; built: boolean }> {
  const model = readModelFolder(modelDir);
  const choice = builtChoice(model.config, asked, join(model.dir, 'config.json'));
  const weights = choice.weights ?? 'f32';
  const graph = choice.graph ?? 'plain';
  const head = choice.head ?? 'last';
  const positions = servedConfig(model.config, choice).maxPositions;
  const dir = join(resolve(cacheRoot), model.modelId, stageDirName(model.config.numLayers, partition, choice));
  const sourcePath = join(dir, 'source.json');
  /** The stages in `dir`, where they are a complete build of these ones from this model folder. */
  const cached = async (): Promise<StageManifest | null> => {
    if (!existsSync(sourcePath) || !existsSync(join(dir, 'manifest.json')) || !existsSync(join(dir, TENSOR_INDEX_FILE))) return null;
    const source = readSource(dir);
    if (source.sourceHash !== model.sourceHash || sourceFolderOf(dir) !== model.dir) return null;
    const { manifest } = await loadStageSet(dir);
    // A cache written by a builder of another version, or by hand, is rebuilt rather than served as the wrong precision or
    // form; so is one whose head is another (every position always, or a builder's before logits_from).
    const last = manifest.stages[manifest.stages.length - 1];
    const cachedHead = last === undefined ? 'all' : headPositionsOf(last.inputs);
    return manifest.weights === weights && manifest.graph === graph && cachedHead === head && manifest.model.maxPositions === positions
      ? manifest
      : null;
  };
  // A cache that cannot be read whole (a torn source.json, a file that no longer matches its sha256: a ModelError) is
  // built again; any other failure (the system's: out of file handles, say) is the caller's, not a reason to replace a
  // folder other servers sharing the cache may serve.
  const found = await cached().catch((e: unknown) => {
    if (e instanceof ModelError) return null;
    throw e;
  });
  if (found !== null) return { dir, manifest: found, built: false };
  return { dir, manifest: await buildStagesToDir(model, partition, dir, choice, cached), built: true };
}

/** A stage directory, read and verified: every file present, of the right size and sha256. */
export interface StageSet {
  readonly dir: string;
  readonly manifest: StageManifest;
  readonly stageBytes: readonly Uint8Array[];
  readonly tokenizerJson: string;
  readonly tokenizerConfigJson: string | null;
}

async function readVerified(dir: string, entry: { file: string; sizeBytes: number; sha256: string }): Promise<Uint8Array> {
  const path = join(dir, entry.file);
  if (!existsSync(path)) throw new ModelError('ERR_MODEL_FILE_MISSING', path, 'named in manifest.json but missing');
  const bytes = readWholeFile(path);
  if (bytes.byteLength !== entry.sizeBytes) {
    throw new ModelError('ERR_MANIFEST_SIZE', path, `is ${bytes.byteLength} bytes, manifest.json says ${entry.sizeBytes}`);
  }
  const sha = await sha256Hex(bytes);
  if (sha !== entry.sha256) throw new ModelError('ERR_MANIFEST_SHA256', path, `sha256 is ${sha}, manifest.json says ${entry.sha256}`);
  return bytes;
}

export async function loadStageSet(dirIn: string): Promise<StageSet> {
  const dir = resolve(dirIn);
  const manifestPath = join(dir, 'manifest.json');
  const manifest = parseManifest(manifestPath, parseJsonFile(manifestPath, readRequired(dir, 'manifest.json')));
  const stageBytes: Uint8Array[] = [];
  for (const s of manifest.stages) stageBytes.push(await readVerified(dir, s));
  const dec = new TextDecoder();
  const tokenizerJson = dec.decode(await readVerified(dir, manifest.tokenizer));
  const tokenizerConfigJson = manifest.tokenizerConfig === null ? null : dec.decode(await readVerified(dir, manifest.tokenizerConfig));
  return { dir, manifest, stageBytes, tokenizerJson, tokenizerConfigJson };
}
