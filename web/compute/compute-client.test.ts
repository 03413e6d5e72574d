// ComputeClient with an injected worker: the request/answer bookkeeping, the
// timeouts and the failure paths, without a browser or onnxruntime.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { StageManifest } from '../../shared/model/manifest.js';
import { ComputeClient, type WorkerLike } from './compute-client.js';
import type { FromWorker, ToWorker } from './messages.js';

const TIMEOUT_MS = 5_000;

/** A worker that records what it is sent; the test answers for it. */
class FakeWorker implements WorkerLike {
  onmessage: ((ev: MessageEvent<FromWorker>) => void) | null = null;
  onerror: ((ev: ErrorEvent) => void) | null = null;
  readonly sent: ToWorker[] = [];
  readonly transfers: Transferable[][] = [];
  terminated = false;

  postMessage(m: ToWorker, transfer: Transferable[] = []): void {
    this.sent.push(m);
    this.transfers.push(transfer);
  }

  terminate(): void {
    this.terminated = true;
  }

  answer(m: unknown): void {
    this.onmessage?.({ data: m } as MessageEvent<FromWorker>);
  }
}

/** The fake worker never reads the manifest: only that it travels with the load. */
const MANIFEST = { modelId: 'fake' } as unknown as StageManifest;

const feeds = { hidden: { dtype: 'float32' as const, dims: [1, 1, 2], data: new Float32Array([1, 2]) } };

let worker: FakeWorker;
let client: ComputeClient;

beforeEach(() => {
  vi.useFakeTimers();
  worker = new FakeWorker();
  client = new ComputeClient(TIMEOUT_MS, () => worker);
});

afterEach(() => {
  vi.useRealTimers();
});

describe('ComputeClient', () => {
  it('a session step sends only its input, transferred (not copied), and gets only the main output back', async () => {
    const input = { dtype: 'float32' as const, dims: [1, 1, 2], data: new Float32Array([3, 4]) };
    const stepped = client.step(7, 1, input);
    expect(worker.sent[0]).toEqual({ type: 'step', id: 1, session: 7, stage: 1, input });
    expect(worker.transfers[0]).toEqual([input.data.buffer]);
    const output = { dtype: 'float32' as const, dims: [1, 1, 2], data: new Float32Array([5, 6]) };
    worker.answer({ type: 'stepped', id: 1, output, computeMs: 1.5 });
    expect(await stepped).toBe(output);
    expect(client.lastComputeMs).toBe(1.5);
    const cut = client.truncate(7, 3);
    expect(worker.sent[1]).toEqual({ type: 'truncate', id: 2, session: 7, positions: 3 });
    worker.answer({ type: 'done', id: 2 });
    await cut;
    client.release(7);
    expect(worker.sent[2]).toEqual({ type: 'release', id: 3, session: 7 });
  });

  it('matches answers to calls by id, in any order', async () => {
    const load = client.load('wasm', MANIFEST, []);
    expect(worker.sent[0]).toMatchObject({ type: 'load', id: 1, backend: 'wasm' });
    worker.answer({ type: 'loaded', id: 1, backend: 'wasm', adapter: null, build: 'wasm' });
    await load;
    expect(client.backend).toBe('wasm');
    const first = client.run(0, feeds);
    const second = client.run(1, feeds);
    expect(worker.sent.slice(1).map((m) => ['id' in m ? m.id : -1, m.type === 'run' ? m.stage : -1])).toEqual([
      [2, 0],
      [3, 1],
    ]);
    worker.answer({ type: 'result', id: 3, outputs: { out: feeds.hidden }, computeMs: 7 });
    worker.answer({ type: 'result', id: 2, outputs: {}, computeMs: 4 });
    expect(await second).toEqual({ out: feeds.hidden });
    expect(await first).toEqual({});
    expect(client.lastComputeMs).toBe(4);
  });

  it("rejects with the worker's error code", async () => {
    const run = client.run(0, feeds);
    worker.answer({ type: 'error', id: 1, code: 'ERR_NO_STAGE', message: 'stage 0 is not loaded' });
    await expect(run).rejects.toMatchObject({ code: 'ERR_NO_STAGE', message: 'stage 0 is not loaded' });
  });

  it('drops answers that are malformed, unknown or late', async () => {
    const run = client.run(0, feeds);
    const failed = expect(run).rejects.toMatchObject({ code: 'ERR_TIMEOUT' });
    for (const junk of [null, 'result', { type: 'result' }, { type: 'bogus', id: 1 }, { type: 'result', id: 99, outputs: {} }]) {
      worker.answer(junk);
    }
    await vi.advanceTimersByTimeAsync(TIMEOUT_MS);
    await failed;
    worker.answer({ type: 'result', id: 1, outputs: {}, computeMs: 1 }); // after the timeout: ignored
    expect(client.lastComputeMs).toBe(0);
  });

  it('fails every waiting call when the worker dies', async () => {
    const a = client.run(0, feeds);
    const b = client.run(1, feeds);
    worker.onerror?.({ message: 'out of memory', filename: 'worker.ts', lineno: 12 } as ErrorEvent);
    await expect(a).rejects.toMatchObject({ code: 'ERR_RUN', message: 'compute worker failed: out of memory (worker.ts:12)' });
    await expect(b).rejects.toMatchObject({ code: 'ERR_RUN' });
  });

  it('terminate() fails the calls still waiting at once, not at their timeout, and refuses new ones', async () => {
    const run = client.run(0, feeds);
    client.terminate();
    expect(worker.terminated).toBe(true);
    await expect(run).rejects.toMatchObject({ code: 'ERR_TERMINATED' });
    await expect(client.run(0, feeds)).rejects.toMatchObject({ code: 'ERR_TERMINATED' });
    expect(worker.sent).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0); // no timeout left behind
  });

  it('a lost GPU device fails the steps waiting now and every call after with ERR_DEVICE_LOST; a late result is dropped', async () => {
    const losses: unknown[] = [];
    client.onDeviceLost = (loss) => losses.push(loss);
    const input = { dtype: 'float32' as const, dims: [1, 1, 2], data: new Float32Array([3, 4]) };
    const waiting = client.step(7, 0, input);
    worker.answer({ type: 'device-lost', loss: { reason: 'destroyed', message: 'Device was destroyed.' } });
    await expect(waiting).rejects.toMatchObject({
      code: 'ERR_DEVICE_LOST',
      message: expect.stringContaining('GPU device was lost (destroyed'),
    });
    expect(losses).toEqual([{ reason: 'destroyed', message: 'Device was destroyed.' }]);
    // The worker's answer to the step, had it computed one on the dying device, finds nobody waiting.
    worker.answer({ type: 'stepped', id: 1, output: input, computeMs: 1 });
    await expect(client.step(7, 0, input)).rejects.toMatchObject({ code: 'ERR_DEVICE_LOST' });
    await expect(client.run(0, feeds)).rejects.toMatchObject({ code: 'ERR_DEVICE_LOST' });
    expect(worker.sent).toHaveLength(1);
    // Told once: a second loss message changes nothing.
    worker.answer({ type: 'device-lost', loss: { reason: 'unknown', message: '' } });
    expect(losses).toHaveLength(1);
  });

  it('a malformed device-lost message is dropped', async () => {
    const losses: unknown[] = [];
    client.onDeviceLost = (loss) => losses.push(loss);
    const ran = client.run(0, feeds);
    for (const loss of [undefined, null, 'lost', { reason: 3, message: '' }, { reason: 'destroyed' }])
      worker.answer({ type: 'device-lost', loss });
    expect(losses).toEqual([]);
    worker.answer({ type: 'result', id: 1, outputs: feeds, computeMs: 1 });
    expect(await ran).toBe(feeds);
  });

  it('loseDevice asks the worker to lose its device (the gpu-lost fault)', async () => {
    const lost = client.loseDevice();
    expect(worker.sent[0]).toEqual({ type: 'lose-device', id: 1 });
    worker.answer({ type: 'done', id: 1 });
    await lost;
  });
});
