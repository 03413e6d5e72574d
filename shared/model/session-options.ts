// The options every stage session is created with, in one place: a
// volunteer's worker (onnxruntime-web), the reference runner, and
// `npm run bench:gpu` (onnxruntime-node's WebGPU provider) use exactly these.
import type { Backend } from '../protocol/messages.js';
import type { StageEntry } from './manifest.js';
import { pruneOutputs } from './onnx-prune.js';
import type { TensorData } from './pipeline.js';
import { LOGITS_FROM_LAST, logitsFromFeed, STAGE_IO } from './stage-graph.js';

/** The subset of onnxruntime's InferenceSession.SessionOptions that stages set (plain data, no runtime import). */
export interface StageSessionOptions {
  readonly executionProviders: string[];
  readonly graphOptimizationLevel: 'all';
  readonly logSeverityLevel: 3;
  /** On WebGPU: each present.* output stays a GPU buffer, fed back as past.* next step; the rest is read back. */
  readonly preferredOutputLocation?: Record<string, 'gpu-buffer'>;
}

/** True for a stage's KV outputs (present.<layer>.key / .value). */
export function isPresentOutput(name: string): boolean {
  return name.startsWith('present.');
}

/** True for the fused form's last-position outputs (new.<layer>.key / .value: stage-graph-fused.ts), fetched only when asked for. */
export function isNewKvOutput(name: string): boolean {
  return name.startsWith('new.');
}

/**
 * Session options for one stage on a backend (`cpu` is onnxruntime-node's own
 * provider, for benchmarks). On WebGPU the KV cache stays on the GPU: only the
 * stage's main output (hidden states or logits) is copied back.
 */
export function stageSessionOptions(backend: Backend | 'cpu', stage: Pick<StageEntry, 'outputs'>): StageSessionOptions {
  const base = { executionProviders: [backend], graphOptimizationLevel: 'all', logSeverityLevel: 3 } as const;
  if (backend !== 'webgpu') return { ...base, executionProviders: [backend] };
  const kv = stage.outputs.filter((o) => isPresentOutput(o.name)).map((o) => [o.name, 'gpu-buffer'] as const);
  return { ...base, executionProviders: [backend], preferredOutputLocation: Object.fromEntries(kv) };
}

/**
 * The stage graph a session on `backend` loads, from its file's bytes (checked
 * against the manifest before): on WebGPU without the fused form's new.*
 * outputs and the nodes only they need (two GatherElements a layer, an
 * Unsqueeze and an Expand a stage). Only WASM's slabs read new.*, and
 * onnxruntime runs a graph's every node at each call, fetched or not. Each
 * stage's output is the same, bit for bit (tested: onnx-prune.test.ts). The
 * same bytes elsewhere, and for the plain form (it has no new.*).
 */
export function stageGraphFor(backend: Backend | 'cpu', bytes: Uint8Array): Uint8Array {
  return backend === 'webgpu' ? pruneOutputs(bytes, isNewKvOutput).model : bytes;
}

/**
 * The output names to fetch of a run: those asked for, or every output but
 * the fused form's new.* (which only a caller keeping its own KV buffer asks
 * for), so that a run without a list returns what it always did.
 */
export function stageFetches(outputNames: readonly string[], asked: readonly string[] | undefined): string[] {
  return asked === undefined ? outputNames.filter((n) => !isNewKvOutput(n)) : [...asked];
}

/**
 * A run's feeds with what a caller may leave out filled in: a last stage's
 * logits_from, LOGITS_FROM_LAST (the head on each row's last position, what
 * every step but a scored prompt's reads), where the session takes it.
 */
export function stageFeeds<V>(inputNames: readonly string[], feeds: Readonly<Record<string, V>>): Record<string, V | TensorData> {
  if (STAGE_IO.logitsFrom in feeds || !inputNames.includes(STAGE_IO.logitsFrom)) return { ...feeds };
  return { ...feeds, [STAGE_IO.logitsFrom]: logitsFromFeed(LOGITS_FROM_LAST) };
}

/** The options of a stage session whose step onnxruntime records once and replays (web/compute/captured-stages.ts). */
export interface CapturedSessionOptions {
  /** An object, not the name alone: onnxruntime-web passes enableGraphCapture to its WebGPU provider only then. */
  readonly executionProviders: { readonly name: 'webgpu' }[];
  readonly graphOptimizationLevel: 'all';
  readonly logSeverityLevel: 3;
  /** Every input and output is then a GPU buffer the caller binds (the outputs' location defaults to gpu-buffer). */
  readonly enableGraphCapture: true;
}

export function capturedSessionOptions(): CapturedSessionOptions {
  return { executionProviders: [{ name: 'webgpu' }], graphOptimizationLevel: 'all', logSeverityLevel: 3, enableGraphCapture: true };
}
