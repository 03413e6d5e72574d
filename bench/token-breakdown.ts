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
import type { GraphForm } from '../shared/model/stage-graph-fused.js';
import { MESH_AHEAD } from '../shared/swarm/mesh-loop.js';
import { ensureStages } from '../signal-server/models/model-folder.js';
import { benchGraph } from './env.js';
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
  /** The stage graphs' form of the swarm and its reference; BENCH_GRAPH's (npm start's default, auto) where absent. */
  readonly graph?: GraphForm;
}

/** What one breakdown run measured (ms/token, medians). */
export interface Breakdown {
  readonly graph: GraphForm;
  readonly msPerToken: number;
  readonly computeMs: number;
  /** The reference runner on the swarm's own stages (the same graph form). */
  readonly refMs: number;
  /** The reference runner on plain stages (the reference form), run beside it where the swarm's form is another. */
  readonly plainRefMs: number;
}

/** Prints the legs and returns the swarm's ms/token, Σ compute and the reference's ms/token of this run. */
export async function benchTokenBreakdown(o: BreakdownOptions): Promise<Breakdown> {
  const stages = 3;
  const cache = mkdtempSync(join(tmpdir(), 'webswarm-bench-breakdown-'));
  try {
    const graph = benchGraph(o.modelDir, o.graph);
    const { dir } = await ensureStages(o.modelDir, { stages }, cache, { graph });
    const load0 = loadavg()[0] ?? 0;
    const ref = await referenceDecode(dir, PROMPT, WARMUP_TOKENS, o.tokens, o.repeats);
    let plainRefMs = ref.msPerToken;
    if (graph !== 'plain') {
      const plain = await ensureStages(o.modelDir, { stages }, cache, { graph: 'plain' });
      const plainRef = await referenceDecode(plain.dir, PROMPT, WARMUP_TOKENS, o.tokens, o.repeats);
      if (plainRef.tokens.join() !== ref.tokens.join())
        throw new Error(`${o.label}: the plain stages' greedy tokens differ from the ${graph} ones'`);
      plainRefMs = plainRef.msPerToken;
    }
    const setup = { r: 1, meshLoop: true, delayMs: 0, trace: true, tokens: o.tokens, repeats: o.repeats };
    const m = await measure({ modelDir: o.modelDir, stages, tokens: o.tokens, repeats: o.repeats, graph }, cache, setup, ref.tokens);
    const load1 = loadavg()[0] ?? 0;
    const plainNote = graph === 'plain' ? '' : ` (on plain stages ${plainRefMs.toFixed(2)})`;
    printTable(
      `one token of ${o.label}, ${stages} stages × r = 1 (WASM, ${graph} graphs, mesh loop, data path in the worker), stamped in the tabs (?trace=1): ms per decode step over ${o.repeats} runs × ${o.tokens} tokens (means add up to the step's); swarm ${m.msPerToken.toFixed(2)} ms/token (median), Σ compute ${m.computeMs.toFixed(2)}, reference runner ${ref.msPerToken.toFixed(2)}${plainNote}; load average ${load0.toFixed(1)} → ${load1.toFixed(1)}`,
      ['leg', 'mean ms', 'of the step', 'median ms', 'floor ms'],
      meshStepRows(m.traced, stages, o.floorOf),
    );
    printTable(
      `the coordinator beside the loop, the same run (overlapping the legs above; the loop may run ${MESH_AHEAD} steps past the last token the coordinator accepted)`,
      ['leg', 'mean ms', 'median ms'],
      coordinatorRows(m.traced, stages),
    );
    return { graph, msPerToken: m.msPerToken, computeMs: m.computeMs, refMs: ref.msPerToken, plainRefMs };
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
}
