import type { StageManifest } from '../../shared/model/manifest.js';
import type { Feeds, Float32Tensor, TensorData } from '../../shared/model/pipeline.js';
import type { LogitsFrom } from '../../shared/model/stage-graph.js';
import type { CaptureOptions } from './captured-stages.js';
import type { FromReplica, ToReplica } from './datapath-messages.js';
import type { OrtBuild } from './ort-build.js';
import type { StageTensors } from './stage-build.js';

/** Which onnxruntime-web execution provider runs the stages. */
export type { Backend } from '../../shared/protocol/messages.js';

import type { Backend } from '../../shared/protocol/messages.js';

/** Main thread → compute worker. */
export type ToWorker =
  | {
      readonly type: 'load';
      readonly id: number;
      readonly backend: Backend;
      /** The model the stages belong to: the worker keeps sessions' KV caches by its layers. */
      readonly manifest: StageManifest;
      readonly stages: readonly { readonly index: number; readonly bytes: ArrayBuffer }[];
      /** False: every session's step is its own runtime call (batching across sessions off, for comparisons). */
      readonly batching?: boolean;
      /** On WebGPU with the fused form: the stages run with graph capture (captured-stages.ts), with these rows. Default null: no capture. */
      readonly capture?: CaptureOptions | null;
    }
  /** Like load, but the worker builds each stage's graph from the checkpoint tensors its volunteer fetched. */
  | {
      readonly type: 'build';
      readonly id: number;
      readonly backend: Backend;
      readonly manifest: StageManifest;
      readonly stages: readonly StageTensors[];
      /** False: every session's step is its own runtime call (batching across sessions off, for comparisons). */
      readonly batching?: boolean;
      /** On WebGPU with the fused form: the stages run with graph capture (captured-stages.ts), with these rows. Default null: no capture. */
      readonly capture?: CaptureOptions | null;
    }
  /** Start the backend's runtime now (answered with done), while the weights download. */
  | { readonly type: 'prepare'; readonly id: number; readonly backend: Backend }
  | { readonly type: 'run'; readonly id: number; readonly stage: number; readonly feeds: Feeds }
  /** One step of a session whose KV cache the worker keeps: only the input and the main output cross. */
  | {
      readonly type: 'step';
      readonly id: number;
      readonly session: number;
      readonly stage: number;
      readonly input: TensorData;
      /** At the last stage, which positions' logits (stage-graph.ts); absent: the last position's. */
      readonly logitsFrom?: LogitsFrom;
    }
  | { readonly type: 'truncate'; readonly id: number; readonly session: number; readonly positions: number }
  | { readonly type: 'release'; readonly id: number; readonly session: number }
  /** What the worker holds: sessions with a cache, and where their KV tensors are. */
  | { readonly type: 'stats'; readonly id: number }
  /** The fault gpu-lost (test and demo servers only): destroys the stages' GPU device, as a driver reset loses it (answered with done). */
  | { readonly type: 'lose-device'; readonly id: number }
  /** The data path in the worker (?datapath=worker): datapath-messages.ts. */
  | ToReplica;

/** The calls the worker answers by id (the replica's messages are not answered). */
export type WorkerCall = Exclude<ToWorker, ToReplica>;

/** Compute worker → main thread. */
export type FromWorker =
  | {
      readonly type: 'loaded';
      readonly id: number;
      readonly backend: Backend;
      readonly adapter: string | null;
      /** The onnxruntime-web build the stages run on (ort-web.ts ortBuildFor). */
      readonly build: OrtBuild;
    }
  | { readonly type: 'result'; readonly id: number; readonly outputs: Feeds; readonly computeMs: number }
  | { readonly type: 'stepped'; readonly id: number; readonly output: Float32Tensor; readonly computeMs: number }
  | { readonly type: 'done'; readonly id: number }
  | { readonly type: 'stats'; readonly id: number; readonly stats: WorkerStats }
  | { readonly type: 'error'; readonly id: number; readonly code: ComputeErrorCode; readonly message: string }
  /**
   * The GPU device the stages run on was lost (a driver reset, the GPU process
   * gone, the OS taking the GPU back): sent once, at once, unasked. Nothing
   * computed on that device is answered after it.
   */
  | { readonly type: 'device-lost'; readonly loss: DeviceLoss }
  | FromReplica;

/** A GPUDevice's loss as its lost promise tells it: GPUDeviceLostInfo's reason ('destroyed' or 'unknown') and message. */
export interface DeviceLoss {
  readonly reason: string;
  readonly message: string;
}

export interface WorkerStats {
  readonly sessions: number;
  /** KV tensors kept as GPU buffers (WebGPU) and on the host (WASM, or after a plain graph's roll-back). */
  readonly kvOnDevice: number;
  readonly kvOnHost: number;
  /** Session steps run since the stages loaded, and how many of them shared a runtime call with another session's. */
  readonly steps: number;
  readonly batchedSteps: number;
  /** Runtime calls those steps took, and the most steps one of them ran. */
  readonly calls: number;
  readonly largestBatch: number;
  /** WebGPU: buffers the worker created on the GPU (a batch's gathered pasts, a row copied out, a read-back) not yet destroyed. */
  readonly gpuBuffers: number;
  /** WebGPU: onnxruntime's present.* tensors the caches hold (a batch's once, however many sessions' rows view it). */
  readonly gpuTensors: number;
  /** WebGPU, since the stages loaded: a batch's pasts fed as the last call's present.* as they were, and rows copied on the GPU. */
  readonly gpuPastsReused: number;
  readonly gpuRowsCopied: number;
}

export type ComputeErrorCode =
  | 'ERR_BACKEND_UNAVAILABLE'
  | 'ERR_SESSION_CREATE'
  | 'ERR_RUN'
  | 'ERR_NO_STAGE'
  | 'ERR_BAD_MESSAGE'
  /** The fetched tensors do not make the stage (a tensor missing or misshapen). */
  | 'ERR_STAGE_BUILD'
  /** The stage built in the worker is not byte-identical to the server's (its manifest sha256). */
  | 'ERR_STAGE_MISMATCH'
  /** The GPU device was lost: the run failed, or its result was dropped (it may have been computed on a lost device). */
  | 'ERR_DEVICE_LOST';
