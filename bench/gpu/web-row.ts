/**
 * npm run bench:gpu's rows for the volunteer's own runtime: onnxruntime-web's
 * WebGPU build (web/compute/ort-web.ts's StageSessions, exactly as the
 * compute worker creates and runs them) in Node, on the GPU through Dawn's
 * Node binding (the `webgpu` package in bench/gpu), the caches kept by the
 * worker's CachingExecutor: one session alone, then `batch` sessions stepping
 * at once through the executor's batcher (the worker's path).
 */
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import type { StageManifest } from '../../shared/model/manifest.js';
import { CachingExecutor } from '../../shared/model/pipeline.js';
import type { CapturedExecutor } from '../../web/compute/captured-stages.js';
import { median } from '../table.js';
import { greedyForward } from './batch-rows.js';

/** The captured path (web/compute/captured-stages.ts) with a row for each of `slots` sessions, as the worker makes it. */
async function capturedExecutor(
  manifest: StageManifest,
  stages: readonly { index: number; bytes: ArrayBuffer }[],
  slots: number,
): Promise<CapturedExecutor> {
  const { CapturedExecutor: Captured } = await import('../../web/compute/captured-stages.js');
  // The alone decode uses session 0, the batch sessions 100…: one row more than the batch.
  const positions = process.env.BENCH_GPU_CAPTURE_POSITIONS;
  return Captured.forWebGpu(stages, manifest, {
    slots: slots + 1,
    ...(positions === undefined ? {} : { positions: Number(positions) }),
  });
}

/**
 * navigator.gpu from Dawn's Node binding, as a browser has it (Node 20 has no navigator). `dawn`: the binding's
 * options (`backend=null`: an adapter that computes nothing, so that a step's time is its CPU side alone).
 */
export function installDawn(dawn: readonly string[] = []): void {
  const require = createRequire(join(resolve('bench/gpu'), 'package.json'));
  const { create, globals } = require('webgpu') as { create: (o: string[]) => GPU; globals: Record<string, unknown> };
  Object.assign(globalThis, globals);
  Object.defineProperty(globalThis, 'navigator', { value: { gpu: create([...dawn]) }, configurable: true });
  // onnxruntime-web hands writeBuffer views of its shared WebAssembly memory, which dawn.node refuses ("Invalid
  // argument"): those are copied into an ordinary buffer first (PLATFORM.md). A browser takes them as they are, so the
  // copy is the harness's cost, not a volunteer's: only shared views are copied, into one scratch buffer kept between
  // calls (writeBuffer copies its data before it returns), so that the row measures as little of it as it can.
  const queue = (globals.GPUQueue as { prototype: GPUQueue }).prototype;
  const write = queue.writeBuffer;
  let scratch = new Uint8Array(1 << 16);
  queue.writeBuffer = function (this: GPUQueue, buffer: GPUBuffer, offset: number, data: BufferSource, dataOffset = 0, size?: number) {
    if (!ArrayBuffer.isView(data) || !(data.buffer instanceof SharedArrayBuffer))
      return write.call(this, buffer, offset, data, dataOffset, size);
    // dataOffset and size count elements of a typed array (bytes of a DataView).
    const unit = (data as { BYTES_PER_ELEMENT?: number }).BYTES_PER_ELEMENT ?? 1;
    const length = size === undefined ? data.byteLength - dataOffset * unit : size * unit;
    if (scratch.byteLength < length) scratch = new Uint8Array(Math.max(length, scratch.byteLength * 2));
    scratch.set(new Uint8Array(data.buffer, data.byteOffset + dataOffset * unit, length));
    return write.call(this, buffer, offset, scratch, 0, length);
  } as GPUQueue['writeBuffer'];
}

export interface WebRowResult {
  readonly adapter: string | null;
  /** One session alone: median ms a token, and its greedy tokens. */
  readonly tokenMs: number;
  readonly tokens: number[];
  /** `batch` sessions at once through the worker's batcher: median ms of a step of all of them, and how many equal their prompt alone. */
  readonly batch: {
    readonly size: number;
    readonly stepMs: number;
    readonly rowsAsAlone: number;
    readonly batchedSteps: number;
    readonly steps: number;
  } | null;
}

/**
 * The worker's path on WebGPU: StageSessions over the stage files, a
 * CachingExecutor over them as worker.ts makes it (KV caches on the GPU), one
 * prompt alone and then `batch` prompts stepping at once.
 */
export async function webRuntimeRow(
  manifest: StageManifest,
  stages: readonly { index: number; bytes: ArrayBuffer }[],
  prompt: (k: number) => number[],
  tokens: number,
  warmup: number,
  batch: number,
  capture = false,
): Promise<WebRowResult> {
  installDawn();
  const { StageSessions } = await import('../../web/compute/ort-web.js');
  const { webgpuAdapter } = await import('../../web/compute/webgpu.js');
  const caches = capture
    ? await capturedExecutor(manifest, stages, Math.max(1, batch))
    : // As the compute worker makes it (worker.ts): the GPU caches of sessions that step together are batched.
      new CachingExecutor(manifest, (await StageSessions.create('webgpu', stages, manifest)).kvExecutor);
  const forward = greedyForward(manifest, caches);
  /** Decodes prompt k for warmup + n tokens; `times` gets each timed token's ms (after the warm-up). */
  const decode = async (k: number, n: number, times: number[] | null): Promise<number[]> => {
    const out = [await forward(k, prompt(k))];
    for (let i = 0; i < warmup + n; i++) {
      const t = performance.now();
      out.push(await forward(k, [out[out.length - 1] as number]));
      if (i >= warmup) times?.push(performance.now() - t);
    }
    caches.release(k);
    return out;
  };
  const aloneMs: number[] = [];
  const alone = await decode(0, tokens, aloneMs);
  let batched: WebRowResult['batch'] = null;
  if (batch > 1) {
    const before = caches.batching;
    const stepStarts: number[] = [];
    const rows = await Promise.all(
      Array.from({ length: batch }, async (_, k) => {
        const out = [await forward(100 + k, prompt(k))];
        for (let i = 0; i < warmup + tokens; i++) {
          if (k === 0) stepStarts.push(performance.now());
          out.push(await forward(100 + k, [out[out.length - 1] as number]));
        }
        caches.release(100 + k);
        return out;
      }),
    );
    stepStarts.push(performance.now());
    const after = caches.batching;
    const stepMs = stepStarts.slice(warmup + 1).map((t, i) => t - (stepStarts[warmup + i] as number));
    let rowsAsAlone = 0;
    for (const [k, row] of rows.entries()) {
      const own = k === 0 ? alone : await decode(k, tokens, null);
      if (own.join() === row.join()) rowsAsAlone++;
    }
    batched = {
      size: batch,
      stepMs: median(stepMs),
      rowsAsAlone,
      batchedSteps: after.batchedSteps - before.batchedSteps,
      steps: after.steps - before.steps,
    };
  }
  await caches.dispose();
  return { adapter: await webgpuAdapter(), tokenMs: median(aloneMs), tokens: alone, batch: batched };
}
