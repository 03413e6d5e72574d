/**
 * One token of the 3-tab swarm against the floor: austen-2m (or another
 * model), 3 stages × r = 1 on WASM with the mesh loop (the default) and the
 * data path in the worker (the default), every tab stamping its steps
 * (?trace=1), the tokens checked equal to the reference runner's every run;
 * each data-channel hop beside its floor (bench/hop-floor.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { MESH_AHEAD } from '../shared/swarm/mesh-loop.js';
import { ensureStages } from '../signal-server/models/model-folder.js';
import { coordinatorRows, meshStepRows } from './step-path.js';
import { measure, referenceDecode } from './swarm.js';
import { printTable } from './table.js';

const PROMPT = 'It is a truth universally acknowledged, that a single man in possession of a good fortune';
const WARMUP_TOKENS = 128;

export interface BreakdownOptions {
  readonly label: string;
  readonly modelDir: string;
  readonly tokens: number;
  readonly repeats: number;
  /** A hop's one-way floor in ms, by the stages it joins. */
  readonly floorOf: (from: number, to: number) => number;
}

/** Prints the legs and returns the swarm's ms/token, Σ compute and the reference's ms/token of this run. */
export async function benchTokenBreakdown(o: BreakdownOptions): Promise<{ msPerToken: number; computeMs: number; refMs: number }> {
  const stages = 3;
  const cache = mkdtempSync(join(tmpdir(), 'webswarm-bench-breakdown-'));
  try {
    const { dir } = await ensureStages(o.modelDir, { stages }, cache);
    const load0 = loadavg()[0] ?? 0;
    const ref = await referenceDecode(dir, PROMPT, WARMUP_TOKENS, o.tokens, o.repeats);
    const setup = { r: 1, meshLoop: true, delayMs: 0, trace: true, tokens: o.tokens, repeats: o.repeats };
    const m = await measure({ modelDir: o.modelDir, stages, tokens: o.tokens, repeats: o.repeats }, cache, setup, ref.tokens);
    const load1 = loadavg()[0] ?? 0;
    printTable(
      `one token of ${o.label}, ${stages} stages × r = 1 (WASM, mesh loop, data path in the worker), stamped in the tabs (?trace=1): ms per decode step over ${o.repeats} runs × ${o.tokens} tokens (means add up to the step's); swarm ${m.msPerToken.toFixed(2)} ms/token (median), Σ compute ${m.computeMs.toFixed(2)}, reference runner ${ref.msPerToken.toFixed(2)}; load average ${load0.toFixed(1)} → ${load1.toFixed(1)}`,
      ['leg', 'mean ms', 'of the step', 'median ms', 'floor ms'],
      meshStepRows(m.traced, stages, o.floorOf),
    );
    printTable(
      `the coordinator beside the loop, the same run (overlapping the legs above; the loop may run ${MESH_AHEAD} steps past the last token the coordinator accepted)`,
      ['leg', 'mean ms', 'median ms'],
      coordinatorRows(m.traced, stages),
    );
    return { msPerToken: m.msPerToken, computeMs: m.computeMs, refMs: ref.msPerToken };
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
}
