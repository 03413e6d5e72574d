import type { ComputeErrorCode } from './messages.js';

/** A failure of the compute worker with its code (messages.ts): what the page is told. */
export class ComputeError extends Error {
  constructor(
    readonly code: Exclude<ComputeErrorCode, 'ERR_BAD_MESSAGE'>,
    message: string,
  ) {
    super(message);
  }
}
