/**
 * Weight precisions against f32, per model: stage files' size, the memory one
 * stage takes in a fresh process, ms/token (all stages in one process,
 * onnxruntime-web WASM in Node, 1 thread), the largest logit difference from
 * f32 relative to the largest f32 logit (teacher-forced over the prompt and
 * f32's 64 greedy tokens), and greedy agreement with f32 over those 64 tokens
 * (top-1 agreement at each teacher-forced position, and the length of the
 * identical free-running prefix).
 *
 * Part of `npm run bench` (BENCH_PRECISION=0 skips it); alone:
 *   node --import tsx bench/precision.ts
 * The SmolLM-135M-shaped random checkpoint (30 layers, hidden 576, 9/3 heads,
 * MLP 1536, vocab cut to 2048; 430 MB) is generated seeded into
 * .cache/checkpoints/ the first time, never committed.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WEIGHT_PRECISIONS, type WeightPrecision } from '../shared/model/quantize.js';
import { argmax, GREEDY } from '../shared/model/sampling.js';
import { maxAbs, maxAbsDifference } from '../shared/vote/tolerance.js';
import { DEFAULT_MODEL, modelDir } from '../signal-server/defaults.js';
import { ensureStages } from '../signal-server/models/model-folder.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';
import { type HfConfig, randomCheckpoint, SMOLLM_135M, writeCheckpointFolder } from '../testing/random-checkpoint.js';
import { median, printTable } from './table.js';

const PROMPT = 'It is a truth universally acknowledged, that a single man in possession of a good fortune';
const WARMUP_TOKENS = 16;
/** WASM tiers up over the first ~100 tokens of the process: paid once, before anything is timed. */
const PROCESS_WARMUP_TOKENS = 128;

/** SmolLM-135M's real dimensions, vocabulary cut to 2048 (the tokenizer all test checkpoints share). */
export const SMOLLM_135M_FULL: HfConfig = {
  ...SMOLLM_135M,
  hidden_size: 576,
  intermediate_size: 1536,
  num_hidden_layers: 30,
  vocab_size: 2048,
  // Stored as float32, so that the f32 stages hold exactly the weights the other precisions are measured against.
  torch_dtype: 'float32',
};

/** The random SmolLM-135M-shaped checkpoint, written once into the cache (seeded: the same bytes every time). */
export function smollmShapedCheckpoint(root = '.cache/checkpoints'): string {
  const dir = join(root, 'smollm-135m-random');
  if (!existsSync(join(dir, 'model.safetensors'))) writeCheckpointFolder(dir, randomCheckpoint(SMOLLM_135M_FULL, 135));
  return dir;
}

export interface PrecisionBenchOptions {
  readonly models: readonly { readonly label: string; readonly dir: string }[];
  readonly stages: number;
  readonly tokens: number;
  /** Timed decoding runs per precision (the median of their medians is reported). */
  readonly repeats: number;
}

interface Row {
  readonly precision: WeightPrecision;
  readonly totalMb: number;
  readonly largestMb: number;
  readonly memoryMb: number;
  readonly msPerToken: number;
  readonly relLogits: number;
  readonly topOne: number;
  readonly prefix: number;
  /** Tokens compared (64, or fewer where f32 met its end-of-sequence token). */
  readonly compared: number;
}

/** RSS growth of a fresh process that opens one stage file and runs one decoding step (bench/stage-memory.ts). */
function stageMemoryMb(stageDir: string, stage: number): number {
  const out = execFileSync(process.execPath, ['--expose-gc', '--import', 'tsx', 'bench/stage-memory.ts', stageDir, String(stage)], {
    encoding: 'utf8',
  });
  return Number(out.trim()) / 1e6;
}

interface Opened {
  readonly precision: WeightPrecision;
  readonly runner: ReferenceRunner;
  readonly sizes: number[];
  readonly memoryMb: number;
  readonly stepMs: number[];
}

async function open(dir: string, p: WeightPrecision, stages: number, cache: string): Promise<Opened> {
  const { dir: stageDir, manifest } = await ensureStages(dir, { stages }, cache, { weights: p });
  const sizes = manifest.stages.map((s) => s.sizeBytes);
  const memoryMb = stageMemoryMb(stageDir, sizes.indexOf(Math.max(...sizes)));
  return { precision: p, runner: await ReferenceRunner.fromStageDir(stageDir), sizes, memoryMb, stepMs: [] };
}

/**
 * Logits of the positions that predict each of `tokens`, teacher-forced:
 * [tokens.length · vocab]. The head runs on a step's last position only, so
 * the prompt is one step and each token after it one more.
 */
async function teacherForced(runner: ReferenceRunner, ids: readonly number[], tokens: readonly number[]): Promise<Float32Array> {
  const vocab = runner.manifest.model.vocabSize;
  const session = runner.session();
  const out = new Float32Array(tokens.length * vocab);
  out.set(await session.forward(ids), 0);
  for (let t = 1; t < tokens.length; t++) out.set(await session.forward([tokens[t - 1] as number]), t * vocab);
  return out;
}

async function benchModel(dir: string, o: PrecisionBenchOptions, cache: string): Promise<Row[]> {
  const opened: Opened[] = [];
  try {
    for (const p of WEIGHT_PRECISIONS) opened.push(await open(dir, p, o.stages, cache));
    const f32 = opened[0] as Opened;
    const ids = f32.runner.tokenizer.encode(PROMPT);
    for (const x of opened) await x.runner.generateIds(ids, WARMUP_TOKENS, GREEDY);
    // Interleaved, so that a busy moment of a shared machine falls on every precision alike.
    const free = new Map<WeightPrecision, number[]>();
    for (let r = 0; r < o.repeats; r++) {
      for (const x of opened) {
        const run = await x.runner.generateIds(ids, o.tokens, GREEDY);
        x.stepMs.push(median(run.stepMs.slice(1)));
        if (r === 0) free.set(x.precision, run.tokens);
      }
    }
    const reference = free.get('f32') as number[];
    const vocab = f32.runner.manifest.model.vocabSize;
    const base = await teacherForced(f32.runner, ids, reference);
    const rows: Row[] = [];
    for (const x of opened) {
      const logits = x === f32 ? base : await teacherForced(x.runner, ids, reference);
      let rel = 0;
      let topOne = 0;
      for (let t = 0; t < reference.length; t++) {
        const row = logits.subarray(t * vocab, (t + 1) * vocab);
        const b = base.subarray(t * vocab, (t + 1) * vocab);
        rel = Math.max(rel, maxAbsDifference(row, b) / Math.max(1, maxAbs(b)));
        if (argmax(row) === reference[t]) topOne++;
      }
      const tokens = free.get(x.precision) as number[];
      let prefix = 0;
      while (prefix < reference.length && tokens[prefix] === reference[prefix]) prefix++;
      rows.push({
        precision: x.precision,
        totalMb: x.sizes.reduce((a, b) => a + b, 0) / 1e6,
        largestMb: Math.max(...x.sizes) / 1e6,
        memoryMb: x.memoryMb,
        msPerToken: median(x.stepMs),
        relLogits: rel,
        topOne,
        prefix,
        compared: reference.length,
      });
    }
    return rows;
  } finally {
    for (const x of opened) await x.runner.close();
  }
}

export async function benchPrecision(o: PrecisionBenchOptions): Promise<void> {
  const cache = mkdtempSync(join(tmpdir(), 'webswarm-bench-precision-'));
  try {
    const first = o.models[0];
    if (first !== undefined) {
      const { dir } = await ensureStages(first.dir, { stages: o.stages }, cache, { weights: 'f32' });
      const warm = await ReferenceRunner.fromStageDir(dir);
      await warm.generateIds(warm.tokenizer.encode(PROMPT), PROCESS_WARMUP_TOKENS, GREEDY);
      await warm.close();
    }
    for (const m of o.models) {
      const rows = await benchModel(m.dir, o, cache);
      const f32Ms = rows[0]?.msPerToken ?? Number.NaN;
      printTable(
        `weight precisions of ${m.label}, ${o.stages} stages (onnxruntime-web WASM in Node, 1 thread; median of ${o.repeats} interleaved runs × ${o.tokens} greedy tokens after a ${WARMUP_TOKENS}-token warm-up)`,
        [
          'weights',
          'stage files MB',
          'largest stage MB',
          'its memory MB',
          'ms/token',
          '× f32',
          'max rel. logit diff vs f32',
          'top-1 = f32',
          'same greedy prefix',
        ],
        rows.map((r) => [
          r.precision,
          r.totalMb.toFixed(1),
          r.largestMb.toFixed(1),
          r.memoryMb.toFixed(0),
          r.msPerToken.toFixed(1),
          (r.msPerToken / f32Ms).toFixed(2),
          r.precision === 'f32' ? '—' : r.relLogits.toExponential(1),
          `${r.topOne}/${r.compared}`,
          `${r.prefix}/${r.compared}`,
        ]),
      );
    }
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
}

const isMain = process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'));
if (isMain) {
  benchPrecision({
    models: [
      { label: DEFAULT_MODEL, dir: modelDir(DEFAULT_MODEL) },
      { label: 'a SmolLM-135M-shaped random checkpoint', dir: smollmShapedCheckpoint() },
    ],
    stages: 3,
    tokens: Number(process.env.BENCH_TOKENS ?? 64),
    repeats: Number(process.env.BENCH_REPEATS ?? 3),
  }).catch((e: unknown) => {
    process.stderr.write(`bench failed: ${e instanceof Error ? e.stack : String(e)}\n`);
    process.exit(1);
  });
}
