import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ModelError, type ModelErrorCode } from '../../shared/model/errors.js';
import { parseSafetensors } from '../../shared/model/safetensors.js';
import { type RawTensor, writeSafetensors } from '../../testing/safetensors-writer.js';
import { buildStagesToDir, ensureStages, loadStageSet, readModelFolder } from './model-folder.js';
import { JSON_LIMIT } from './read-whole-file.js';
import { GREEDY } from '../../shared/model/sampling.js';
import { ReferenceRunner } from '../reference/reference-runner.js';

const SOURCE = 'fixtures/models/tiny-untied';
let work: string;
let model: string;

beforeEach(() => {
  work = mkdtempSync(join(tmpdir(), 'webswarm-folder-'));
  model = join(work, 'tiny');
  cpSync(SOURCE, model, { recursive: true });
});
afterEach(() => rmSync(work, { recursive: true, force: true }));

/** Runs `f` and returns the ModelError it throws, failing if it throws nothing or something else. */
async function refusal(f: () => unknown): Promise<ModelError> {
  try {
    await f();
  } catch (e) {
    if (e instanceof ModelError) return e;
    throw e;
  }
  throw new Error('expected a ModelError, but nothing was thrown');
}

async function expectRefused(f: () => unknown, code: ModelErrorCode, file: string, detail: RegExp): Promise<void> {
  const e = await refusal(f);
  expect(e.code).toBe(code);
  expect(e.file.endsWith(file), `${e.file} should name ${file}`).toBe(true);
  expect(e.message).toMatch(detail);
}

function editConfig(edit: (c: Record<string, unknown>) => void): void {
  const path = join(model, 'config.json');
  const c = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  edit(c);
  writeFileSync(path, JSON.stringify(c));
}

function editTensors(edit: (t: Map<string, RawTensor>) => void): void {
  const path = join(model, 'model.safetensors');
  const parsed = parseSafetensors(path, readFileSync(path));
  const tensors = new Map<string, RawTensor>([...parsed].map(([k, v]) => [k, { dtype: v.dtype, shape: v.shape, bytes: v.bytes }]));
  edit(tensors);
  writeFileSync(path, writeSafetensors(tensors));
}

describe('a model folder is refused with a named error', () => {
  it.each(['config.json', 'model.safetensors', 'tokenizer.json'])('when %s is missing', async (file) => {
    unlinkSync(join(model, file));
    await expectRefused(() => readModelFolder(model), 'ERR_MODEL_FILE_MISSING', file, /missing/);
  });

  it('when config.json is not JSON', async () => {
    writeFileSync(join(model, 'config.json'), '{"hidden_size": 48,');
    await expectRefused(() => readModelFolder(model), 'ERR_MODEL_BAD_JSON', 'config.json', /not valid JSON/);
  });

  it('when the architecture is not llama-family', async () => {
    editConfig((c) => {
      c.architectures = ['GPT2LMHeadModel'];
    });
    await expectRefused(() => readModelFolder(model), 'ERR_MODEL_UNSUPPORTED', 'config.json', /GPT2LMHeadModel is not supported/);
  });

  it('when rope scaling is asked for', async () => {
    editConfig((c) => {
      c.rope_scaling = { type: 'linear', factor: 2 };
    });
    await expectRefused(() => readModelFolder(model), 'ERR_MODEL_UNSUPPORTED', 'config.json', /rope_scaling/);
  });

  it('when a dimension is nonsense', async () => {
    editConfig((c) => {
      c.num_key_value_heads = 4;
    });
    await expectRefused(() => readModelFolder(model), 'ERR_MODEL_BAD_CONFIG', 'config.json', /not a multiple of num_key_value_heads 4/);
  });

  it('when a tensor has the wrong shape', async () => {
    editTensors((t) => {
      const w = t.get('model.layers.1.mlp.up_proj.weight') as RawTensor;
      t.set('model.layers.1.mlp.up_proj.weight', { ...w, shape: [48, 128] });
    });
    await expectRefused(
      () => buildStagesToDir(readModelFolder(model), { stages: 1 }, join(work, 'out')),
      'ERR_MODEL_TENSOR_SHAPE',
      'model.safetensors',
      /model\.layers\.1\.mlp\.up_proj\.weight has shape \[48, 128\], expected \[128, 48\]/,
    );
  });

  it('when a tensor is missing', async () => {
    editTensors((t) => t.delete('lm_head.weight'));
    await expectRefused(
      () => buildStagesToDir(readModelFolder(model), { stages: 1 }, join(work, 'out')),
      'ERR_MODEL_TENSOR_MISSING',
      'model.safetensors',
      /lm_head\.weight is missing/,
    );
  });

  it('when a tensor has an unsupported dtype', async () => {
    editTensors((t) => {
      const w = t.get('model.norm.weight') as RawTensor;
      t.set('model.norm.weight', { ...w, dtype: 'I16' });
    });
    await expectRefused(() => readModelFolder(model), 'ERR_MODEL_TENSOR_DTYPE', 'model.safetensors', /model\.norm\.weight has dtype I16/);
  });

  it('when model.safetensors is truncated', async () => {
    const path = join(model, 'model.safetensors');
    writeFileSync(path, readFileSync(path).subarray(0, 5000));
    await expectRefused(() => readModelFolder(model), 'ERR_MODEL_BAD_SAFETENSORS', 'model.safetensors', /outside|does not fit/);
  });

  it('when config.json is a folder, a pipe or over its bound, or the shard index holds null (before: EISDIR naming no file, a start that hung, advice for weights, a TypeError)', async () => {
    const config = join(model, 'config.json');
    unlinkSync(config);
    mkdirSync(config);
    await expectRefused(() => readModelFolder(model), 'ERR_MODEL_FILE_UNREADABLE', 'config.json', /is not a regular file/);
    rmSync(config, { recursive: true });
    // A pipe nobody writes to: opened without blocking, refused at once.
    expect(spawnSync('mkfifo', [config]).status).toBe(0);
    await expectRefused(() => readModelFolder(model), 'ERR_MODEL_FILE_UNREADABLE', 'config.json', /is not a regular file/);
    unlinkSync(config);
    writeFileSync(config, '{}');
    truncateSync(config, JSON_LIMIT.maxBytes + 1); // sparse: no disk taken
    await expectRefused(() => readModelFolder(model), 'ERR_MODEL_BAD_JSON', 'config.json', /more than 268435456: no JSON file/);
    cpSync(join(SOURCE, 'config.json'), config);
    unlinkSync(join(model, 'model.safetensors'));
    writeFileSync(join(model, 'model.safetensors.index.json'), 'null');
    await expectRefused(() => readModelFolder(model), 'ERR_MODEL_BAD_JSON', 'model.safetensors.index.json', /has no weight_map object/);
  });

  it('when the partition does not fit the model', async () => {
    await expectRefused(
      () => buildStagesToDir(readModelFolder(model), { ranges: [{ start: 0, end: 1 }, { start: 2, end: 3 }] }, join(work, 'out')),
      'ERR_MODEL_BAD_PARTITION',
      'partition',
      /consecutive/,
    );
    await expectRefused(() => buildStagesToDir(readModelFolder(model), { stages: 4 }, join(work, 'out')), 'ERR_MODEL_BAD_PARTITION', 'partition', /4 stages/);
  });
});

describe('sharded checkpoints', () => {
  it('reads the shards that model.safetensors.index.json lists, with the same result', async () => {
    const whole = await buildStagesToDir(readModelFolder(model), { stages: 2 }, join(work, 'whole'));
    const path = join(model, 'model.safetensors');
    const parsed = parseSafetensors(path, readFileSync(path));
    const names = [...parsed.keys()];
    const halves = [names.slice(0, 10), names.slice(10)];
    const weightMap: Record<string, string> = {};
    halves.forEach((part, i) => {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      const tensors = new Map(part.map((n) => [n, parsed.get(n) as RawTensor]));
      writeFileSync(join(model, file), writeSafetensors(tensors));
      for (const n of part) weightMap[n] = file;
    });
    unlinkSync(path);
    writeFileSync(join(model, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    const sharded = await buildStagesToDir(readModelFolder(model), { stages: 2 }, join(work, 'sharded'));
    expect(sharded.stages.map((s) => s.sha256)).toEqual(whole.stages.map((s) => s.sha256));
    unlinkSync(join(model, 'model-00002-of-00002.safetensors'));
    await expectRefused(() => readModelFolder(model), 'ERR_MODEL_FILE_MISSING', 'model-00002-of-00002.safetensors', /missing/);
  });
});

describe('a stage directory is verified against its manifest', () => {
  let stages: string;
  beforeEach(async () => {
    stages = join(work, 'stages');
    await buildStagesToDir(readModelFolder(model), { stages: 3 }, stages);
  });

  it('loads when intact', async () => {
    const set = await loadStageSet(stages);
    expect(set.stageBytes).toHaveLength(3);
    expect(set.manifest.stages.map((s) => s.layers)).toEqual([
      { start: 0, end: 1 },
      { start: 1, end: 2 },
      { start: 2, end: 3 },
    ]);
  });

  it('refuses a stage file whose bytes changed', async () => {
    const path = join(stages, 'stage-1.onnx');
    const bytes = readFileSync(path);
    bytes[bytes.length - 10] = (bytes[bytes.length - 10] as number) ^ 0xff;
    writeFileSync(path, bytes);
    await expectRefused(() => loadStageSet(stages), 'ERR_MANIFEST_SHA256', 'stage-1.onnx', /sha256 is [0-9a-f]{64}, manifest.json says/);
  });

  it('refuses a stage file of the wrong size', async () => {
    const path = join(stages, 'stage-2.onnx');
    writeFileSync(path, readFileSync(path).subarray(0, 100));
    await expectRefused(() => loadStageSet(stages), 'ERR_MANIFEST_SIZE', 'stage-2.onnx', /is 100 bytes/);
  });

  it('refuses a missing stage file', async () => {
    unlinkSync(join(stages, 'stage-0.onnx'));
    await expectRefused(() => loadStageSet(stages), 'ERR_MODEL_FILE_MISSING', 'stage-0.onnx', /missing/);
  });

  type StageEdit = (stage: Record<string, unknown>[]) => void;
  const cases: [string, StageEdit, RegExp][] = [
    ['a file name that leaves the folder', (s) => Object.assign(s[1] as object, { file: '../x.onnx' }), /not a plain file name/],
    ['a gap between layer ranges', (s) => Object.assign(s[1] as object, { layers: { start: 2, end: 2 } }), /does not continue/],
    ['a bad sha256', (s) => Object.assign(s[0] as object, { sha256: 'abc' }), /64 hex digits/],
  ];
  it.each(cases)('refuses a manifest with %s', async (_label, edit, detail) => {
    const path = join(stages, 'manifest.json');
    const m = JSON.parse(readFileSync(path, 'utf8')) as { stages: Record<string, unknown>[] };
    edit(m.stages);
    writeFileSync(path, JSON.stringify(m));
    await expectRefused(() => loadStageSet(stages), 'ERR_MANIFEST_INVALID', 'manifest.json', detail);
  });

  it('refuses a manifest of an unsupported architecture', async () => {
    const path = join(stages, 'manifest.json');
    const m = JSON.parse(readFileSync(path, 'utf8')) as { model: { architecture: string } };
    m.model.architecture = 'gpt2';
    writeFileSync(path, JSON.stringify(m));
    await expectRefused(() => loadStageSet(stages), 'ERR_MODEL_UNSUPPORTED', 'manifest.json', /gpt2/);
  });

  it('reads a manifest written before graph forms as plain, and refuses an unknown form', async () => {
    const path = join(stages, 'manifest.json');
    const m = JSON.parse(readFileSync(path, 'utf8')) as { graph?: string };
    expect(m.graph).toBe('plain');
    delete m.graph;
    writeFileSync(path, JSON.stringify(m));
    expect((await loadStageSet(stages)).manifest.graph).toBe('plain');
    writeFileSync(path, JSON.stringify({ ...m, graph: 'turbo' }));
    await expectRefused(() => loadStageSet(stages), 'ERR_MANIFEST_INVALID', 'manifest.json', /graph must be one of plain, fused, got "turbo"/);
  });
});

describe('the stage cache', () => {
  it('reuses built stages and rebuilds when the model changes', async () => {
    const cache = join(work, 'cache');
    const first = await ensureStages(model, { stages: 2 }, cache);
    expect(first.built).toBe(true);
    const again = await ensureStages(model, { stages: 2 }, cache);
    expect(again.built).toBe(false);
    expect(again.manifest.stages.map((s) => s.sha256)).toEqual(first.manifest.stages.map((s) => s.sha256));
    editTensors((t) => {
      const w = t.get('model.norm.weight') as RawTensor;
      const bytes = new Uint8Array(w.bytes);
      bytes[0] = (bytes[0] as number) ^ 1;
      t.set('model.norm.weight', { ...w, bytes });
    });
    const rebuilt = await ensureStages(model, { stages: 2 }, cache);
    expect(rebuilt.built).toBe(true);
    expect(rebuilt.manifest.stages[1]?.sha256).not.toBe(first.manifest.stages[1]?.sha256);
  });

  it('rebuilds a cached cut that cannot be read whole: a torn, null or pipe source.json, a stage file that no longer matches its sha256 (before: the start failed)', async () => {
    const cache = join(work, 'cache');
    const first = await ensureStages(model, { stages: 2 }, cache);
    const damage: ((dir: string) => void)[] = [
      (dir) => writeFileSync(join(dir, 'source.json'), '{"sourceHash": "ab'),
      (dir) => writeFileSync(join(dir, 'source.json'), 'null\n'),
      // A pipe in its place: refused at once (before: read with readFileSync, the start waited on it for ever).
      (dir) => {
        unlinkSync(join(dir, 'source.json'));
        expect(spawnSync('mkfifo', [join(dir, 'source.json')]).status).toBe(0);
      },
      (dir) => {
        const file = join(dir, first.manifest.stages[1]?.file as string);
        const bytes = readFileSync(file);
        bytes[bytes.length - 1] = (bytes[bytes.length - 1] as number) ^ 0xff;
        writeFileSync(file, bytes);
      },
    ];
    for (const harm of damage) {
      harm(first.dir);
      const again = await ensureStages(model, { stages: 2 }, cache);
      expect(again.built).toBe(true);
      expect(again.manifest).toEqual(first.manifest);
      expect((await ensureStages(model, { stages: 2 }, cache)).built).toBe(false);
    }
  });

  it('two builds of one cut at once (processes of a cluster sharing the cache): the first complete one stays, and no temporary folder is left', async () => {
    const cache = join(work, 'cache');
    const a = ensureStages(model, { stages: 2 }, cache);
    const b = ensureStages(model, { stages: 2 }, cache);
    const first = await a;
    const inode = statSync(first.dir).ino;
    const second = await b;
    // Before, the later build removed the folder the first had put there (and another process served) and put its own in its place.
    expect(statSync(second.dir).ino).toBe(inode);
    expect(second.manifest.stages.map((s) => s.sha256)).toEqual(first.manifest.stages.map((s) => s.sha256));
    expect(readdirSync(dirname(first.dir)).filter((n) => n.includes('.tmp-'))).toEqual([]);
    expect((await loadStageSet(first.dir)).manifest.stages).toHaveLength(2);
  });

  it('keeps the fused form beside the plain one, each reused as itself', async () => {
    const cache = join(work, 'cache');
    // tiny-untied's head size (8) has no fused form: a model whose 16 has one.
    const model = join(work, 'gqa');
    cpSync('fixtures/models/tiny-gqa-bias', model, { recursive: true });
    const plain = await ensureStages(model, { stages: 2 }, cache, { graph: 'plain' });
    const fused = await ensureStages(model, { stages: 2 }, cache, { graph: 'fused' });
    expect(fused.built).toBe(true);
    expect(fused.dir).toBe(`${plain.dir}-fused`);
    expect([plain.manifest.graph, fused.manifest.graph]).toEqual(['plain', 'fused']);
    expect(fused.manifest.stages[0]?.inputs.map((i) => `${i.name}:${i.dtype}`)).toContain('seqlens_k:int32');
    expect((await ensureStages(model, { stages: 2 }, cache, { graph: 'fused' })).built).toBe(false);
    expect((await ensureStages(model, { stages: 2 }, cache, { graph: 'plain' })).built).toBe(false);
  });
});

describe('a served context below the model’s (CONTEXT)', () => {
  const GQA = 'fixtures/models/tiny-gqa-bias'; // max_position_embeddings 512, head_dim 16: it has a fused form

  it('builds the stages for that many positions: the manifest, the fused form’s rotary tables, the cache’s folder; the same outputs bit for bit where both hold the position', async () => {
    const cache = join(work, 'cache');
    const full = await ensureStages(GQA, { stages: 2 }, cache, { graph: 'fused' });
    const cut = await ensureStages(GQA, { stages: 2 }, cache, { graph: 'fused', context: 64 });
    expect(full.manifest.model.maxPositions).toBe(512);
    expect(cut.manifest.model.maxPositions).toBe(64);
    expect(cut.dir.endsWith('-fused-ctx64')).toBe(true);
    expect(full.dir.endsWith('-fused')).toBe(true);
    // Each fused stage file carries cos and sin tables of maxPositions × head_dim/2 floats: 448 rows fewer each (and
    // a few bytes of shorter length fields).
    for (const [i, s] of cut.manifest.stages.entries()) {
      const fewer = (full.manifest.stages[i]?.sizeBytes as number) - s.sizeBytes;
      expect(fewer).toBeGreaterThanOrEqual(2 * (512 - 64) * 8 * 4);
      expect(fewer).toBeLessThan(2 * (512 - 64) * 8 * 4 + 16);
    }
    // The model's own context, or more, is the model's: the same folder and stages as none.
    for (const context of [512, 9000]) {
      const same = await ensureStages(GQA, { stages: 2 }, cache, { graph: 'fused', context });
      expect(same.dir).toBe(full.dir);
      expect(same.built).toBe(false);
    }
    expect((await ensureStages(GQA, { stages: 2 }, cache, { graph: 'fused', context: 64 })).built).toBe(false);
    await expectRefused(
      () => ensureStages(GQA, { stages: 2 }, cache, { context: 3 }),
      'ERR_MODEL_BAD_CONFIG',
      'config.json',
      /a served context of 3 positions: it must be an integer of at least 4 \(a challenge step's\)/,
    );
    const a = await ReferenceRunner.fromStageDir(full.dir);
    const b = await ReferenceRunner.fromStageDir(cut.dir);
    try {
      const sa = a.session();
      const sb = b.session();
      let ids = [5, 17, 250, 3, 99, 4, 8, 120, 7, 61];
      for (let position = ids.length; position <= 63; position++) {
        const la = await sa.forward(ids);
        const lb = await sb.forward(ids);
        expect(Buffer.from(lb.buffer, lb.byteOffset, lb.byteLength).equals(Buffer.from(la.buffer, la.byteOffset, la.byteLength))).toBe(true);
        ids = [position % 200];
      }
      // The cut context's limit is the generation's.
      await expect(b.generateIds([1, 2, 3], 62, GREEDY)).rejects.toThrow("exceeds the model's 64 positions");
    } finally {
      await a.close();
      await b.close();
    }
  });
});
