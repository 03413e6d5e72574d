/**
 * What a WebGPU step costs the CPU, without a GPU: the volunteer's runtime
 * (onnxruntime-web's WebGPU build, a volunteer's session options) on Dawn's
 * null adapter (`backend=null`: every WebGPU call is made and validated, no
 * shader runs), so that a step's time is what building and submitting its
 * dispatches takes, the part a faster GPU does not cut (docs/stages.md: on an
 * H100 a stage's step is its CPU's dispatch). One middle stage, two sessions
 * in turn at each step (the order swapped every step), side by side:
 *
 * - volunteer:  the graph a WebGPU volunteer loads (without new.*: stageGraphFor);
 * - with new.*: the stage file as built, its new.* outputs' nodes run, not fetched.
 *
 * The outputs are not compared (the null adapter computes nothing; onnx-prune.test.ts
 * and e2e/gpu-kv-cache.spec.ts check that the graphs agree).
 *
 *   node --import tsx bench/gpu/dispatch-cost.ts [stage folder] [stage index]
 *   (default: the SmolLM-135M-shaped checkpoint of bench:gpu in 3 fused stages,
 *   stage 1; common.ts middleStage). STEPS (60). Needs bench/gpu's packages
 *   (npm run bench:gpu installs them).
 */
import type * as Ort from 'onnxruntime-web';
import { pruneOutputs } from '../../shared/model/onnx-prune.js';
import { isNewKvOutput, stageGraphFor, stageSessionOptions } from '../../shared/model/session-options.js';
import { STAGE_IO } from '../../shared/model/stage-graph.js';
import { median, printTable } from '../table.js';
import { middleStage, positionFeeds, seededUniform, type TensorOf } from './common.js';
import { installDawn } from './web-row.js';

const STEPS = Number(process.env.STEPS ?? 60);
const WARMUP = 3;
if (!Number.isInteger(STEPS) || STEPS <= WARMUP) throw new RangeError(`STEPS must be an integer above ${WARMUP}`);

const { dir, manifest, index, entry, file } = await middleStage();
installDawn(['backend=null']);
// Every compute dispatch counted (onnxruntime-web's WebGPU build dispatches directly, never indirectly).
let dispatches = 0;
const pass = (globalThis as unknown as { GPUComputePassEncoder: { prototype: GPUComputePassEncoder } }).GPUComputePassEncoder.prototype;
const dispatch = pass.dispatchWorkgroups;
pass.dispatchWorkgroups = function (this: GPUComputePassEncoder, x: number, y?: number, z?: number) {
  dispatches++;
  return dispatch.call(this, x, y, z);
};
const { runtimeFor } = await import('../../web/compute/ort-web.js');
const ort = await runtimeFor('webgpu');
const cfg = manifest.model;
const Tensor = ort.Tensor as unknown as TensorOf<Ort.Tensor>;
const H = cfg.hiddenSize;
const kv: [string, string][] = [];
for (let l = entry.layers.start; l < entry.layers.end; l++)
  kv.push([STAGE_IO.pastKey(l), STAGE_IO.presentKey(l)], [STAGE_IO.pastValue(l), STAGE_IO.presentValue(l)]);

interface Run {
  readonly session: Ort.InferenceSession;
  past: Record<string, Ort.Tensor>;
  readonly ms: number[];
  /** Dispatches of each timed step. */
  readonly dispatches: number[];
}
// What the cut costs at load (stageGraphFor), and what it drops: the quickest of 5.
const pruneMs: number[] = [];
for (let i = 0; i < 5; i++) {
  const t0 = performance.now();
  stageGraphFor('webgpu', file);
  pruneMs.push(performance.now() - t0);
}
const pruned = pruneOutputs(file, isNewKvOutput);
const graphs = { volunteer: pruned.model, 'with new.*': file };
const runs = new Map<string, Run>();
for (const [name, bytes] of Object.entries(graphs)) {
  const session = await ort.InferenceSession.create(bytes, stageSessionOptions('webgpu', entry) as Ort.InferenceSession.SessionOptions);
  const past: Record<string, Ort.Tensor> = {};
  for (const [p] of kv) past[p] = new ort.Tensor('float32', new Float32Array(0), [1, cfg.numKvHeads, 0, cfg.headDim]);
  runs.set(name, { session, past, ms: [], dispatches: [] });
}

const random = seededUniform(11);
for (let position = 0; position < STEPS; position++) {
  const x = Float32Array.from({ length: H }, random);
  const order = position % 2 === 0 ? [...runs.keys()] : [...runs.keys()].reverse();
  for (const name of order) {
    const r = runs.get(name) as Run;
    const t0 = performance.now();
    const before = dispatches;
    // What a volunteer fetches: every output but new.* (KV left on the GPU, the hidden state read back).
    const o = await r.session.run(positionFeeds(Tensor, x, position, r.past), [STAGE_IO.hiddenOut, ...kv.map(([, present]) => present)]);
    await (o[STAGE_IO.hiddenOut] as Ort.Tensor).getData();
    if (position >= WARMUP) {
      r.ms.push(performance.now() - t0);
      r.dispatches.push(dispatches - before);
    }
    for (const t of Object.values(r.past)) t.dispose();
    r.past = {};
    for (const [p, present] of kv) r.past[p] = o[present] as Ort.Tensor;
  }
}

const base = median((runs.get('volunteer') as Run).ms);
printTable(
  `${dir} stage ${index} (${entry.layers.end - entry.layers.start} layers) on onnxruntime-web's WebGPU build, Dawn's null adapter (the CPU's side of a step); ${STEPS - WARMUP} steps after ${WARMUP}, the sessions in turn`,
  ['graph', 'nodes dropped', 'dispatches a step (median)', 'ms a step (median)', "÷ volunteer's"],
  [...runs.entries()].map(([name, r]) => [
    name,
    name === 'volunteer' ? String(pruned.nodes) : '0',
    String(median(r.dispatches)),
    median(r.ms).toFixed(2),
    (median(r.ms) / base).toFixed(2),
  ]),
);
process.stdout.write(
  `the cut at load: ${Math.min(...pruneMs).toFixed(1)} ms for ${(file.length / 1e6).toFixed(1)} MB (${pruned.outputs} outputs, ${pruned.nodes} nodes)\n`,
);
for (const r of runs.values()) await r.session.release();
process.exit(0);
