/**
 * Batching across sessions: aggregate decode tokens/s of 1 and of 8 concurrent
 * sessions on the server's executor (the fallback's: one CachingExecutor per
 * stage over one serial onnxruntime-web WASM runner, 1 thread), batching on
 * and off side by side in each run; for the fused graph also batching on with
 * the pasts gathered and present.* fetched every step, as before slabs
 * (shared/model/kv-slab.ts). The 8 sessions' prompts have 8 different
 * lengths (the fused graph batches them; the plain graph batches only equal
 * lengths, so it also has a row with 8 prompts of one length).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StageManifest } from '../shared/model/manifest.js';
import { CachingExecutor, type StageExecutor, type TensorData } from '../shared/model/pipeline.js';
import { argmax } from '../shared/model/sampling.js';
import type { GraphForm } from '../shared/model/stage-graph-fused.js';
import { StepBatcher } from '../shared/model/step-batcher.js';
import { SerialExecutor } from '../signal-server/coordinator/fallback.js';
import { ensureStages } from '../signal-server/models/model-folder.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';
import { ensureRandomCheckpoint, SMOLLM_135M_SHAPE } from '../testing/random-checkpoint.js';
import { median, printTable } from './table.js';

const PROMPT = 'It is a truth universally acknowledged, that a single man in possession of a good fortune must be in want of a wife';
const SESSIONS = [1, 8] as const;
/**
 * Decode steps per session of each configuration run before anything is
 * timed: WASM tiers up over the first hundreds of calls, and a batch's
 * kernels (M > 1) are other code than a single row's.
 */
const WARMUP_TOKENS = 96;

/** A SmolLM-135M-shaped random checkpoint cut to 6 layers (hidden 576): big enough that a stage's compute, not its call, dominates. */
export function smollmSixLayers(root = '.cache/bench-models'): string {
  return ensureRandomCheckpoint(join(root, 'smollm-135m-6-layers'), { ...SMOLLM_135M_SHAPE, layers: 6 }, 135);
}

export interface BatchingBenchOptions {
  /** Each model, and which of CASES to run on it (all when absent). */
  readonly models: readonly { readonly label: string; readonly dir: string; readonly cases?: readonly Case[] }[];
  readonly stages: number;
  /** Decode tokens per session per run. */
  readonly tokens: number;
  readonly repeats: number;
}

/** How a configuration runs steps: one call each (off), batched with gathered pasts (before slabs), or batched on slabs. */
interface Mode {
  readonly label: string;
  readonly maxBatch: number;
  readonly slabs: boolean;
}
const OFF: Mode = { label: 'off', maxBatch: 1, slabs: false };
const GATHERED: Mode = { label: 'on, pasts gathered (before)', maxBatch: 16, slabs: false };
const SLABS: Mode = { label: 'on, slabs', maxBatch: 16, slabs: true };

/** One CachingExecutor per stage over one serial runner and, when on, one batcher: as the fallback's replicas (ServerReplicas). */
function stageExecutors(manifest: StageManifest, runner: StageExecutor, mode: Mode, sessions: number): CachingExecutor[] {
  const { maxBatch } = mode;
  const serial = new SerialExecutor(async () => runner);
  const batcher = maxBatch > 1 ? new StepBatcher(manifest, serial, maxBatch, 1, () => sessions, mode.slabs) : null;
  return manifest.stages.map(() => new CachingExecutor(manifest, serial, batcher === null ? { maxBatch: 1 } : { batcher }));
}

/** Wall ms and this process's CPU ms for every session to decode `tokens` after its prompt (prompts included). */
async function generateAll(
  manifest: StageManifest,
  stages: CachingExecutor[],
  prompts: readonly number[][],
  tokens: number,
): Promise<{ wallMs: number; cpuMs: number }> {
  const vocab = manifest.model.vocabSize;
  const forward = async (session: number, ids: readonly number[]): Promise<number> => {
    let carry: TensorData = { dtype: 'int64', dims: [1, ids.length], data: BigInt64Array.from(ids, (t) => BigInt(t)) };
    for (const [s, exec] of stages.entries()) carry = await exec.step(session, s, carry);
    return argmax((carry.data as Float32Array).subarray(carry.data.length - vocab));
  };
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  await Promise.all(
    prompts.map(async (p, i) => {
      let next = await forward(i + 1, p);
      for (let k = 0; k < tokens; k++) next = await forward(i + 1, [next]);
      for (const exec of stages) exec.release(i + 1);
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  return { wallMs: performance.now() - t0, cpuMs: (cpu.user + cpu.system) / 1000 };
}

export interface Case {
  readonly graph: GraphForm;
  readonly lengths: 'different' | 'equal';
}

export const CASES: readonly Case[] = [
  { graph: 'fused', lengths: 'different' },
  { graph: 'plain', lengths: 'different' },
  { graph: 'plain', lengths: 'equal' },
];

export async function benchBatching(o: BatchingBenchOptions): Promise<void> {
  const cacheRoot = mkdtempSync(join(tmpdir(), 'webswarm-bench-batching-'));
  const loadAtStart = loadavg()[0]?.toFixed(1);
  const rows: string[][] = [];
  try {
    for (const model of o.models) {
      for (const c of model.cases ?? CASES) {
        // Slabs apply to the fused graph only: on the plain one "before" would be the same code as "on".
        const modes = c.graph === 'fused' ? [OFF, GATHERED, SLABS] : [OFF, SLABS];
        const { dir } = await ensureStages(model.dir, { stages: o.stages }, cacheRoot, { graph: c.graph });
        const runner = await ReferenceRunner.fromStageDir(dir);
        try {
          const ids = runner.tokenizer.encode(PROMPT);
          const promptsOf = (n: number) =>
            Array.from({ length: n }, (_, i) =>
              c.lengths === 'equal' ? ids.slice(0, 16).map((t) => (t + i) % 2000) : ids.slice(0, 9 + 2 * i),
            );
          for (const n of SESSIONS) {
            for (const mode of modes)
              await generateAll(
                runner.manifest,
                stageExecutors(runner.manifest, runner.stageExecutor, mode, n),
                promptsOf(n),
                WARMUP_TOKENS,
              );
          }
          // Tokens per wall second and per CPU second, per [sessions][on/off], one sample per run; on and off alternate within each run.
          const rates = new Map<string, number[]>();
          const perCpu = new Map<string, number[]>();
          for (let r = 0; r < o.repeats; r++) {
            for (const n of SESSIONS) {
              for (const mode of r % 2 === 0 ? [...modes].reverse() : modes) {
                const t = await generateAll(
                  runner.manifest,
                  stageExecutors(runner.manifest, runner.stageExecutor, mode, n),
                  promptsOf(n),
                  o.tokens,
                );
                const key = `${n}/${mode.label}`;
                rates.set(key, [...(rates.get(key) ?? []), (n * o.tokens * 1000) / t.wallMs]);
                perCpu.set(key, [...(perCpu.get(key) ?? []), (n * o.tokens * 1000) / t.cpuMs]);
              }
            }
          }
          const rate = (n: number, m: Mode) => median(rates.get(`${n}/${m.label}`) ?? []);
          const cpuRate = (n: number, m: Mode) => median(perCpu.get(`${n}/${m.label}`) ?? []);
          const ratio = (x: number, y: number) => `${(x / y).toFixed(2)}×`;
          for (const m of modes) {
            const cells = [rate(1, m).toFixed(0), rate(8, m).toFixed(0), ratio(rate(8, m), rate(1, m))];
            const cpuCells = [cpuRate(1, m).toFixed(0), cpuRate(8, m).toFixed(0), ratio(cpuRate(8, m), cpuRate(1, m))];
            rows.push([model.label, `${c.graph}, ${c.lengths} lengths`, m.label, ...cells, ...cpuCells]);
          }
          const versus = (a: Mode, b: Mode) => [
            '',
            '',
            `${a.label} ÷ ${b.label}`,
            ratio(rate(1, a), rate(1, b)),
            ratio(rate(8, a), rate(8, b)),
            '',
            ratio(cpuRate(1, a), cpuRate(1, b)),
            ratio(cpuRate(8, a), cpuRate(8, b)),
            '',
          ];
          rows.push(versus(SLABS, OFF));
          if (modes.includes(GATHERED)) rows.push(versus(SLABS, GATHERED));
        } finally {
          await runner.close();
        }
      }
    }
  } finally {
    rmSync(cacheRoot, { recursive: true, force: true });
  }
  printTable(
    `batching across sessions on the server's executor: aggregate decode tokens per second of wall time and per second of this process's CPU time (which other work on the machine disturbs less), onnxruntime-web WASM in Node, 1 thread, ${o.stages} stages (median of ${o.repeats} runs × ${o.tokens} tokens per session, the modes alternating; load average ${loadAtStart} at the start, ${loadavg()[0]?.toFixed(1)} at the end)`,
    [
      'model',
      'stage graphs, prompts',
      'batching',
      '1 session /s',
      '8 sessions /s',
      '8 / 1',
      '1 session /CPU s',
      '8 sessions /CPU s',
      '8 / 1',
    ],
    rows,
  );
}
