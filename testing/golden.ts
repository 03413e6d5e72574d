// Test helper: the golden data written by tools/train/train_default_model.py
// (PyTorch's logits and greedy tokens), read for the tests of any runtime.
import { readFileSync } from 'node:fs';
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

/** Where each golden model's folder is. */
export const GOLDEN_MODELS: Record<string, string> = {
  'austen-2m': 'models/austen-2m',
  'tiny-gqa-bias': 'fixtures/models/tiny-gqa-bias',
  'tiny-untied': 'fixtures/models/tiny-untied',
};

interface GoldenFile {
  model: string;
  logitsFile: string;
  prompts: { text: string; ids: number[]; logits: { offsetBytes: number; shape: [number, number] }; greedy: number[] }[];
}

export function readGolden(modelId: string): Golden {
  const doc = JSON.parse(readFileSync(join(GOLDEN_DIR, `${modelId}.json`), 'utf8')) as GoldenFile;
  const bin = readFileSync(join(GOLDEN_DIR, doc.logitsFile));
  return {
    model: doc.model,
    prompts: doc.prompts.map((p) => {
      const n = p.logits.shape[0] * p.logits.shape[1];
      const start = bin.byteOffset + p.logits.offsetBytes;
      return { ...p, logits: new Float32Array(bin.buffer.slice(start, start + n * 4)), shape: p.logits.shape };
    }),
  };
}

/** Largest absolute difference of two equally long arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}
