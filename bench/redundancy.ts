/**
 * Where redundancy's CPU goes (issue #11: r = 3 ≤ 3.3 × the CPU time per token
 * of r = 1): the swarm at r = 1 and r = 3, mesh loop off and on, and r = 3 with
 * each fan-out (FANOUT=all: every sender to every receiver; majority: a
 * majority's copies by the rotation, the rest on request), side by side in one run, each setup's CPU per token split by process kind (this process:
 * server and coordinator; Chromium's renderers, browser, GPU and network
 * processes) and its messages per token (Socket.IO events as the server
 * counts them, data-channel messages as the tabs' getStats count them).
 *
 *   node --import tsx bench/redundancy.ts (after npm run build)
 *   BENCH_MODEL (default austen-2m; smollm-135m-shaped: the seeded random checkpoint of bench/distribution.ts),
 *   BENCH_TOKENS (default 48), BENCH_REPEATS (runs per setup, default 3)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_MODEL, modelDir } from '../signal-server/defaults.js';
import { ensureStages } from '../signal-server/models/model-folder.js';
import { ensureRandomCheckpoint, SMOLLM_135M_SHAPE } from '../testing/random-checkpoint.js';
import { PROCESS_KINDS } from './cpu.js';
import { SMOLLM_SHAPED_DIR, SMOLLM_SHAPED_SEED } from './distribution.js';
import { benchGraph } from './env.js';
import { type Measured, measure, referenceDecode, type SwarmBenchOptions } from './swarm.js';
import { median, printTable } from './table.js';

/** BENCH_MODEL's name for the SmolLM-135M-shaped checkpoint, a stage of which computes for ~8 ms a token. */
const SMOLLM_SHAPED = 'smollm-135m-shaped';

/** How long each swarm's CPU is measured while it serves nothing, after its run. */
const IDLE_MS = 3_000;

const PROMPT = 'It is a truth universally acknowledged, that a single man in possession of a good fortune';

export interface RedundancyRow {
  readonly r: number;
  readonly meshLoop: boolean;
  readonly fanout: 'all' | 'majority';
  readonly runs: readonly Measured[];
}

const loop = (on: boolean) => (on ? 'mesh loop' : 'MESH_LOOP=off');
const label = (x: RedundancyRow) => `r = ${x.r}, ${loop(x.meshLoop)}${x.r > 1 ? `, FANOUT=${x.fanout}` : ''}`;
const med = (rows: readonly Measured[], f: (m: Measured) => number) => median(rows.map(f));

/** Prints the CPU split and the message counts of each setup, each r = 3 against the r = 1 of the same loop. */
export function printRedundancy(title: string, rows: readonly RedundancyRow[]): void {
  const base = (on: boolean) => rows.find((x) => x.r === 1 && x.meshLoop === on);
  const kinds = PROCESS_KINDS.filter((k) => rows.some((x) => x.runs.some((m) => (m.cpuByKind.get(k) ?? 0) > 0.05)));
  printTable(
    `${title}: CPU ms per token by process (median over runs), and r = 3 ÷ r = 1 of the same loop`,
    ['setup', 'runs', 'total', ...kinds, 'total × r = 1', 'each run × r = 1', 'wall ms/token', 'idle CPU ms/s', 'idle × wall'],
    rows.map((x) => {
      const b = base(x.meshLoop);
      const total = med(x.runs, (m) => m.cpuMsPerToken);
      const bTotal = b === undefined ? Number.NaN : med(b.runs, (m) => m.cpuMsPerToken);
      return [
        label(x),
        String(x.runs.length),
        total.toFixed(1),
        ...kinds.map((k) => {
          const v = med(x.runs, (m) => m.cpuByKind.get(k) ?? 0);
          const bv = b === undefined ? Number.NaN : med(b.runs, (m) => m.cpuByKind.get(k) ?? 0);
          return x.r === 1 ? v.toFixed(1) : `${v.toFixed(1)} (${(v / bv).toFixed(1)} ×)`;
        }),
        (total / bTotal).toFixed(2),
        x.runs.map((m, i) => (m.cpuMsPerToken / (b?.runs[i]?.cpuMsPerToken ?? Number.NaN)).toFixed(2)).join(' '),
        med(x.runs, (m) => m.msPerToken).toFixed(1),
        med(x.runs, (m) => m.idleCpuMsPerS).toFixed(1),
        // What the swarm would spend per token on doing nothing: its share of the total is paid whatever the votes cost.
        med(x.runs, (m) => (m.idleCpuMsPerS * m.msPerToken) / 1000).toFixed(1),
      ];
    }),
  );
  const events = [...new Set(rows.flatMap((x) => x.runs.flatMap((m) => [...m.socketEvents.keys()])))].sort();
  printTable(
    `${title}: messages per token (Socket.IO events counted by the server, "in" from tabs, "out" to them; data-channel messages every tab sent), median over runs`,
    ['setup', 'data channel', 'frames refused (tabs)', ...events],
    rows.map((x) => [
      label(x),
      med(x.runs, (m) => m.channelMessages).toFixed(1),
      med(x.runs, (m) => m.framesRejected).toFixed(2),
      ...events.map((e) => med(x.runs, (m) => m.socketEvents.get(e) ?? 0).toFixed(2)),
    ]),
  );
}

/** r = 1 and r = 3, loop off and on, in turn, `repeats` times (each run a fresh swarm). */
export async function benchRedundancy(o: SwarmBenchOptions): Promise<RedundancyRow[]> {
  const cache = mkdtempSync(join(tmpdir(), 'webswarm-bench-redundancy-'));
  try {
    const graph = benchGraph(o.modelDir, o.graph);
    const { dir, manifest } = await ensureStages(o.modelDir, { stages: o.stages }, cache, { graph });
    const { tokens: expected } = await referenceDecode(dir, PROMPT, 128, o.tokens, 1);
    const setups = [
      { r: 1, meshLoop: false, fanout: 'all' },
      { r: 3, meshLoop: false, fanout: 'all' },
      { r: 3, meshLoop: false, fanout: 'majority' },
      { r: 1, meshLoop: true, fanout: 'all' },
      { r: 3, meshLoop: true, fanout: 'all' },
      { r: 3, meshLoop: true, fanout: 'majority' },
    ] as const;
    const runs = setups.map(() => [] as Measured[]);
    const loads: number[] = [];
    // One run per swarm, the setups in turn: each run's r = 3 ÷ r = 1 pairs runs made close in time.
    for (let k = 0; k < o.repeats; k++) {
      for (const [i, s] of setups.entries()) {
        loads.push(loadavg()[0] as number);
        runs[i]?.push(await measure(o, cache, { ...s, delayMs: 0, trace: false, tokens: o.tokens, repeats: 1, idleMs: IDLE_MS }, expected));
      }
    }
    loads.push(loadavg()[0] as number);
    const rows = setups.map((s, i) => ({ ...s, runs: runs[i] ?? [] }));
    printRedundancy(
      `redundancy, ${manifest.modelId}, ${o.stages} stages (${graph} graphs), ${o.tokens} tokens a run, load average ${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)}`,
      rows,
    );
    return rows;
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const model = process.env.BENCH_MODEL ?? DEFAULT_MODEL;
  await benchRedundancy({
    modelDir: model === SMOLLM_SHAPED ? ensureRandomCheckpoint(SMOLLM_SHAPED_DIR, SMOLLM_135M_SHAPE, SMOLLM_SHAPED_SEED) : modelDir(model),
    stages: 3,
    tokens: Number(process.env.BENCH_TOKENS ?? 48),
    repeats: Number(process.env.BENCH_REPEATS ?? 3),
  });
}
