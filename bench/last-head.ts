/**
 * The LM head on the last position only against the head on every position
 * (the builder's option for this and the tests), on a real vocabulary: a
 * SmolLM-135M-shaped random checkpoint with its full 49 152-token vocabulary
 * and 2 layers (written under .cache/bench-models/, never committed), cut in
 * 2 stages, plain and fused forms, onnxruntime-web WASM in Node, 1 thread.
 * Per prompt length: the last stage's prefill alone (hidden states in, logits
 * out) and the time to the first token through the reference runner (every
 * stage, then the argmax of the last row), the two heads side by side in one
 * run, interleaved, medians. The first tokens must be equal, or the bench fails.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { freshFeeds, type TensorData } from '../shared/model/pipeline.js';
import { argmax } from '../shared/model/sampling.js';
import type { HeadPositions } from '../shared/model/stage-graph.js';
import type { GraphForm } from '../shared/model/stage-graph-fused.js';
import { ensureStages } from '../signal-server/models/model-folder.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';
import { ensureRandomCheckpoint, randomIds, SMOLLM_135M_SHAPE } from '../testing/random-checkpoint.js';
import { median, printTable } from './table.js';

/** SmolLM-135M's width and its real vocabulary, 2 layers: the head is then most of a prefill, as on the real model's last stage. */
export const REAL_VOCAB_SHAPE = { ...SMOLLM_135M_SHAPE, layers: 2, vocab: 49_152 };
export const REAL_VOCAB_DIR = '.cache/bench-models/smollm-135m-vocab-49152-2-layers';
export const PROMPT_LENGTHS: readonly number[] = [16, 128, 512];
const HEADS: readonly HeadPositions[] = ['all', 'last'];
const STAGES = 2;

export interface LastHeadBenchOptions {
  readonly repeats: number;
  readonly forms?: readonly GraphForm[];
  readonly prompts?: readonly number[];
  /** Where the checkpoint is written (default REAL_VOCAB_DIR). */
  readonly checkpointDir?: string;
}

/** Seeded hidden states [1, P, d] in [−1, 1): the last stage's input for a prompt of P positions. */
function hiddenStates(positions: number, d: number): TensorData {
  const data = Float32Array.from(randomIds(2000, positions * d, positions), (v) => v / 1000 - 1);
  return { dtype: 'float32', dims: [1, positions, d], data };
}

interface Cell {
  stageMs: number[];
  firstTokenMs: number[];
  token: number;
}

async function timeOnce(runner: ReferenceRunner, ids: readonly number[], hidden: TensorData, cell: Cell): Promise<void> {
  const { manifest } = runner;
  const last = manifest.stages.length - 1;
  const feeds = freshFeeds(manifest, last, hidden);
  let t0 = performance.now();
  await runner.stageExecutor.run(last, feeds);
  cell.stageMs.push(performance.now() - t0);
  t0 = performance.now();
  const logits = await runner.session().forward(ids);
  cell.token = argmax(logits.subarray(logits.length - manifest.model.vocabSize));
  cell.firstTokenMs.push(performance.now() - t0);
}

export async function benchLastHead(o: LastHeadBenchOptions): Promise<void> {
  const dir = ensureRandomCheckpoint(o.checkpointDir ?? REAL_VOCAB_DIR, REAL_VOCAB_SHAPE, 135);
  const cache = mkdtempSync(join(tmpdir(), 'webswarm-bench-last-head-'));
  const prompts = o.prompts ?? PROMPT_LENGTHS;
  const rows: string[][] = [];
  const loads: number[] = [];
  try {
    for (const graph of o.forms ?? (['plain', 'fused'] as const)) {
      const runners = new Map<HeadPositions, ReferenceRunner>();
      for (const head of HEADS) {
        runners.set(head, await ReferenceRunner.fromStageDir((await ensureStages(dir, { stages: STAGES }, cache, { graph, head })).dir));
      }
      try {
        const model = (runners.get('last') as ReferenceRunner).manifest.model;
        const cells = new Map<string, Cell>();
        for (let r = -1; r < o.repeats; r++) {
          loads.push(loadavg()[0] as number);
          for (const p of prompts) {
            const ids = randomIds(model.vocabSize, p, 7);
            const hidden = hiddenStates(p, model.hiddenSize);
            for (const head of HEADS) {
              const key = `${p}/${head}`;
              const cell = cells.get(key) ?? { stageMs: [], firstTokenMs: [], token: -1 };
              cells.set(key, cell);
              const warm: Cell = { stageMs: [], firstTokenMs: [], token: -1 };
              // The first round warms WASM up and is not kept.
              await timeOnce(runners.get(head) as ReferenceRunner, ids, hidden, r < 0 ? warm : cell);
              if (r < 0) cell.token = warm.token;
            }
          }
        }
        for (const p of prompts) {
          const all = cells.get(`${p}/all`) as Cell;
          const last = cells.get(`${p}/last`) as Cell;
          if (all.token !== last.token)
            throw new Error(`${graph}, ${p} tokens: first token ${last.token}, every position's head gives ${all.token}`);
          const [sa, sl, fa, fl] = [median(all.stageMs), median(last.stageMs), median(all.firstTokenMs), median(last.firstTokenMs)];
          const logitsMb = (n: number) => ((n * model.vocabSize * 4) / 1e6).toFixed(n === 1 ? 2 : 1);
          rows.push([
            graph,
            String(p),
            sa.toFixed(0),
            sl.toFixed(0),
            (sa / sl).toFixed(2),
            fa.toFixed(0),
            fl.toFixed(0),
            (fa / fl).toFixed(2),
            `${logitsMb(p)} → ${logitsMb(1)}`,
          ]);
        }
      } finally {
        for (const runner of runners.values()) await runner.close();
      }
    }
    printTable(
      `LM head on every position vs the last only: SmolLM-135M-shaped random checkpoint, vocab ${REAL_VOCAB_SHAPE.vocab}, ${REAL_VOCAB_SHAPE.layers} layers in ${STAGES} stages, WASM in Node, 1 thread; median ms of ${o.repeats} runs after a warm-up run, interleaved (load average ${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)})`,
      ['graph', 'prompt', 'last stage ms, all', 'last only', 'ratio', 'first token ms, all', 'last only', 'ratio', 'logits MB'],
      rows,
    );
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
}
