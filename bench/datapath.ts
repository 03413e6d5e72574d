/**
 * The volunteer's data path on the tab's main thread against in the compute
 * worker (?datapath=main|worker, web/volunteer/worker-path.ts), side by side
 * in one run: austen-2m (or BENCH_MODEL) in 3 stages × r = 1 on WASM, with
 * the mesh loop (the default) and without (every token through the
 * coordinator), each setup main then worker; the tokens are checked equal to
 * the reference runner's every run. Then where a step's time goes on each
 * path (loop off, stamped by the tabs: ?trace=1).
 *
 *   node --import tsx bench/datapath.ts (after npm run build)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_MODEL, modelDir } from '../signal-server/defaults.js';
import { ensureStages } from '../signal-server/models/model-folder.js';
import { benchGraph } from './env.js';
import { stepPathRows } from './step-path.js';
import { type Measured, measure, referenceDecode, type SwarmBenchOptions } from './swarm.js';
import { printTable } from './table.js';

const PROMPT = 'It is a truth universally acknowledged, that a single man in possession of a good fortune';
const WARMUP_TOKENS = 128;

export async function benchDataPath(o: SwarmBenchOptions): Promise<void> {
  const cache = mkdtempSync(join(tmpdir(), 'webswarm-bench-datapath-'));
  try {
    const graph = benchGraph(o.modelDir, o.graph);
    const { dir, manifest } = await ensureStages(o.modelDir, { stages: o.stages }, cache, { graph });
    const load0 = loadavg()[0] ?? 0;
    const { msPerToken: ref, tokens: expected } = await referenceDecode(dir, PROMPT, WARMUP_TOKENS, o.tokens, o.repeats);
    const base = { r: 1, delayMs: 0, tokens: o.tokens, repeats: o.repeats };
    const runs: { label: string; loop: boolean; path: 'main' | 'worker'; m: Measured }[] = [];
    for (const loop of [true, false])
      for (const path of ['main', 'worker'] as const)
        runs.push({
          label: `${loop ? 'mesh loop' : 'MESH_LOOP=off'}, ${path}`,
          loop,
          path,
          m: await measure(o, cache, { ...base, meshLoop: loop, trace: !loop, dataPath: path }, expected),
        });
    const load1 = loadavg()[0] ?? 0;
    const mainOf = (loop: boolean) => runs.find((x) => x.loop === loop && x.path === 'main')?.m.msPerToken ?? Number.NaN;
    printTable(
      `data path: main thread vs compute worker, ${manifest.modelId}, ${o.stages} stages × r = 1 (WASM, ${graph} graphs), greedy, median of ${o.repeats} runs × ${o.tokens} tokens after ${WARMUP_TOKENS} warm-up tokens, tokens checked equal to the reference every run; load average ${load0.toFixed(1)} → ${load1.toFixed(1)}`,
      ['setup', 'ms/token', 'compute ms', '× reference', 'worker ÷ main'],
      [
        ['reference runner (1 process)', ref.toFixed(2), '—', '1.0', '—'],
        ...runs.map((x) => [
          x.label,
          x.m.msPerToken.toFixed(2),
          x.m.computeMs.toFixed(2),
          (x.m.msPerToken / ref).toFixed(1),
          (x.m.msPerToken / mainOf(x.loop)).toFixed(2),
        ]),
      ],
    );
    for (const x of runs.filter((r) => !r.loop))
      printTable(
        `a token's path with the data path on the ${x.path === 'main' ? 'main thread' : 'compute worker'}, MESH_LOOP=off (stamped in the tabs, ?trace=1): ms per decode step over ${o.repeats} runs × ${o.tokens} tokens`,
        ['leg', 'mean ms', 'of the step', 'median ms'],
        stepPathRows(x.m.traced, o.stages),
      );
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
}

const isMain = process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'));
if (isMain) {
  await benchDataPath({
    modelDir: modelDir(process.env.BENCH_MODEL ?? DEFAULT_MODEL),
    stages: 3,
    tokens: Number(process.env.BENCH_TOKENS ?? 64),
    repeats: Number(process.env.BENCH_REPEATS ?? 5),
  });
}
