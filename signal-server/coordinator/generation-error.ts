import type { WireError, WireErrorCode } from '../../shared/protocol/errors.js';

export class GenerationError extends Error {
  constructor(
    readonly code: WireErrorCode,
    message: string,
    /** The request field at fault, for a bad request (OpenAI's `param`). */
    readonly param: string | null = null,
    /** OpenAI's own code for this error, where it has one (the HTTP API answers it instead of the generic one). */
    readonly apiCode: string | null = null,
  ) {
    super(message);
  }
}

/**
 * A session could not start because the replicas asked for a stage refused it as full (ERR_REPLICA_FULL): with
 * several servers each counts another's sessions a publication late. Nothing was computed; the request waits for
 * another route within its route wait, as it would have had the count been current.
 */
export class RefusedAsFull extends GenerationError {
  constructor(message: string) {
    super('ERR_NO_ROUTE', message);
  }
}

/** What a requester is told of an error that is not a GenerationError: its details are for the server's log only. */
export const INTERNAL_ERROR_MESSAGE = 'internal error';

/**
 * The wire error for whatever a generation threw, the same for Socket.IO
 * (chat:error) and HTTP: a GenerationError keeps its code and message,
 * anything else is ERR_INTERNAL.
 */
export function wireErrorOf(e: unknown): WireError {
  return e instanceof GenerationError ? { code: e.code, message: e.message } : { code: 'ERR_INTERNAL', message: INTERNAL_ERROR_MESSAGE };
}

/**
 * Throws ERR_BAD_REQUEST (param `prompt`) when a prompt of `length` tokens and `maxTokens` more pass the model's
 * positions, with OpenAI's code for it (`context_length_exceeded`, what clients look for to cut a conversation) and
 * its words ("maximum context length", what others look for).
 */
export function checkPromptFits(length: number, maxTokens: number, maxPositions: number): void {
  if (length + maxTokens > maxPositions)
    throw new GenerationError(
      'ERR_BAD_REQUEST',
      `prompt (${length} tokens) + max_tokens (${maxTokens}) exceeds the model's maximum context length of ${maxPositions} tokens`,
      'prompt',
      'context_length_exceeded',
    );
}

/**
 * The same for a request that gave no cap on its tokens (a chat runs to the end of the context): its prompt must
 * leave room for one, and the message names the prompt alone (before, a `max_tokens` of 1 the client never sent).
 */
export function checkPromptLeavesRoom(length: number, maxPositions: number): void {
  if (length >= maxPositions)
    throw new GenerationError(
      'ERR_BAD_REQUEST',
      `prompt (${length} tokens) leaves no room for a completion in the model's maximum context length of ${maxPositions} tokens`,
      'prompt',
      'context_length_exceeded',
    );
}
