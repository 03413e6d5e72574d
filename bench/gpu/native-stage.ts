/**
 * Where a WebGPU stage step's time goes, on onnxruntime-node's WebGPU provider
 * (the kernels of a volunteer's onnxruntime-web): one middle stage of a fused
 * stage folder, fed random hidden states a position at a time, in sessions
 * that differ in one option each, side by side in one run:
 *
 * - volunteer:     a volunteer's options (KV on the GPU, hidden states read back)
 *                  on the graph a WebGPU volunteer loads (without new.*: stageGraphFor);
 * - with new.*:    the same on the stage file as built: its new.* outputs' nodes
 *                  (two GatherElements a layer) run at each step, not fetched;
 * - no validation, no robustness, neither: the same with the provider's
 *                  validationMode disabled (what onnxruntime and Dawn check of
 *                  each call), Dawn's robust buffer access off (bounds checks
 *                  in every shader), or both;
 * - hidden on GPU: the hidden states left on the GPU too (the step without its
 *                  read back: what the read back's wait for the GPU costs);
 * - new.* read back: every output fetched, the fused form's new.* too (20 on a
 *                  10-layer stage), which a volunteer does not fetch: each is
 *                  read back to the host, so the step shows what read backs cost;
 * - profiled:      a volunteer's options with onnxruntime's profiler, whose
 *                  WebGPU events carry each kernel's GPU time (timestamp queries):
 *                  GPU time against the step's wall time.
 *
 *   node --import tsx bench/gpu/native-stage.ts [stage folder] [stage index]
 *   (default: BENCH_GPU_MODEL, or the seeded SmolLM-135M-shaped checkpoint of
 *   bench:gpu, cut into 3 fused stages of BENCH_GPU_WEIGHTS; stage 1). STEPS (40),
 *   VARIANTS (the sessions beside the volunteer's, by name; default all). The profile is
 *   written to $OUT (or the working directory).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import type * as Ort from 'onnxruntime-web';
import { stageFetches, stageGraphFor, stageSessionOptions } from '../../shared/model/session-options.js';
import { STAGE_IO } from '../../shared/model/stage-graph.js';
import { median, printTable } from '../table.js';
import { middleStage, positionFeeds, seededUniform, type TensorOf } from './common.js';
import { type ProfileEvent, printProfile, summarizeProfile } from './profile.js';

const require = createRequire(join(resolve('bench/gpu'), 'package.json'));
const ort = require('onnxruntime-node') as typeof Ort;
const STEPS = Number(process.env.STEPS ?? 40);
const WARMUP = 3;
if (!Number.isInteger(STEPS) || STEPS <= WARMUP) throw new RangeError(`STEPS must be an integer above ${WARMUP}`);

const { dir, manifest, index: stageIndex, entry, file } = await middleStage();
/** The graph a WebGPU volunteer loads (without new.*: stageGraphFor); the whole file for the sessions with new.*. */
const bytes = stageGraphFor('webgpu', file);
const cfg = manifest.model;
const Tensor = ort.Tensor as unknown as TensorOf<Ort.Tensor>;
const H = cfg.hiddenSize;
const layers = Array.from({ length: entry.layers.end - entry.layers.start }, (_, i) => entry.layers.start + i);
const kvNames = layers.flatMap((l) => [
  [STAGE_IO.pastKey(l), STAGE_IO.presentKey(l)] as const,
  [STAGE_IO.pastValue(l), STAGE_IO.presentValue(l)] as const,
]);
const out = process.env.OUT ?? '.';
const volunteer = stageSessionOptions('webgpu', entry) as Ort.InferenceSession.SessionOptions;
const allOnGpu = Object.fromEntries(entry.outputs.map((o) => [o.name, 'gpu-buffer' as const]));
/** What a volunteer fetches of a step: every output but the fused form's new.* (which only a captured path reads). */
const fetches = stageFetches(
  entry.outputs.map((o) => o.name),
  undefined,
);

/** A volunteer's options with options of onnxruntime-node's WebGPU provider. */
function provider(o: { validationMode?: 'disabled'; enableRobustness?: boolean }): Ort.InferenceSession.SessionOptions {
  return { ...volunteer, executionProviders: [{ name: 'webgpu', ...o } as Ort.InferenceSession.ExecutionProviderConfig] };
}

type Variant =
  | 'volunteer'
  | 'with new.*'
  | 'no validation'
  | 'no robustness'
  | 'neither'
  | 'hidden on GPU'
  | 'new.* read back'
  | 'profiled';
const ALL: readonly Variant[] = [
  'volunteer',
  'with new.*',
  'no validation',
  'no robustness',
  'neither',
  'hidden on GPU',
  'new.* read back',
  'profiled',
];
/** The sessions on the stage file as built (new.* computed); the others load a volunteer's graph. */
const WHOLE_FILE: readonly Variant[] = ['with new.*', 'new.* read back'];
/** VARIANTS: some of them, by name, separated by commas (volunteer always runs: the others are compared with it). */
const VARIANTS: readonly Variant[] = ALL.filter(
  (v) => v === 'volunteer' || process.env.VARIANTS === undefined || process.env.VARIANTS.split(',').includes(v),
);
const options: Record<Variant, Ort.InferenceSession.SessionOptions> = {
  volunteer,
  'with new.*': volunteer,
  'no validation': provider({ validationMode: 'disabled' }),
  'no robustness': provider({ enableRobustness: false }),
  neither: provider({ validationMode: 'disabled', enableRobustness: false }),
  'hidden on GPU': { ...volunteer, preferredOutputLocation: allOnGpu },
  'new.* read back': volunteer,
  profiled: {
    ...volunteer,
    enableProfiling: true,
    profileFilePrefix: join(out, 'native-stage-profile'),
  } as Ort.InferenceSession.SessionOptions,
};

interface Run {
  session: Ort.InferenceSession;
  past: Record<string, Ort.Tensor>;
  run: number[];
  step: number[];
  worst: number;
}
const runs = new Map<Variant, Run>();
for (const v of VARIANTS) {
  const session = await ort.InferenceSession.create(WHOLE_FILE.includes(v) ? file : bytes, options[v]);
  const past: Record<string, Ort.Tensor> = {};
  for (const [p] of kvNames) past[p] = new ort.Tensor('float32', new Float32Array(0), [1, cfg.numKvHeads, 0, cfg.headDim]);
  runs.set(v, { session, past, run: [], step: [], worst: 0 });
}

const random = seededUniform(7);
for (let position = 0; position < STEPS; position++) {
  const x = Float32Array.from({ length: H }, random);
  let want: Float32Array | null = null;
  // Each step in another order, so that no session always follows the same one (the GPU work a step leaves queued).
  const turn = VARIANTS.map((_, i) => VARIANTS[(i + position) % VARIANTS.length] as Variant);
  for (const v of turn) {
    const r = runs.get(v) as Run;
    const t0 = performance.now();
    const o = await r.session.run(positionFeeds(Tensor, x, position, r.past), v === 'new.* read back' ? r.session.outputNames : fetches);
    const runMs = performance.now() - t0;
    // Left on the GPU: not read (onnxruntime-node reads no WebGPU output back), so not compared.
    if (v !== 'hidden on GPU') {
      const hidden = (await (o[STAGE_IO.hiddenOut] as Ort.Tensor).getData()) as Float32Array;
      if (want === null) want = hidden;
      for (let i = 0; i < H; i++) r.worst = Math.max(r.worst, Math.abs((hidden[i] as number) - (want[i] as number)));
    }
    const stepMs = performance.now() - t0;
    for (const t of Object.values(r.past)) t.dispose();
    for (const [name, t] of Object.entries(o)) if (!name.startsWith('present.')) t.dispose();
    r.past = {};
    for (const [p, present] of kvNames) r.past[p] = o[present] as Ort.Tensor;
    if (position >= WARMUP) {
      r.run.push(runMs);
      r.step.push(stepMs);
    }
  }
}

// The profile: onnxruntime's events for every run of the profiled session; the WebGPU provider adds each kernel's GPU time.
const profiled = runs.get('profiled');
let profile: { file: string; events: ProfileEvent[] } | null = null;
if (profiled !== undefined) {
  await profiled.session.endProfiling();
  // onnxruntime names the file after the prefix and the time it began.
  const written = readdirSync(out)
    .filter((f) => f.startsWith('native-stage-profile_') && f.endsWith('.json'))
    .map((f) => join(out, f))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
  if (written === undefined) throw new Error(`onnxruntime wrote no profile into ${out}`);
  profile = { file: written, events: JSON.parse(readFileSync(written, 'utf8')) as ProfileEvent[] };
}
printTable(
  `${dir} stage ${stageIndex} (${layers.length} layers, hidden ${H}) on onnxruntime-node's WebGPU provider; ${STEPS - WARMUP} steps after ${WARMUP}, positions 0..${STEPS - 1}; sessions run in turn at each step, starting one later at the next`,
  ['session', 'session.run ms', 'step ms (hidden read back)', 'max |diff| from the first read'],
  VARIANTS.map((v) => {
    const r = runs.get(v) as Run;
    return [
      v,
      median(r.run).toFixed(2),
      v === 'hidden on GPU' ? '—' : median(r.step).toFixed(2),
      v === 'hidden on GPU' ? '—' : r.worst.toExponential(1),
    ];
  }),
);
if (profile !== null)
  printProfile(`the profiled session (${profile.events.length} events in ${profile.file})`, summarizeProfile(profile.events, WARMUP));
process.exit(0);
