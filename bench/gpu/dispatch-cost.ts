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
// Every compute dispatch counted (onnxruntime-web's WebGPU build dispatches directly, never indirectly), and told
// by its kernel: the storage buffers its WGSL binds, in order (onnxruntime's C++ WebGPU provider labels no pipeline).
let dispatches = 0;
const gpu = globalThis as unknown as {
  GPUComputePassEncoder: { prototype: GPUComputePassEncoder };
  GPUDevice: { prototype: GPUDevice };
};
const pass = gpu.GPUComputePassEncoder.prototype;
const device = gpu.GPUDevice.prototype;
const wgslOf = new WeakMap<GPUShaderModule, string>();
const kernelOf = new WeakMap<GPUComputePipeline, string>();
const makeModule = device.createShaderModule;
device.createShaderModule = function (this: GPUDevice, d: GPUShaderModuleDescriptor) {
  const m = makeModule.call(this, d);
  wgslOf.set(m, d.code);
  return m;
};
/** "in, in → out, out": the storage buffers a kernel's WGSL reads and writes. */
function bindings(wgsl: string): string {
  const of = (access: string) => [...wgsl.matchAll(new RegExp(`var<storage,\\s*${access}>\\s+(\\w+)`, 'g'))].map((m) => m[1]).join(', ');
  return `${of('read')} → ${of('read_write')}`;
}
const makePipeline = device.createComputePipeline;
device.createComputePipeline = function (this: GPUDevice, d: GPUComputePipelineDescriptor) {
  const p = makePipeline.call(this, d);
  kernelOf.set(p, bindings(wgslOf.get(d.compute.module) ?? ''));
  return p;
};
const makePipelineAsync = device.createComputePipelineAsync;
device.createComputePipelineAsync = async function (this: GPUDevice, d: GPUComputePipelineDescriptor) {
  const p = await makePipelineAsync.call(this, d);
  kernelOf.set(p, bindings(wgslOf.get(d.compute.module) ?? ''));
  return p;
};
let kernel = '?';
const setPipeline = pass.setPipeline;
pass.setPipeline = function (this: GPUComputePassEncoder, p: GPUComputePipeline) {
  kernel = kernelOf.get(p) ?? '?';
  return setPipeline.call(this, p);
};
/** The volunteer's graph's timed steps: dispatches by kernel, all steps together; null while another runs. */
let byKernel: Map<string, number> | null = null;
const volunteerKernels = new Map<string, number>();
const dispatch = pass.dispatchWorkgroups;
pass.dispatchWorkgroups = function (this: GPUComputePassEncoder, x: number, y?: number, z?: number) {
  dispatches++;
  if (byKernel !== null) byKernel.set(kernel, (byKernel.get(kernel) ?? 0) + 1);
  return dispatch.call(this, x, y, z);
};
/** What each kernel (as bindings names it) is, for the table: onnxruntime's WebGPU kernels of the fused form. */
const KERNELS: Record<string, string> = {
  'a, b → output': 'MatMul',
  'x, skip, gamma → output, input_skip_bias_sum': 'SkipSimplifiedLayerNormalization',
  'x, scale → y': 'SimplifiedLayerNormalization',
  'packed_qkv, seqlens, cos_cache, sin_cache → query, key, val': 'GroupQueryAttention: q, k, v split, rotary',
  'key, value, seqlen_k, past_key, past_value → present_key, present_value': 'GroupQueryAttention: KV copied in',
  'key, value, seqlen_k → present_key, present_value': 'GroupQueryAttention: KV copied in (no past)',
  'q, present_key, present_value, seqlens_k → out_split_vx, metadata': 'GroupQueryAttention: flash decode',
  'input, metadata, seqlens_k → output': 'GroupQueryAttention: flash decode, reduced',
  'x → y': 'unary (QuickGelu: Sigmoid·Mul fused)',
  'input_a, input_b → output': 'binary (Mul, Add)',
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
    byKernel = name === 'volunteer' && position >= WARMUP ? volunteerKernels : null;
    const o = await r.session.run(positionFeeds(Tensor, x, position, r.past), [STAGE_IO.hiddenOut, ...kv.map(([, present]) => present)]);
    await (o[STAGE_IO.hiddenOut] as Ort.Tensor).getData();
    byKernel = null;
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
const timed = STEPS - WARMUP;
printTable(
  "The volunteer's step by kernel (told by the storage buffers its WGSL binds)",
  ['kernel', 'bindings', 'dispatches a step'],
  [...volunteerKernels.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => [KERNELS[k] ?? '?', k, (n / timed).toFixed(n % timed === 0 ? 0 : 2)]),
);
process.stdout.write(
  `the cut at load: ${Math.min(...pruneMs).toFixed(1)} ms for ${(file.length / 1e6).toFixed(1)} MB (${pruned.outputs} outputs, ${pruned.nodes} nodes)\n`,
);
for (const r of runs.values()) await r.session.release();
process.exit(0);
