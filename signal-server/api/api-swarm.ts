import type { SamplingParams } from '../../shared/model/sampling.js';
import type { ChatMessage, TokenizerSpecials } from '../../shared/model/tokenizer.js';
import type { StageVote, VolunteerView } from '../../shared/protocol/messages.js';
import type { ServiceStatus } from '../coordinator/service-stats.js';

/**
 * What the HTTP routes ask of the coordinator, declared here rather than
 * imported from it: the coordinator can move or grow without the API
 * changing, and server.ts (which wires the two) checks that it still fits.
 */
export interface ApiSwarm {
  /**
   * Generates through the swarm; `onToken` receives each verified token as it is accepted, and `onScored` (with
   * `scorePrompt`) each token of the prompt, in order, before them.
   */
  complete(
    req: ApiGenerationRequest,
    onToken?: (u: ApiTokenUpdate) => void,
    onScored?: (u: ApiScoredToken) => void,
  ): Promise<ApiCompletion>;
  /**
   * The prompt for a chat, by the model's chat template (throws on a template error); `addGenerationPrompt`
   * (default true, what a chat completion runs) false ends it after the last message (POST /tokenize's option).
   */
  chatPrompt(messages: readonly ChatMessage[], addGenerationPrompt?: boolean): string;
  /**
   * The text of token ids (a prompt sent as ids, or /detokenize's); throws a bad request with param `field`
   * (default `prompt`) for an id the model does not have.
   */
  promptText(ids: readonly number[], field?: string): string;
  /** A text's token ids, as a completion's text prompt is run (no special tokens added). */
  encode(text: string): number[];
  /** The served model's tokenizer: its special tokens and chat template, its vocabulary and positions. */
  tokenizerInfo(): ApiTokenizerInfo;
  /** Volunteers online and replicas per stage. */
  status(): { volunteers: number; replicasPerStage: number[]; redundancy: number; fallback: 'off' | 'stage' | 'whole' };
  /** Per stage, its ready replicas from distinct clients: a route needs r of them. */
  routablePerStage(): number[];
  /** Every volunteer with its stage, backend, state and record. */
  volunteers(): VolunteerView[];
  /** Service figures over the last 5 minutes and hour (GET /api/status). */
  serviceStatus(): ServiceStatus;
}

export interface ApiTokenizerInfo {
  readonly specials: TokenizerSpecials;
  readonly vocabSize: number;
  readonly maxPositions: number;
}

export interface ApiGenerationRequest {
  readonly prompt: string;
  /** The prompt as token ids, run as they are (`prompt` is their text, from promptText). */
  readonly promptIds?: readonly number[];
  /**
   * How many of `promptIds`' last ids hold the first bytes of a character the prompt leaves unfinished (0 or absent:
   * it ends on a whole one): the completion's text begins with that character, finished or not, and `prompt` ends
   * before it.
   */
  readonly unfinishedIds?: number;
  readonly maxTokens: number;
  /**
   * max_tokens was not given (a chat): as many tokens as the model's context leaves after the prompt, at most
   * `maxTokens`; a prompt that fills the context asks for one, and is refused as too long.
   */
  readonly fitToContext?: boolean;
  readonly sampling: SamplingParams;
  /** The text ends before the first of these. */
  readonly stop?: readonly string[];
  /** Aborting ends the generation with ERR_CANCELLED (the client went away). */
  readonly signal?: AbortSignal;
  /** Who asks (its API key, or its address): it holds at most half the fallback's sessions. */
  readonly client?: string;
  /** echo: the prompt's tokens after the first computed and voted on one a step, before any token is sampled. */
  readonly scorePrompt?: boolean;
}

/** One token of a scored prompt, from position 0: the agreed logits at its position (none at 0), and their votes. */
export interface ApiScoredToken {
  readonly position: number;
  readonly token: number;
  readonly logits: Float32Array | null;
  /** Where the logits came from a form (the tokens left out at −Infinity): the whole row's log-sum-exp. */
  readonly logSumExp?: number;
  readonly votes: readonly StageVote[];
  readonly verified: boolean;
  readonly stepMs: number;
}

/** One accepted token. */
export interface ApiTokenUpdate {
  readonly index: number;
  readonly token: number;
  /** The text this token adds now (maybe "": held back while it could be part of a stop sequence or a character). */
  readonly text: string;
  readonly votes: readonly StageVote[];
  /** Every stage agreed by a majority of the configured redundancy r (r ≥ 2). */
  readonly verified: boolean;
  readonly stepMs: number;
  /** The agreed logits of the last position, which the token was sampled from (unscaled by temperature). */
  readonly logits: Float32Array;
  /** Where the logits came from a top form (the tokens left out at −Infinity): the whole row's log-sum-exp. */
  readonly logSumExp?: number;
}

export interface ApiCompletion {
  readonly promptTokens: readonly number[];
  readonly tokens: readonly number[];
  readonly text: string;
  readonly finishReason: 'stop' | 'length';
  readonly route: readonly (readonly string[])[];
  /** The configured redundancy r, and whether every token was verified by a majority of it. */
  readonly redundancy: number;
  readonly verified: boolean;
  /** The end-of-text token that ended it, where one did, with the agreed logits it was drawn from (best_of ranks by it). */
  readonly end?: { readonly token: number; readonly logits: Float32Array; readonly logSumExp?: number };
}
