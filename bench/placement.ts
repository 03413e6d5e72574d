/**
 * What sizing stages to the volunteer costs the coordinator, measured side by
 * side in one run (medians of interleaved repeats): the partition planner on
 * 1 000 volunteers for 30 layers, with buffer limits (a third of them WebGPU
 * adapters too narrow for the embedding and the head) and without (sizes that
 * carry no largest buffer); and 10 000 joins placed by capacity (each checked
 * against the stages it can hold) and without (stage needs unknown).
 *
 *   npx tsx bench/placement.ts [repeats]    (default 5)
 */
import { loadavg } from 'node:os';
import { type ModelSizes, type PlannedVolunteer, planPartition } from '../signal-server/coordinator/partition-planner.js';
import { stagesOf } from '../signal-server/coordinator/placement.js';
import { Registry } from '../signal-server/coordinator/registry.js';
import { median, printTable } from './table.js';

const MB = 1_000_000;
const LAYERS = 30;
const WEIGHTS: ModelSizes = { layerBytes: new Array(LAYERS).fill(50 * MB), firstBytes: 100 * MB, lastBytes: 100 * MB };
const LIMITED: ModelSizes = {
  ...WEIGHTS,
  layerLargestBytes: new Array(LAYERS).fill(20 * MB),
  firstLargestBytes: 100 * MB,
  lastLargestBytes: 100 * MB,
};

function volunteers(n: number): PlannedVolunteer[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `v${i}`,
    memoryBytes: (200 + (i % 7) * 300) * MB,
    bufferLimitBytes: i % 3 === 0 ? 64 * MB : null,
    msPerLayer: 1 + (i % 5),
    stage: -1,
    client: `v${i}`,
  }));
}

function timePlan(sizes: ModelSizes, vs: readonly PlannedVolunteer[]): { ms: number; stages: number } {
  const t0 = performance.now();
  const p = planPartition({ sizes, volunteers: vs, redundancy: 3, current: null });
  return { ms: performance.now() - t0, stages: p.ok ? p.ranges.length : 0 };
}

function timeJoins(n: number, byCapacity: boolean): number {
  const r = new Registry('bench', 3, 3);
  const ranges = [
    { start: 0, end: 10 },
    { start: 10, end: 20 },
    { start: 20, end: 30 },
  ];
  r.setFits(byCapacity ? stagesOf(LIMITED, ranges) : null);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const narrow = i % 3 === 0;
    r.join(`v${i}`, narrow ? 'webgpu' : 'wasm', null, i, 2 ** 31, {
      bufferLimitBytes: narrow ? 64 * MB : null,
      keys: [`key:${i}`, `addr:10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`],
    });
  }
  return performance.now() - t0;
}

const repeats = Number(process.argv[2] ?? 5);
const vs = volunteers(1000);
const plan = { limited: [] as number[], blind: [] as number[] };
const joins = { capacity: [] as number[], blind: [] as number[] };
let stages = { limited: 0, blind: 0 };
for (let i = 0; i < repeats; i++) {
  const a = timePlan(LIMITED, vs);
  const b = timePlan(WEIGHTS, vs);
  plan.limited.push(a.ms);
  plan.blind.push(b.ms);
  stages = { limited: a.stages, blind: b.stages };
  joins.capacity.push(timeJoins(10_000, true));
  joins.blind.push(timeJoins(10_000, false));
}
const ms = (x: number) => `${x.toFixed(0)} ms`;
printTable(
  `Placement by capacity (medians of ${repeats}; load average ${loadavg()
    .map((x) => x.toFixed(1))
    .join(' / ')})`,
  ['what', 'with buffer limits / by capacity', 'without', 'ratio'],
  [
    [
      `plan 1 000 volunteers, 30 layers, r = 3 (stages ${stages.limited} vs ${stages.blind})`,
      ms(median(plan.limited)),
      ms(median(plan.blind)),
      `${(median(plan.limited) / median(plan.blind)).toFixed(2)}×`,
    ],
    [
      '10 000 joins, 3 stages',
      ms(median(joins.capacity)),
      ms(median(joins.blind)),
      `${(median(joins.capacity) / median(joins.blind)).toFixed(2)}×`,
    ],
  ],
);
