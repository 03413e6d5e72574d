/// <reference lib="webworker" />
// Runs stage sessions off the main thread. The handler is registered at once,
// before any await, so that no message is lost while the module starts.
import type { StageManifest } from '../../shared/model/manifest.js';
import { CachingExecutor, type Feeds, ownBuffer } from '../../shared/model/pipeline.js';
import { LOGITS_FROM_ALL, LOGITS_FROM_LAST } from '../../shared/model/stage-graph.js';
import { CapturedExecutor } from './captured-stages.js';
import { DeviceWatch } from './device-watch.js';
import { NO_GPU_KV } from './gpu-kv.js';
import type { FromWorker, ToWorker } from './messages.js';
import { ComputeError, ortBuildFor, StageSessions } from './ort-web.js';
import { buildVerifiedStage } from './stage-build.js';
import { keepStage, stageCacheStore } from './stage-cache.js';
import type { TensorStore } from './tensor-store.js';
import { webgpuAdapter } from './webgpu.js';
import { WorkerReplica } from './worker-replica.js';

const scope = self as unknown as DedicatedWorkerGlobalScope;
let sessions: StageSessions | null = null;
/** Each session's KV caches, here where the compute is (see CachingExecutor; CapturedExecutor with graph capture). */
let caches: CachingExecutor | CapturedExecutor | null = null;
/** The model the loaded stages belong to. */
let manifest: StageManifest | null = null;
/** The GPU device of the stages (WebGPU): its loss is told to the page at once. */
const device = new DeviceWatch();
/** The data path, when the page runs it here (?datapath=worker). */
const replica = new WorkerReplica(
  (event, transfer) => reply({ type: 'replica', event }, transfer),
  () => (caches === null || manifest === null ? null : { manifest, sessions: caches }),
);

/** For tests and diagnostics, read in the worker (Playwright's worker.evaluate): what inbound frames hold here now. */
(scope as unknown as { webswarmHeld: () => ReturnType<WorkerReplica['held']> }).webswarmHeld = () => replica.held();

/**
 * For tests, in the worker (Playwright's worker.evaluate): loses the stages'
 * GPU device now, as the gpu-lost fault does mid-session, but at any moment
 * (a tab that is ready and idle); false where no device is watched (WASM).
 */
(scope as unknown as { webswarmLoseDevice: () => boolean }).webswarmLoseDevice = () => device.lose();

/**
 * For tests, in the worker (Playwright's worker.evaluate): what it holds on the GPU now, and the batching counts,
 * readable after a device loss too (when the page's ComputeClient refuses every call); null before stages load.
 */
(scope as unknown as { webswarmGpu: () => unknown }).webswarmGpu = () =>
  caches === null
    ? null
    : {
        ...(sessions?.gpuCounts ?? NO_GPU_KV),
        ...caches.batching,
        sessions: caches.sessions,
      };

function reply(m: FromWorker, transfer: Transferable[] = []): void {
  scope.postMessage(m, transfer);
}

function fail(id: number, e: unknown): void {
  const code = e instanceof ComputeError ? e.code : 'ERR_RUN';
  reply({ type: 'error', id, code, message: e instanceof Error ? e.message : String(e) });
}

function transferables(f: Feeds): Transferable[] {
  return Object.values(f).map((t) => t.data.buffer as ArrayBuffer);
}

/**
 * The runtime's warm-up (prepare), until it is over: a stage's session waits
 * for it, since onnxruntime's WebGPU provider refuses to create two sessions
 * at once ("another WebGPU EP inference session is being created").
 */
let preparing: Promise<void> = Promise.resolve();

/** Creates the stages' sessions once they are built (and the warm-up is over), and answers loaded. */
function start(m: Extract<ToWorker, { type: 'load' | 'build' }>, stages: Promise<{ index: number; bytes: ArrayBuffer }[]>): void {
  // A failed warm-up is answered to prepare; the stage's own session creation reports its own failure.
  const warmedUp = preparing.catch(() => {});
  stages
    .then(async (built) => {
      await warmedUp;
      let next: CachingExecutor | CapturedExecutor;
      let nextSessions: StageSessions | null = null;
      if (m.capture !== undefined && m.capture !== null) {
        if (m.backend !== 'webgpu')
          throw new ComputeError('ERR_BACKEND_UNAVAILABLE', `graph capture runs on WebGPU only, not ${m.backend}`);
        // Graph capture: each stage's step recorded once and replayed (captured-stages.ts); one row of KV cache a session.
        next = await CapturedExecutor.forWebGpu(built, m.manifest, m.capture);
        await watchDevice(next);
      } else {
        nextSessions = await StageSessions.create(m.backend, built, m.manifest);
        await watchDevice(nextSessions);
        // Decode steps of sessions that wait together share a call, at most 1/S of the sessions in one when this worker
        // holds one of S stages. On WebGPU the caches' tensors stay GPU buffers between steps (see stageSessionOptions),
        // gathered on the GPU for a batch (gpu-kv.ts); on WASM they are host arrays, gathered on the host.
        next = new CachingExecutor(
          m.manifest,
          nextSessions.kvExecutor,
          m.batching === false ? { maxBatch: 1 } : { microBatches: Math.ceil(m.manifest.stages.length / Math.max(1, m.stages.length)) },
        );
      }
      void caches?.dispose();
      sessions = nextSessions;
      caches = next;
      manifest = m.manifest;
      reply({
        type: 'loaded',
        id: m.id,
        backend: m.backend,
        adapter: m.backend === 'webgpu' ? await webgpuAdapter() : null,
        build: ortBuildFor(m.backend),
      });
    })
    .catch((e: unknown) => fail(m.id, e));
}

/**
 * Watches the stages' GPU device (WebGPU): on its loss, first no run of these
 * sessions gives a result any more (markLost), then the page is told, so that
 * nothing computed on the lost device is ever answered after the news.
 */
async function watchDevice(s: Pick<StageSessions, 'gpuDevice' | 'markLost'>): Promise<void> {
  const gpu = await s.gpuDevice();
  if (gpu === null) return;
  device.watch(gpu, (loss) => {
    s.markLost(`${loss.reason}: ${loss.message}`);
    reply({ type: 'device-lost', loss });
  });
}

/** The cache of built stage graphs (stage-cache.ts), opened once; null where storage is denied. */
let stageStore: Promise<TensorStore | null> | null = null;

/**
 * Each stage built from its tensors, one at a time (so that one stage's
 * float32 copies are freed before the next); each, once it has passed the
 * manifest's sha256, written to the stage cache in the background: the write
 * (146 MB for a 135M-shaped float32 stage) must not delay the session, and a
 * reload before it is done only builds the stage again.
 */
async function buildAll(m: Extract<ToWorker, { type: 'build' }>): Promise<{ index: number; bytes: ArrayBuffer }[]> {
  const out: { index: number; bytes: ArrayBuffer }[] = [];
  for (const stage of m.stages) {
    const built = await buildVerifiedStage(m.manifest, stage);
    stageStore ??= stageCacheStore();
    // The store copies the bytes when it is handed them (a Response's body); its put never rejects (a full quota is ignored).
    void stageStore.then((store) => keepStage(store, m.manifest, built.index, new Uint8Array(built.bytes)));
    out.push(built);
  }
  return out;
}

scope.onmessage = (ev: MessageEvent<ToWorker>) => {
  const m = ev.data;
  switch (m.type) {
    case 'load':
      start(m, Promise.resolve([...m.stages]));
      return;
    case 'build':
      start(m, buildAll(m));
      return;
    case 'prepare':
      preparing = StageSessions.prepare(m.backend);
      preparing.then(() => reply({ type: 'done', id: m.id })).catch((e: unknown) => fail(m.id, e));
      return;
    case 'run': {
      if (sessions === null) {
        const why = caches === null ? 'no stages are loaded' : 'the stages run with graph capture: only session steps';
        fail(m.id, new ComputeError('ERR_NO_STAGE', why));
        return;
      }
      const t0 = performance.now();
      sessions
        .run(m.stage, m.feeds)
        .then((outputs) => reply({ type: 'result', id: m.id, outputs, computeMs: performance.now() - t0 }, transferables(outputs)))
        .catch((e: unknown) => fail(m.id, e));
      return;
    }
    case 'step': {
      if (caches === null) {
        fail(m.id, new ComputeError('ERR_NO_STAGE', 'no stages are loaded'));
        return;
      }
      if (m.logitsFrom !== undefined && m.logitsFrom !== LOGITS_FROM_LAST && m.logitsFrom !== LOGITS_FROM_ALL) {
        const message = `logitsFrom must be ${LOGITS_FROM_LAST} or ${LOGITS_FROM_ALL}, not ${String(m.logitsFrom)}`;
        reply({ type: 'error', id: m.id, code: 'ERR_BAD_MESSAGE', message });
        return;
      }
      const t0 = performance.now();
      caches
        .step(m.session, m.stage, m.input, m.logitsFrom)
        .then((out) => {
          // The cache keeps the other outputs: transfer only a buffer that is the main output's alone.
          const output = ownBuffer(out);
          reply({ type: 'stepped', id: m.id, output, computeMs: performance.now() - t0 }, [output.data.buffer as ArrayBuffer]);
        })
        .catch((e: unknown) => fail(m.id, e));
      return;
    }
    case 'truncate':
      caches
        ?.truncate(m.session, m.positions)
        .then(() => reply({ type: 'done', id: m.id }))
        .catch((e: unknown) => fail(m.id, e));
      if (caches === null) reply({ type: 'done', id: m.id });
      return;
    case 'release':
      caches?.release(m.session);
      reply({ type: 'done', id: m.id });
      return;
    case 'stats': {
      const kv = caches?.kvTensors ?? { device: 0, host: 0 };
      const b = caches?.batching ?? { steps: 0, batchedSteps: 0, calls: 0, largestBatch: 0 };
      const gpu = sessions?.gpuCounts ?? NO_GPU_KV;
      reply({
        type: 'stats',
        id: m.id,
        stats: {
          sessions: caches?.sessions ?? 0,
          kvOnDevice: kv.device,
          kvOnHost: kv.host,
          steps: b.steps,
          batchedSteps: b.batchedSteps,
          calls: b.calls,
          largestBatch: b.largestBatch,
          gpuBuffers: gpu.buffers,
          gpuTensors: gpu.tensors,
          gpuPastsReused: gpu.reused,
          gpuRowsCopied: gpu.copied,
        },
      });
      return;
    }
    case 'lose-device':
      if (device.lose()) reply({ type: 'done', id: m.id });
      else fail(m.id, new ComputeError('ERR_NO_STAGE', 'no GPU device to lose: no stage runs on WebGPU'));
      return;
    case 'replica:start':
    case 'replica:channel':
    case 'replica:unlink':
    case 'replica:frame':
    case 'replica:send':
    case 'replica:open':
    case 'replica:update':
    case 'replica:close':
    case 'replica:unreached':
    case 'replica:input':
    case 'replica:challenge':
    case 'replica:net':
      replica.handle(m);
      return;
    default: {
      const never: never = m;
      reply({ type: 'error', id: -1, code: 'ERR_BAD_MESSAGE', message: `unknown message ${JSON.stringify(never)}` });
    }
  }
};
