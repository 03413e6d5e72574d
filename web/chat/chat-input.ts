/**
 * The chat page's own check of what its fields hold, in the page's words, before anything is sent: the server checks
 * the same bounds (shared/protocol/validate.ts parseGenerate) and its refusal names the protocol's fields, not the
 * page's. A prompt too long for the model's context in tokens only the server can tell: its refusal says so.
 */
import { MAX_GENERATE_TOKENS, MAX_PROMPT_CHARS } from '../../shared/protocol/validate.js';

export interface ChatInput {
  readonly prompt: string;
  readonly maxTokens: number;
  readonly temperature: number;
  readonly seed: number;
}

/** The largest seed the swarm's samplers take (an unsigned 32-bit integer). */
export const MAX_SEED = 0xffffffff;

/** Why these fields cannot be sent, in the page's own words; null when they can. */
export function chatInputProblem(i: ChatInput): string | null {
  if (i.prompt.length === 0) return 'Type a prompt first.';
  if (i.prompt.length > MAX_PROMPT_CHARS)
    return `The prompt is ${i.prompt.length} characters long; at most ${MAX_PROMPT_CHARS} can be sent.`;
  if (!Number.isInteger(i.maxTokens) || i.maxTokens < 1 || i.maxTokens > MAX_GENERATE_TOKENS)
    return `Max tokens must be a whole number from 1 to ${MAX_GENERATE_TOKENS}.`;
  if (!Number.isFinite(i.temperature) || i.temperature < 0 || i.temperature > 2) return 'Temperature must be a number from 0 to 2.';
  if (!Number.isInteger(i.seed) || i.seed < 0 || i.seed > MAX_SEED) return `Seed must be a whole number from 0 to ${MAX_SEED}.`;
  return null;
}
