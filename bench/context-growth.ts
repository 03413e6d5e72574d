/**
 * What a longer context costs with the KV cache on slabs (shared/model/kv-slab.ts)
 * and as before (pasts fed, the whole present.* fetched back every step), side
 * by side in one run: ms per decoded token near position 10 and near 250, fused
 * graphs, WASM in Node (onnxruntime-web, 1 thread), one session through a
 * CachingExecutor as a volunteer's worker keeps it; the two alternate run by
 * run. And, for the same stage files, one stage's runtime call alone at batch
 * 1, 8 and 16 with pasts of 10 and 250 positions: how much of the growth is
 * attention itself, and what batching can gain at most (compute per row).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { slabFetches } from '../shared/model/kv-slab.js';
import { CachingExecutor, type Feeds, type TensorData } from '../shared/model/pipeline.js';
import { argmax } from '../shared/model/sampling.js';
import { STAGE_IO } from '../shared/model/stage-graph.js';
import { FUSED_IO } from '../shared/model/stage-graph-fused.js';
import { ensureStages } from '../signal-server/models/model-folder.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';
import { FAR, NEAR, PROMPT, PROMPT_POSITIONS, TOKENS, WINDOW, windows } from './graphs.js';
import { median, printTable } from './table.js';

export interface ContextGrowthOptions {
  readonly models: readonly { readonly label: string; readonly dir: string }[];
  readonly stages: number;
  readonly repeats: number;
}

/** This process's CPU ms since `from` (process.cpuUsage): other work on the machine delays wall time far more than it adds to this. */
function cpuMs(from: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(from);
  return (u.user + u.system) / 1000;
}

interface Runs {
  readonly wall: number[][];
  readonly cpu: number[][];
}

/** Per-token wall and CPU ms of each run, slabs off and on alternating (a warm-up run of each first). */
async function decodeRuns(runner: ReferenceRunner, repeats: number): Promise<Map<boolean, Runs>> {
  const m = runner.manifest;
  const ids = runner.tokenizer.encode(PROMPT).slice(0, PROMPT_POSITIONS);
  const runs = new Map<boolean, Runs>([
    [false, { wall: [], cpu: [] }],
    [true, { wall: [], cpu: [] }],
  ]);
  for (let r = -1; r < repeats; r++) {
    for (const slabs of r % 2 === 0 ? [true, false] : [false, true]) {
      const caches = new CachingExecutor(m, runner.stageExecutor, { slabs });
      const forward = async (tokens: number[]): Promise<number> => {
        let carry: TensorData = { dtype: 'int64', dims: [1, tokens.length], data: BigInt64Array.from(tokens, (t) => BigInt(t)) };
        for (let s = 0; s < m.stages.length; s++) carry = await caches.step(1, s, carry);
        return argmax((carry.data as Float32Array).subarray(carry.data.length - m.model.vocabSize));
      };
      let next = await forward(ids);
      const ms: number[] = [];
      const cpu: number[] = [];
      for (let i = 0; i < TOKENS; i++) {
        const t0 = performance.now();
        const c0 = process.cpuUsage();
        next = await forward([next]);
        cpu.push(cpuMs(c0));
        ms.push(performance.now() - t0);
      }
      caches.dispose();
      if (r >= 0) {
        runs.get(slabs)?.wall.push(ms);
        runs.get(slabs)?.cpu.push(cpu);
      }
    }
  }
  return runs;
}

const BATCHES = [1, 8, 16] as const;

/** Median CPU ms of one runtime call of the middle stage: batch b, pasts of `past` positions (room for one more), fetching present.* or new.*. */
async function callMs(runner: ReferenceRunner, b: number, past: number, slabs: boolean, calls: number): Promise<number> {
  const m = runner.manifest;
  const stage = Math.floor(m.stages.length / 2);
  const entry = m.stages[stage];
  if (entry === undefined) throw new RangeError(`no stage ${stage}`);
  const { numKvHeads: heads, headDim: hd, hiddenSize: d } = m.model;
  // As each form feeds it: slabs with room to grow; before, exactly the positions held.
  const cap = slabs ? past + 16 : past;
  const feeds: Feeds = {
    [STAGE_IO.hiddenIn]: { dtype: 'float32', dims: [b, 1, d], data: Float32Array.from({ length: b * d }, (_, i) => Math.sin(i) / 8) },
    [FUSED_IO.seqlensK]: { dtype: 'int32', dims: [b], data: new Int32Array(b).fill(past) },
    [FUSED_IO.totalSequenceLength]: { dtype: 'int32', dims: [], data: Int32Array.of(past + 1) },
  };
  for (let l = entry.layers.start; l < entry.layers.end; l++)
    for (const n of [STAGE_IO.pastKey(l), STAGE_IO.pastValue(l)])
      feeds[n] = {
        dtype: 'float32',
        dims: [b, heads, cap, hd],
        data: Float32Array.from({ length: b * heads * cap * hd }, (_, i) => Math.cos(i) / 8),
      };
  const fetches = slabs ? slabFetches(entry, m.stages.length) : undefined;
  for (let i = 0; i < 3; i++) await runner.stageExecutor.run(stage, feeds, fetches);
  const ms: number[] = [];
  for (let i = 0; i < calls; i++) {
    const c0 = process.cpuUsage();
    await runner.stageExecutor.run(stage, feeds, fetches);
    ms.push(cpuMs(c0));
  }
  return median(ms);
}

export async function benchContextGrowth(o: ContextGrowthOptions): Promise<void> {
  const cache = mkdtempSync(join(tmpdir(), 'webswarm-bench-growth-'));
  const load0 = loadavg()[0]?.toFixed(1);
  const rows: string[][] = [];
  const callRows: string[][] = [];
  try {
    for (const model of o.models) {
      const { dir } = await ensureStages(model.dir, { stages: o.stages }, cache, { graph: 'fused' });
      const runner = await ReferenceRunner.fromStageDir(dir);
      try {
        const runs = await decodeRuns(runner, o.repeats);
        type W = { near: number; far: number };
        const w = (slabs: boolean, what: keyof Runs): W => windows(runs.get(slabs)?.[what] ?? []);
        const cells = (x: W) => [x.near.toFixed(2), x.far.toFixed(2), `${(x.far / x.near).toFixed(2)}×`];
        for (const slabs of [false, true])
          rows.push([model.label, slabs ? 'slabs' : 'before', ...cells(w(slabs, 'wall')), ...cells(w(slabs, 'cpu'))]);
        const ratio = (what: keyof Runs, at: keyof W) => `${(w(true, what)[at] / w(false, what)[at]).toFixed(2)}×`;
        rows.push(['', 'slabs ÷ before', ratio('wall', 'near'), ratio('wall', 'far'), '', ratio('cpu', 'near'), ratio('cpu', 'far'), '']);
        for (const b of BATCHES) {
          const cells: string[] = [];
          for (const slabs of [false, true]) {
            const near = await callMs(runner, b, NEAR, slabs, 9);
            const far = await callMs(runner, b, FAR, slabs, 9);
            cells.push(`${near.toFixed(1)} → ${far.toFixed(1)} (${(far / near).toFixed(2)}×); ${(near / b).toFixed(2)} ms/row`);
          }
          callRows.push([model.label, String(b), ...cells]);
        }
      } finally {
        await runner.close();
      }
    }
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
  printTable(
    `context growth, fused graphs, WASM in Node, 1 thread, ${o.stages} stages, one session: ms per token, median of positions ${NEAR}–${NEAR + WINDOW - 1} and ${FAR}–${FAR + WINDOW - 1}, the quietest of ${o.repeats} runs (slabs and before alternating; load average ${load0} at the start, ${loadavg()[0]?.toFixed(1)} at the end)`,
    [
      'model',
      'KV cache',
      `ms/token at ${NEAR}`,
      `ms/token at ${FAR}`,
      'growth',
      `CPU ms/token at ${NEAR}`,
      `CPU ms/token at ${FAR}`,
      'growth',
    ],
    rows,
  );
  printTable(
    `one runtime call of the middle stage alone (median of 9): CPU ms with pasts of ${NEAR} → ${FAR} positions, and ms per row at ${NEAR} (the compute a batch shares; load average ${loadavg()[0]?.toFixed(1)})`,
    ['model', 'batch', 'before: present.* fetched', 'slabs: new.* fetched'],
    callRows,
  );
}
