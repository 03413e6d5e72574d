// What a volunteer tab comes back on after its GPU device was lost: WebGPU
// again while losses are rare (one driver reset is no reason to give up the
// GPU), WebAssembly once they repeat (a GPU that keeps failing costs the
// swarm a fail-over each time) or when the browser offers no adapter now.
import type { Backend } from '../compute/messages.js';

/** Losses within LOSS_WINDOW_MS that keep the tab on WebAssembly. */
export const LOSSES_BEFORE_WASM = 3;
export const LOSS_WINDOW_MS = 10 * 60_000;

/** Why the tab comes back on the backend it does. */
export type RecoveryWhy = 'gpu-again' | 'no-adapter' | 'repeated-losses';

export interface Recovery {
  readonly backend: Backend;
  readonly adapter: string | null;
  readonly why: RecoveryWhy;
  /** Losses in this tab so far, this one included. */
  readonly losses: number;
}

/** The tab's losses and the rule; the clock is injected (tests). */
export class DeviceLossPolicy {
  private readonly times: number[] = [];
  /** Once losses repeated, the tab stays on WebAssembly until it is reloaded. */
  private pinned = false;

  constructor(private readonly now: () => number = Date.now) {}

  /** Losses so far. */
  get losses(): number {
    return this.times.length;
  }

  /** True once the tab stays on WebAssembly: a new loss need not even look for an adapter. */
  get onWasmForGood(): boolean {
    return this.pinned;
  }

  /** Records a loss now; `adapter`: what the browser offers now (null: none), looked for after the loss. */
  afterLoss(adapter: string | null): Recovery {
    const t = this.now();
    this.times.push(t);
    const recent = this.times.filter((x) => t - x < LOSS_WINDOW_MS).length;
    if (recent >= LOSSES_BEFORE_WASM) this.pinned = true;
    const losses = this.times.length;
    if (this.pinned) return { backend: 'wasm', adapter: null, why: 'repeated-losses', losses };
    if (adapter === null) return { backend: 'wasm', adapter: null, why: 'no-adapter', losses };
    return { backend: 'webgpu', adapter, why: 'gpu-again', losses };
  }
}
