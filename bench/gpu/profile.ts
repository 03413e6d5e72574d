/**
 * onnxruntime's profile of a session (enableProfiling), read per run: its
 * WebGPU provider writes each kernel's GPU time (timestamp queries) as an
 * event of category Api, and each node's CPU time as one of category Node;
 * every run is a Session event named model_run. Each run has the same nodes,
 * so a run's Api and Node events are the next equal share of them in time
 * order (their clocks need not match the run's).
 *
 *   node --import tsx bench/gpu/profile.ts <profile.json> [warm-up runs, default 3]
 *   prints the medians over the runs after the warm-up, and the time by operator.
 */
import { readFileSync } from 'node:fs';
import { median, printTable } from '../table.js';

export interface ProfileEvent {
  readonly cat?: string;
  readonly name?: string;
  readonly ts?: number;
  readonly dur?: number;
  readonly args?: Record<string, unknown>;
}

/** Medians, in ms, over the runs after `warmup`. */
export interface ProfileSummary {
  readonly runs: number;
  /** The run as the session timed it (model_run). */
  readonly runMs: number;
  /** The sequential executor's part of it (SequentialExecutor::Execute): the nodes' dispatch. */
  readonly executeMs: number;
  /** The nodes' CPU time (Node events). */
  readonly cpuNodeMs: number;
  /** The kernels' GPU time (Api events): 0 where the provider wrote none. */
  readonly gpuKernelMs: number;
  /** µs a run by category and operator, every run included, the largest first. */
  readonly byOperator: readonly { readonly key: string; readonly usPerRun: number; readonly eventsPerRun: number }[];
}

const timed = (e: ProfileEvent): e is ProfileEvent & { ts: number; dur: number } => typeof e.ts === 'number' && typeof e.dur === 'number';

/** The events of category `cat`, in time order, cut into `runs` equal shares; null where they do not divide evenly. */
function perRun(events: readonly ProfileEvent[], cat: string, runs: number): number[] | null {
  const of = events.filter((e) => e.cat === cat && timed(e)).sort((a, b) => (a.ts as number) - (b.ts as number));
  if (of.length % runs !== 0) return null;
  const n = of.length / runs;
  return Array.from({ length: runs }, (_, r) => of.slice(r * n, (r + 1) * n).reduce((s, e) => s + (e.dur as number), 0) / 1000);
}

export function summarizeProfile(events: readonly ProfileEvent[], warmup: number): ProfileSummary {
  const session = (name: string) =>
    events
      .filter((e) => e.cat === 'Session' && e.name === name && timed(e))
      .sort((a, b) => (a.ts as number) - (b.ts as number))
      .map((e) => (e.dur as number) / 1000);
  const runs = session('model_run');
  if (runs.length <= warmup) throw new RangeError(`the profile has ${runs.length} runs, not more than the ${warmup} of warm-up`);
  const after = (xs: readonly number[] | null) => (xs === null || xs.length === 0 ? Number.NaN : median(xs.slice(warmup)));
  const byKind = new Map<string, { us: number; n: number }>();
  for (const e of events) {
    if (!timed(e)) continue;
    const op = typeof e.args?.op_name === 'string' ? e.args.op_name : (e.name ?? '').replace(/_[^_]*$/, '');
    const key = `${e.cat ?? '?'} ${op}`;
    const k = byKind.get(key) ?? { us: 0, n: 0 };
    k.us += e.dur;
    k.n++;
    byKind.set(key, k);
  }
  const gpu = perRun(events, 'Api', runs.length);
  return {
    runs: runs.length - warmup,
    runMs: after(runs),
    executeMs: after(session('SequentialExecutor::Execute')),
    cpuNodeMs: after(perRun(events, 'Node', runs.length)),
    gpuKernelMs: gpu === null || gpu.every((x) => x === 0) ? 0 : after(gpu),
    byOperator: [...byKind.entries()]
      .sort((a, b) => b[1].us - a[1].us)
      .map(([key, { us, n }]) => ({ key, usPerRun: us / runs.length, eventsPerRun: n / runs.length })),
  };
}

export function printProfile(where: string, s: ProfileSummary): void {
  printTable(
    `${where}: medians over ${s.runs} runs after the warm-up, ms`,
    ['run (model_run)', 'dispatch (Execute)', "nodes' CPU time", "kernels' GPU time"],
    [[s.runMs, s.executeMs, s.cpuNodeMs, s.gpuKernelMs].map((x) => x.toFixed(2))],
  );
  printTable(
    'by category and operator, every run included',
    ['category operator', 'µs a run', 'events a run'],
    s.byOperator.slice(0, 30).map((o) => [o.key, o.usPerRun.toFixed(1), o.eventsPerRun.toFixed(1)]),
  );
}

if (process.argv[1]?.endsWith('profile.ts')) {
  const file = process.argv[2];
  if (file === undefined) throw new RangeError('usage: bench/gpu/profile.ts <profile.json> [warm-up runs]');
  const warmup = Number(process.argv[3] ?? 3);
  printProfile(file, summarizeProfile(JSON.parse(readFileSync(file, 'utf8')) as ProfileEvent[], warmup));
}
