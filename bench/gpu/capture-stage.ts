/**
 * What graph capture removes from a step: one stage of a fused stage folder on
 * onnxruntime-web's WebGPU build in Node (Dawn's Node binding, as web-row.ts),
 * three sessions of the same graph side by side in one run, fed the same
 * random hidden states a position at a time:
 *
 * - reference: the worker's session options today (host inputs, KV fed back
 *   as it grows, its outputs read back);
 * - static:    no capture, but the captured path's buffers (inputs and a KV
 *   buffer of POSITIONS rows bound as past and present at once);
 * - captured:  the same with enableGraphCapture (captured-stages.ts's session).
 *
 * It prints, per session, the median ms of the main thread in session.run
 * (what capture removes: building each kernel's bind group and uniforms) and
 * of the whole step with its read back, and the largest difference of each
 * output from the reference's. On SwiftShader a step's time is SwiftShader's
 * compute on the CPU; session.run's is the CPU's driving of WebGPU.
 *
 *   node --import tsx bench/gpu/capture-stage.ts [stage folder] [stage index]
 *   (default: austen-2m's fused 3 stages in .cache/stages, stage 1; a middle
 *   stage: hidden states in and out). STEPS (24), POSITIONS (64).
 *   Without a GPU: VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json
 *   LD_LIBRARY_PATH=/usr/lib/chromium.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as Ort from 'onnxruntime-web';
import { parseManifest } from '../../shared/model/manifest.js';
import { capturedSessionOptions, stageGraphFor } from '../../shared/model/session-options.js';
import { STAGE_IO } from '../../shared/model/stage-graph.js';
import { FUSED_IO } from '../../shared/model/stage-graph-fused.js';
import { median, printTable } from '../table.js';
import { seededUniform } from './common.js';
import { installDawn } from './web-row.js';

const dir = process.argv[2] ?? '.cache/stages/austen-2m/r0-2_2-4_4-6-fused';
const stageIndex = Number(process.argv[3] ?? 1);
const STEPS = Number(process.env.STEPS ?? 24);
const POSITIONS = Number(process.env.POSITIONS ?? 64);
const WARMUP = 3;

installDawn();
const { ortGpuDevice, runtimeFor } = await import('../../web/compute/ort-web.js');
const ort = await runtimeFor('webgpu');
const manifest = parseManifest(join(dir, 'manifest.json'), JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')));
const entry = manifest.stages[stageIndex];
if (entry === undefined || stageIndex === 0 || stageIndex === manifest.stages.length - 1 || manifest.graph !== 'fused')
  throw new RangeError(`${dir} stage ${stageIndex}: a middle stage of a fused stage folder is needed`);
if (!Number.isInteger(STEPS) || STEPS <= WARMUP || !Number.isInteger(POSITIONS) || POSITIONS <= STEPS)
  throw new RangeError(`STEPS must exceed ${WARMUP} and POSITIONS must exceed STEPS`);
const bytes = stageGraphFor('webgpu', new Uint8Array(readFileSync(join(dir, entry.file))));
const cfg = manifest.model;
const H = cfg.hiddenSize;
const layers = Array.from({ length: entry.layers.end - entry.layers.start }, (_, i) => entry.layers.start + i);
const kvNames = layers.flatMap((l) => [
  [STAGE_IO.pastKey(l), STAGE_IO.presentKey(l)],
  [STAGE_IO.pastValue(l), STAGE_IO.presentValue(l)],
]);

const reference = await ort.InferenceSession.create(bytes, { executionProviders: ['webgpu'], graphOptimizationLevel: 'all' });
const gpu = await ortGpuDevice(ort);
if (gpu === null) throw new Error('onnxruntime-web created a WebGPU session but gave no GPUDevice');
const device: GPUDevice = gpu;
const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** A session fed and fetched through GPU buffers of its own, the KV cache one buffer of POSITIONS a layer. */
async function bound(capture: boolean) {
  const options = capture
    ? capturedSessionOptions()
    : { executionProviders: ['webgpu'], graphOptimizationLevel: 'all' as const, preferredOutputLocation: 'gpu-buffer' as const };
  const session = await ort.InferenceSession.create(bytes, options as Ort.InferenceSession.SessionOptions);
  const tensor = (dataType: 'float32' | 'int32', dims: number[]) => {
    const buffer = device.createBuffer({ size: Math.max(16, dims.reduce((a, b) => a * b, 1) * 4), usage: STORAGE });
    return { buffer, tensor: ort.Tensor.fromGpuBuffer(buffer, { dataType: dataType as 'float32', dims }) };
  };
  const input = tensor('float32', [1, 1, H]);
  const seqlens = tensor('int32', [1]);
  const total = tensor('int32', []);
  const output = tensor('float32', [1, 1, H]);
  const feeds: Record<string, Ort.Tensor> = {
    [STAGE_IO.hiddenIn]: input.tensor,
    [FUSED_IO.seqlensK]: seqlens.tensor,
    [FUSED_IO.totalSequenceLength]: total.tensor,
  };
  const fetches: Record<string, Ort.Tensor> = { [STAGE_IO.hiddenOut]: output.tensor };
  for (const [past, present] of kvNames) {
    const kv = tensor('float32', [1, cfg.numKvHeads, POSITIONS, cfg.headDim]);
    feeds[past as string] = kv.tensor;
    fetches[present as string] = kv.tensor;
  }
  const readback = device.createBuffer({ size: H * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  return async (x: Float32Array<ArrayBuffer>, position: number) => {
    device.queue.writeBuffer(input.buffer, 0, x);
    device.queue.writeBuffer(seqlens.buffer, 0, Int32Array.of(position));
    // Captured: the buffer's length (checked once, the rows' lengths are seqlens_k); not: the step's own.
    device.queue.writeBuffer(total.buffer, 0, Int32Array.of(capture ? POSITIONS : position + 1));
    const t0 = performance.now();
    await session.run(feeds, fetches);
    const runMs = performance.now() - t0;
    const e = device.createCommandEncoder();
    e.copyBufferToBuffer(output.buffer, 0, readback, 0, H * 4);
    device.queue.submit([e.finish()]);
    await readback.mapAsync(GPUMapMode.READ);
    const out = new Float32Array(readback.getMappedRange().slice(0));
    readback.unmap();
    return { out, runMs };
  };
}

const runs = { static: await bound(false), captured: await bound(true) };
const times = {
  reference: { run: [] as number[], step: [] as number[] },
  static: { run: [] as number[], step: [] as number[] },
  captured: { run: [] as number[], step: [] as number[] },
};
const worst = { static: 0, captured: 0 };
let past: Record<string, Ort.Tensor> = {};
for (const [p] of kvNames) past[p as string] = new ort.Tensor('float32', new Float32Array(0), [1, cfg.numKvHeads, 0, cfg.headDim]);
const random = seededUniform(7);
for (let position = 0; position < STEPS; position++) {
  const x = Float32Array.from({ length: H }, random);
  const t0 = performance.now();
  const out = await reference.run({
    [STAGE_IO.hiddenIn]: new ort.Tensor('float32', x, [1, 1, H]),
    [FUSED_IO.seqlensK]: new ort.Tensor('int32', Int32Array.of(position), [1]),
    [FUSED_IO.totalSequenceLength]: new ort.Tensor('int32', Int32Array.of(position + 1), []),
    ...past,
  });
  const tRun = performance.now() - t0;
  const want = (await (out[STAGE_IO.hiddenOut] as Ort.Tensor).getData()) as Float32Array;
  const tStep = performance.now() - t0;
  past = {};
  for (const [p, present] of kvNames) past[p as string] = out[present as string] as Ort.Tensor;
  if (position >= WARMUP) {
    times.reference.run.push(tRun);
    times.reference.step.push(tStep);
  }
  for (const name of ['static', 'captured'] as const) {
    const s0 = performance.now();
    const r = await runs[name](x, position);
    const stepMs = performance.now() - s0;
    let d = 0;
    for (let i = 0; i < H; i++) d = Math.max(d, Math.abs((r.out[i] as number) - (want[i] as number)));
    worst[name] = Math.max(worst[name], d);
    if (position >= WARMUP) {
      times[name].run.push(r.runMs);
      times[name].step.push(stepMs);
    }
  }
}
const base = median(times.captured.run);
printTable(
  `${dir} stage ${stageIndex} (${layers.length} layers, hidden ${H}) on onnxruntime-web's WebGPU build in Node; ${STEPS - WARMUP} steps after ${WARMUP}, KV buffers of ${POSITIONS} positions`,
  ['session', 'session.run ms (main thread)', '÷ captured', 'step ms (with read back)', 'max |diff| from reference'],
  (['reference', 'static', 'captured'] as const).map((name) => [
    name,
    median(times[name].run).toFixed(2),
    `${(median(times[name].run) / base).toFixed(1)}×`,
    median(times[name].step).toFixed(1),
    name === 'reference' ? '—' : worst[name].toExponential(1),
  ]),
);
process.exit(0);
