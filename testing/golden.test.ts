import { cpSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GOLDEN_DIR, GOLDEN_MODEL_IDS, GOLDEN_MODELS, goldenModelDir, MAKE_GOLDEN, readGolden } from './golden.js';

describe('golden models', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'webswarm-golden-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  /** Copies one golden model's folder (or only its golden data) from the repository into `root`. */
  function copy(modelId: string, parts: { folder: boolean; golden: boolean }): void {
    const rel = GOLDEN_MODELS[modelId] as string;
    if (parts.folder) cpSync(rel, join(root, rel), { recursive: true });
    mkdirSync(join(root, GOLDEN_DIR), { recursive: true });
    if (parts.golden) {
      cpSync(join(GOLDEN_DIR, `${modelId}.json`), join(root, GOLDEN_DIR, `${modelId}.json`));
      cpSync(join(GOLDEN_DIR, `${modelId}.logits.bin`), join(root, GOLDEN_DIR, `${modelId}.logits.bin`));
    }
  }

  it('every golden model of the repository is present, with prompts', () => {
    expect(GOLDEN_MODEL_IDS).toEqual(['austen-2m', 'tiny-gqa-bias', 'tiny-untied']);
    for (const id of GOLDEN_MODEL_IDS) {
      expect(goldenModelDir(id)).toBe(GOLDEN_MODELS[id]);
      expect(readGolden(id).prompts.length, id).toBeGreaterThan(0);
    }
  });

  it('a missing model folder throws, naming the files and the command that makes them', () => {
    copy('tiny-untied', { folder: false, golden: true });
    const dir = join(root, 'fixtures/models/tiny-untied');
    expect(() => goldenModelDir('tiny-untied', root)).toThrow(
      `golden model tiny-untied: missing ${join(dir, 'config.json')}, ${join(dir, 'model.safetensors')}, ${join(dir, 'tokenizer.json')}; make it with \`${MAKE_GOLDEN}\``,
    );
  });

  it('missing golden data throws, naming the file and the command', () => {
    copy('tiny-untied', { folder: true, golden: false });
    expect(() => goldenModelDir('tiny-untied', root)).toThrow(`missing ${join(root, GOLDEN_DIR, 'tiny-untied.json')}; make it with`);
    expect(() => readGolden('tiny-untied', root)).toThrow(`missing ${join(root, GOLDEN_DIR, 'tiny-untied.json')}; make it with`);
  });

  it('missing logits throw, naming the file and the command', () => {
    copy('tiny-untied', { folder: true, golden: true });
    expect(goldenModelDir('tiny-untied', root)).toBe(join(root, 'fixtures/models/tiny-untied'));
    rmSync(join(root, GOLDEN_DIR, 'tiny-untied.logits.bin'));
    expect(() => readGolden('tiny-untied', root)).toThrow(
      `golden model tiny-untied: missing ${join(root, GOLDEN_DIR, 'tiny-untied.logits.bin')}; make it with \`npm run train-default-model\``,
    );
  });

  it('an unknown model id throws, listing the known ones', () => {
    expect(() => goldenModelDir('gpt-4')).toThrow('no golden model gpt-4 (known: austen-2m, tiny-gqa-bias, tiny-untied)');
  });
});
