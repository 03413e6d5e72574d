/**
 * One choice of an OpenAI request (`n` of them run as separate generations):
 * the votes behind its tokens, its log-probabilities in the request's shape as
 * they come, and what of its text has been streamed.
 */
import type { ApiTokenUpdate } from './api-swarm.js';
import {
  appendCompletionLogprobs,
  type ChatLogprob,
  type CompletionLogprobs,
  CompletionLogprobsBuilder,
  chatLogprob,
  emptyCompletionLogprobs,
} from './logprob-shapes.js';
import { tokenLogprob } from './logprobs.js';
import type { TokenTexts } from './token-text.js';

/** The vote behind one verified token, as every chunk and response carries it (webswarm's extension). */
export function voteOf(u: ApiTokenUpdate) {
  return {
    index: u.index,
    token: u.token,
    verified: u.verified,
    votes: u.votes,
    // The stages the server computed itself for this token (the fallback), not volunteers.
    server_stages: u.votes.filter((v) => v.server).map((v) => v.stage),
    step_ms: Math.round(u.stepMs * 100) / 100,
  };
}

export type TokenVote = ReturnType<typeof voteOf>;

/** The stages the server computed for any token of a completion (the fallback). */
export function serverStagesOf(votes: readonly TokenVote[]): number[] {
  return [...new Set(votes.flatMap((v) => v.server_stages))].sort((a, b) => a - b);
}

/** A chunk's or a choice's `logprobs`: chat's entries, completions' arrays, or null when not asked for (or no token). */
export type ChunkLogprobs = { content: ChatLogprob[]; refusal: null } | CompletionLogprobs | null;

export class ChoiceState {
  readonly votes: TokenVote[] = [];
  /** The text streamed so far. */
  sent = '';
  /** Whether a chunk of this choice went out (chat's first one carries the role). */
  started = false;
  private readonly chatEntries: ChatLogprob[] = [];
  private readonly completionArrays = emptyCompletionLogprobs();
  private readonly offsets: CompletionLogprobsBuilder;

  constructor(
    readonly index: number,
    private readonly kind: 'completion' | 'chat',
    /** How many alternatives to list at each position, or null for no log-probabilities. */
    private readonly logprobs: number | null,
    private readonly texts: TokenTexts,
    /** Completions' text offsets count the prompt. */
    promptChars: number,
  ) {
    this.offsets = new CompletionLogprobsBuilder(texts, promptChars);
  }

  /** Records the token's vote; its log-probabilities in the request's shape (null when none were asked for). */
  add(u: ApiTokenUpdate): { vote: TokenVote; logprobs: ChunkLogprobs } {
    const vote = voteOf(u);
    this.votes.push(vote);
    if (this.logprobs === null) return { vote, logprobs: null };
    const lp = tokenLogprob(u.logits, u.token, this.logprobs);
    if (this.kind === 'chat') {
      const entry = chatLogprob(lp, this.texts);
      this.chatEntries.push(entry);
      return { vote, logprobs: { content: [entry], refusal: null } };
    }
    const arrays = this.offsets.next(lp);
    appendCompletionLogprobs(this.completionArrays, arrays);
    return { vote, logprobs: arrays };
  }

  /** The whole choice's log-probabilities. */
  wholeLogprobs(): ChunkLogprobs {
    if (this.logprobs === null) return null;
    return this.kind === 'chat' ? { content: this.chatEntries, refusal: null } : this.completionArrays;
  }
}
