import type { Feeds } from '../../shared/model/pipeline.js';

/** Which onnxruntime-web execution provider runs the stages. */
export type { Backend } from '../../shared/protocol/messages.js';

import type { Backend } from '../../shared/protocol/messages.js';

/** Main thread → compute worker. */
export type ToWorker =
  | {
      readonly type: 'load';
      readonly id: number;
      readonly backend: Backend;
      readonly stages: readonly { readonly index: number; readonly bytes: ArrayBuffer }[];
    }
  | { readonly type: 'run'; readonly id: number; readonly stage: number; readonly feeds: Feeds };

/** Compute worker → main thread. */
export type FromWorker =
  | { readonly type: 'loaded'; readonly id: number; readonly backend: Backend; readonly adapter: string | null }
  | { readonly type: 'result'; readonly id: number; readonly outputs: Feeds; readonly computeMs: number }
  | { readonly type: 'error'; readonly id: number; readonly code: ComputeErrorCode; readonly message: string };

export type ComputeErrorCode = 'ERR_BACKEND_UNAVAILABLE' | 'ERR_SESSION_CREATE' | 'ERR_RUN' | 'ERR_NO_STAGE' | 'ERR_BAD_MESSAGE';
