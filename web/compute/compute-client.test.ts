// ComputeClient with an injected worker: the request/answer bookkeeping, the
// timeouts and the failure paths, without a browser or onnxruntime.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ComputeClient, type WorkerLike } from './compute-client.js';
import type { FromWorker, ToWorker } from './messages.js';

const TIMEOUT_MS = 5_000;

/** A worker that records what it is sent; the test answers for it. */
class FakeWorker implements WorkerLike {
  onmessage: ((ev: MessageEvent<FromWorker>) => void) | null = null;
  onerror: ((ev: ErrorEvent) => void) | null = null;
  readonly sent: ToWorker[] = [];
  terminated = false;

  postMessage(m: ToWorker): void {
    this.sent.push(m);
  }

  terminate(): void {
    this.terminated = true;
  }

  answer(m: unknown): void {
    this.onmessage?.({ data: m } as MessageEvent<FromWorker>);
  }
}

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
  it('matches answers to calls by id, in any order', async () => {
    const load = client.load('wasm', []);
    expect(worker.sent[0]).toMatchObject({ type: 'load', id: 1, backend: 'wasm' });
    worker.answer({ type: 'loaded', id: 1, backend: 'wasm', adapter: null });
    await load;
    expect(client.backend).toBe('wasm');
    const first = client.run(0, feeds);
    const second = client.run(1, feeds);
    expect(worker.sent.slice(1).map((m) => [m.id, m.type === 'run' ? m.stage : -1])).toEqual([
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
});
