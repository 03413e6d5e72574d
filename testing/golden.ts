// Test helper: the golden data written by tools/train/train_default_model.py
// (PyTorch's logits and greedy tokens), read for the tests of any runtime.
// A golden model that is missing is an error that says how to make it, never
// a reason to run fewer tests.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface GoldenPrompt {
  readonly text: string;
  readonly ids: number[];
  readonly logits: Float32Array;
  readonly shape: [number, number];
  readonly greedy: number[];
}

export interface Golden {
  readonly model: string;
  readonly prompts: GoldenPrompt[];
}

export const GOLDEN_DIR = 'fixtures/golden';

/** The command that writes every golden model and its golden data. */
export const MAKE_GOLDEN = 'npm run train-default-model';

/** Where each golden model's folder is. */
export const GOLDEN_MODELS: Readonly<Record<string, string>> = {
  'austen-2m': 'models/austen-2m',
  'tiny-gqa-bias': 'fixtures/models/tiny-gqa-bias',
  'tiny-untied': 'fixtures/models/tiny-untied',
};

/** Every golden model: a test over golden models runs each of these, present or not. */
export const GOLDEN_MODEL_IDS: readonly string[] = Object.keys(GOLDEN_MODELS);

/** The files of a model folder its tests read. */
const MODEL_FILES = ['config.json', 'model.safetensors', 'tokenizer.json'];

function missingError(modelId: string, missing: readonly string[]): Error {
  return new Error(`golden model ${modelId}: missing ${missing.join(', ')}; make it with \`${MAKE_GOLDEN}\``);
}

/**
 * The folder of a golden model, relative to `root` (the repository root by
 * default). Throws, naming each missing file and how to make it, when the
 * folder or its golden data is incomplete.
 */
export function goldenModelDir(modelId: string, root = '.'): string {
  const rel = GOLDEN_MODELS[modelId];
  if (rel === undefined) throw new Error(`no golden model ${modelId} (known: ${GOLDEN_MODEL_IDS.join(', ')})`);
  const dir = join(root, rel);
  const needed = [...MODEL_FILES.map((f) => join(dir, f)), join(root, GOLDEN_DIR, `${modelId}.json`)];
  const missing = needed.filter((f) => !existsSync(f));
  if (missing.length > 0) throw missingError(modelId, missing);
  return dir;
}

interface GoldenFile {
  model: string;
  logitsFile: string;
  prompts: { text: string; ids: number[]; logits: { offsetBytes: number; shape: [number, number] }; greedy: number[] }[];
}

export function readGolden(modelId: string, root = '.'): Golden {
  const jsonPath = join(root, GOLDEN_DIR, `${modelId}.json`);
  if (!existsSync(jsonPath)) throw missingError(modelId, [jsonPath]);
  const doc = JSON.parse(readFileSync(jsonPath, 'utf8')) as GoldenFile;
  const binPath = join(root, GOLDEN_DIR, doc.logitsFile);
  if (!existsSync(binPath)) throw missingError(modelId, [binPath]);
  const bin = readFileSync(binPath);
  if (doc.prompts.length === 0) throw new Error(`${jsonPath} holds no prompts; make it again with \`${MAKE_GOLDEN}\``);
  return {
    model: doc.model,
    prompts: doc.prompts.map((p) => {
      const n = p.logits.shape[0] * p.logits.shape[1];
      const start = bin.byteOffset + p.logits.offsetBytes;
      return { ...p, logits: new Float32Array(bin.buffer.slice(start, start + n * 4)), shape: p.logits.shape };
    }),
  };
}

/**
 * The last position's row of a golden prompt's logits [S, vocab]: what the
 * stages' logits are (the head runs on the last position only); the whole
 * [S, vocab] is what a stage set built with the head on every position gives.
 */
export function lastRow(p: GoldenPrompt): Float32Array {
  const [rows, vocab] = p.shape;
  return p.logits.subarray((rows - 1) * vocab, rows * vocab);
}
