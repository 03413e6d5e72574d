// Runs the steps of one CachingExecutor's sessions, one runtime call at a time,
// and puts decode steps of distinct sessions of one stage that are waiting
// together into one call (see step-batch.ts for which, and how).
//
// Steps wait while a call is in flight; before each call the batcher yields one
// macrotask, so that the steps whose inputs arrive together (the sessions a
// finished call resolved, a burst of messages) join the call instead of the
// first of them running alone and the rest after it, again and again (a lone
// session skips it: nobody could join).

import { gatherSlabs, scatterSlabs, slabFetches } from './kv-slab.js';
import type { StageManifest } from './manifest.js';
import type { DeviceBatching, Float32Tensor, KvCache, KvFeeds, KvStageExecutor, TensorData } from './pipeline.js';
import { headFeeds, type LogitsFrom, stageInputName, stageOutputName } from './stage-graph.js';
import { type BatchRow, canShareCall, gatherFeeds, scatterOutputs, slabEligible } from './step-batch.js';
import { disposeDevice, gatherDeviceFeeds } from './step-batch-device.js';

/** How many steps ran, and how many of them shared a call with another session's. */
export interface BatchCounts {
  /** Steps run (each session's step counts once). */
  readonly steps: number;
  /** Of them, steps that ran in a call with at least one other session's. */
  readonly batchedSteps: number;
  /** Runtime calls made. */
  readonly calls: number;
  /** The most steps one call ran. */
  readonly largestBatch: number;
  /** Of the steps, those run on slabs (kv-slab.ts: the fused form's decode steps, fetching only new positions). */
  readonly slabSteps: number;
}

interface Waiting extends BatchRow {
  readonly stage: number;
  /**
   * The step's logits_from, where its caller named one. Only a step of one position shares a call (canShareCall), and
   * there every value names the same row: a batch call feeds none.
   */
  readonly logitsFrom?: LogitsFrom;
  readonly resolve: (t: Float32Tensor) => void;
  readonly reject: (e: unknown) => void;
}

interface Channel {
  readonly port1: { onmessage: (() => void) | null; close(): void };
  readonly port2: { postMessage(m: null): void };
}

/** The next macrotask: setImmediate in Node, a MessageChannel message in a browser (setTimeout may wait 4 ms). */
function nextMacrotask(): Promise<void> {
  const g = globalThis as { setImmediate?: (f: () => void) => unknown; MessageChannel?: new () => Channel };
  const { setImmediate: immediate, MessageChannel: Ch } = g;
  if (immediate !== undefined) return new Promise((resolve) => immediate(resolve));
  if (Ch === undefined) return new Promise((resolve) => setTimeout(() => resolve(), 0));
  return new Promise((resolve) => {
    const ch = new Ch();
    ch.port1.onmessage = () => {
      ch.port1.close();
      resolve();
    };
    ch.port2.postMessage(null);
  });
}

function positions(input: TensorData): number {
  const s = input.dims[1];
  if (s === undefined || s < 1) throw new RangeError(`stage input of shape [${input.dims.join(', ')}] has no positions`);
  return s;
}

export class StepBatcher {
  private readonly waiting: Waiting[] = [];
  private running = false;
  private counts = { steps: 0, batchedSteps: 0, calls: 0, largestBatch: 0, slabSteps: 0 };
  /**
   * The gathered pasts' arrays, reused from call to call while steps keep
   * coming (freed when none wait): a runtime copies its inputs (onnxruntime-web
   * into its WebAssembly memory) and the next call is gathered only once this
   * one is over; allocating them afresh cost more than the copies into them.
   */
  private readonly scratch = new Map<string, Float32Array>();

  constructor(
    private readonly manifest: StageManifest,
    private readonly inner: KvStageExecutor,
    /** The most steps one call runs (1: every step alone, still one call at a time). */
    private readonly maxBatch: number,
    /**
     * Into how many calls the sessions' steps are split (see takeGroup): the
     * stages of the pipeline a volunteer holds one of; 1 (the default) where
     * one runner computes every stage, as the server's replicas do.
     */
    private readonly microBatches = 1,
    /** How many sessions the executor holds now (unknown: never 1, so that every call waits a macrotask for others). */
    private readonly sessions: () => number = () => 0,
    /**
     * The fused form's decode steps keep their caches in slabs (kv-slab.ts)
     * and fetch only the new positions; false: gathered pasts and fetched
     * present.*, as before (benchmarks compare the two).
     */
    private readonly slabs = true,
  ) {
    if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new RangeError(`maxBatch must be an integer ≥ 1, not ${maxBatch}`);
  }

  get stats(): BatchCounts {
    return { ...this.counts };
  }

  /** Runs one step of a session (the caller runs a session's steps one after another) and updates its cache. */
  step(stage: number, cache: KvCache, input: TensorData, logitsFrom?: LogitsFrom): Promise<Float32Tensor> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ stage, cache, input, resolve, reject, ...(logitsFrom === undefined ? {} : { logitsFrom }) });
      void this.drain();
    });
  }

  private async drain(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (this.waiting.length > 0) {
        // A lone session has nobody to wait for: the hop cost it a quarter of its tokens/s on austen-2m (bench/batching.ts).
        if (this.sessions() !== 1) await nextMacrotask();
        await this.runGroup(this.takeGroup());
      }
    } finally {
      this.running = false;
      this.scratch.clear();
    }
  }

  /**
   * The oldest waiting step and those that may share its call. In a pipeline
   * of S stages on S machines a batch of all sessions would move from stage
   * to stage whole, each stage idle while the others compute: a call takes at
   * most 1/S of the sessions held, so that S groups keep every stage busy.
   */
  private takeGroup(): Waiting[] {
    const head = this.waiting[0] as Waiting;
    const form = this.manifest.graph;
    const cap =
      this.microBatches > 1 ? Math.min(this.maxBatch, Math.max(1, Math.ceil(this.sessions() / this.microBatches))) : this.maxBatch;
    const group: Waiting[] = [];
    for (let i = 0; i < this.waiting.length && group.length < cap; ) {
      const w = this.waiting[i] as Waiting;
      if (w === head || (w.stage === head.stage && canShareCall(form, head, w, this.inner.device !== undefined))) {
        group.push(w);
        this.waiting.splice(i, 1);
      } else i++;
    }
    // Rows of one earlier batch in their old order: its outputs are then this call's pasts, uncopied (gatherFeeds).
    return group.length > 1 ? group.sort((a, b) => a.cache.batchRow - b.cache.batchRow) : group;
  }

  private async runGroup(group: readonly Waiting[]): Promise<void> {
    // Slabs are host arrays: an executor whose caches stay on a device gathers them there instead.
    const slabbed = this.slabs && this.inner.device === undefined && this.manifest.graph === 'fused' && group.every(slabEligible);
    if (slabbed || group.length > 1) {
      try {
        await (slabbed
          ? this.runOnSlabs(group)
          : this.inner.device !== undefined
            ? this.runOnDevice(group, this.inner.device)
            : this.runTogether(group));
        return;
      } catch {
        // A failed call is run again row by row, as before: each session then gets its own step's error, or its result.
      }
    }
    for (const w of group) {
      try {
        w.resolve(await this.runAlone(w));
      } catch (e) {
        w.reject(e);
      }
    }
  }

  private count(steps: number): void {
    this.counts.steps += steps;
    this.counts.calls++;
    if (steps > 1) this.counts.batchedSteps += steps;
    this.counts.largestBatch = Math.max(this.counts.largestBatch, steps);
  }

  private mainOf(out: KvFeeds, stage: number): Float32Tensor {
    const name = stageOutputName(stage, this.manifest.stages.length);
    const t = out[name];
    if (t === undefined || t.dtype !== 'float32') throw new Error(`stage ${stage} returned no float32 ${name}`);
    return t;
  }

  /** Each row's outputs of a batch call taken by its cache, and its main output handed to its step. */
  private finish(group: readonly Waiting[], rows: readonly KvFeeds[], stage: number): void {
    group.forEach((w, i) => {
      const own = rows[i] as KvFeeds;
      w.cache.update(own, 1);
      w.resolve(this.mainOf(own, stage));
    });
  }

  private async runAlone(w: Waiting): Promise<Float32Tensor> {
    const n = positions(w.input);
    const out = await this.inner.run(w.stage, { [stageInputName(w.stage)]: w.input, ...w.cache.feeds(n), ...headFeeds(w.logitsFrom) });
    w.cache.update(out, n);
    this.count(1);
    return this.mainOf(out, w.stage);
  }

  private reuse(name: string, length: number): Float32Array {
    let a = this.scratch.get(name);
    if (a === undefined || a.length < length) {
      // With room to grow: the pasts grow by one position a step. Where the executor wants its host arrays (shared
      // memory, for a runner in another thread): the next call is gathered only once this one has answered.
      const room = Math.ceil(length * 1.5);
      a = this.inner.hostArray?.(room) ?? new Float32Array(room);
      this.scratch.set(name, a);
    }
    return a.subarray(0, length);
  }

  /** One call for the group's decode steps (one or more) on slabs: see kv-slab.ts. */
  private async runOnSlabs(group: readonly Waiting[]): Promise<void> {
    const stage = (group[0] as Waiting).stage;
    const entry = this.manifest.stages[stage];
    if (entry === undefined) throw new RangeError(`no stage ${stage}`);
    const cfg = this.manifest.model;
    const numStages = this.manifest.stages.length;
    const { feeds, slabs } = gatherSlabs(cfg, entry.layers, stage, group, this.inner.hostArray);
    const out = await this.inner.run(stage, feeds, slabFetches(entry, numStages));
    const rows = scatterSlabs(cfg, entry.layers, stage, numStages, group, slabs, out);
    this.count(group.length);
    this.counts.slabSteps += group.length;
    this.finish(group, rows, stage);
  }

  /** One call for the group's decode steps with their caches gathered on the device (step-batch-device.ts). */
  private async runOnDevice(group: readonly Waiting[], device: DeviceBatching): Promise<void> {
    const stage = (group[0] as Waiting).stage;
    const entry = this.manifest.stages[stage];
    if (entry === undefined) throw new RangeError(`no stage ${stage}`);
    const numStages = this.manifest.stages.length;
    const { feeds, gathered } = gatherDeviceFeeds(entry.layers, this.manifest.graph, stage, group, device);
    let out: KvFeeds;
    try {
      out = await this.inner.run(stage, feeds);
    } finally {
      // The call is over (its work is on the device's queue): what was gathered for it is no longer needed.
      for (const t of gathered) t.dispose();
    }
    let rows: KvFeeds[];
    try {
      rows = scatterOutputs(this.manifest.model, entry.layers, stage, numStages, group, out, device);
    } catch (e) {
      disposeDevice(out);
      throw e;
    }
    this.count(group.length);
    this.finish(group, rows, stage);
  }

  private async runTogether(group: readonly Waiting[]): Promise<void> {
    const stage = (group[0] as Waiting).stage;
    const entry = this.manifest.stages[stage];
    if (entry === undefined) throw new RangeError(`no stage ${stage}`);
    const cfg = this.manifest.model;
    const out = await this.inner.run(
      stage,
      gatherFeeds(cfg, entry.layers, this.manifest.graph, stage, group, (name, length) => this.reuse(name, length)),
    );
    const rows = scatterOutputs(cfg, entry.layers, stage, this.manifest.stages.length, group, out);
    this.count(group.length);
    this.finish(group, rows, stage);
  }
}
