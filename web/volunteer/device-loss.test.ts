import { describe, expect, it } from 'vitest';
import { DeviceLossPolicy, LOSS_WINDOW_MS, LOSSES_BEFORE_WASM } from './device-loss.js';

const ADAPTER = 'google swiftshader';

function clock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return {
    now: () => t,
    advance: (ms) => {
      t += ms;
    },
  };
}

describe('DeviceLossPolicy', () => {
  it('comes back on WebGPU after a first loss when the browser offers an adapter again', () => {
    const p = new DeviceLossPolicy(clock().now);
    expect(p.afterLoss(ADAPTER)).toEqual({ backend: 'webgpu', adapter: ADAPTER, why: 'gpu-again', losses: 1 });
    expect(p.onWasmForGood).toBe(false);
  });

  it('falls back to WASM when no adapter can be had after the loss, and tries the GPU again at the next loss', () => {
    const p = new DeviceLossPolicy(clock().now);
    expect(p.afterLoss(null)).toEqual({ backend: 'wasm', adapter: null, why: 'no-adapter', losses: 1 });
    expect(p.afterLoss(ADAPTER).backend).toBe('webgpu');
  });

  it(`stays on WASM for good after ${LOSSES_BEFORE_WASM} losses within the window, an adapter or not`, () => {
    const c = clock();
    const p = new DeviceLossPolicy(c.now);
    for (let i = 1; i < LOSSES_BEFORE_WASM; i++) {
      expect(p.afterLoss(ADAPTER).backend).toBe('webgpu');
      c.advance(LOSS_WINDOW_MS / LOSSES_BEFORE_WASM);
    }
    expect(p.afterLoss(ADAPTER)).toEqual({ backend: 'wasm', adapter: null, why: 'repeated-losses', losses: LOSSES_BEFORE_WASM });
    expect(p.onWasmForGood).toBe(true);
    // Long after, still WASM: a GPU that failed that often is not trusted again in this tab.
    c.advance(10 * LOSS_WINDOW_MS);
    expect(p.afterLoss(ADAPTER)).toMatchObject({ backend: 'wasm', why: 'repeated-losses' });
  });

  it('counts only the losses within the window: spread-out losses keep the GPU', () => {
    const c = clock();
    const p = new DeviceLossPolicy(c.now);
    for (let i = 0; i < 3 * LOSSES_BEFORE_WASM; i++) {
      expect(p.afterLoss(ADAPTER)).toMatchObject({ backend: 'webgpu', why: 'gpu-again', losses: i + 1 });
      // Just over half the window apart: never LOSSES_BEFORE_WASM (3) inside one window.
      c.advance(LOSS_WINDOW_MS / 2 + 1);
    }
    expect(p.onWasmForGood).toBe(false);
  });

  it('the window is strict: the third loss exactly one window after the first keeps the GPU', () => {
    const c = clock();
    const p = new DeviceLossPolicy(c.now);
    p.afterLoss(ADAPTER);
    c.advance(LOSS_WINDOW_MS - 1);
    p.afterLoss(ADAPTER);
    c.advance(1);
    expect(p.afterLoss(ADAPTER).backend).toBe('webgpu');
    expect(p.afterLoss(ADAPTER).backend).toBe('wasm');
  });
});
