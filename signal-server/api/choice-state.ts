/**
 * One choice of an OpenAI request (`n` of them, or `best_of` candidates, run as separate generations):
 * the votes behind its tokens, its log-probabilities in the request's shape as
 * they come, and what of its text has been streamed.
 */
import type { ApiScoredToken, ApiTokenUpdate } from './api-swarm.js';
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

/** A step's vote as the extension shows it: whether a majority verified it, each stage's vote, the stages the server computed. */
function voteFields(u: {
  readonly token: number;
  readonly verified: boolean;
  readonly votes: ApiTokenUpdate['votes'];
  readonly stepMs: number;
}) {
  return {
    token: u.token,
    verified: u.verified,
    votes: u.votes,
    // The stages the server computed itself for this step (the fallback), not volunteers.
    server_stages: u.votes.filter((v) => v.server).map((v) => v.stage),
    step_ms: Math.round(u.stepMs * 100) / 100,
  };
}

/** The vote behind one verified token, as every chunk and response carries it (webswarm's extension). */
export function voteOf(u: ApiTokenUpdate) {
  return { index: u.index, ...voteFields(u) };
}

export type TokenVote = ReturnType<typeof voteOf>;

/** The vote behind one scored token of an echoed prompt (webswarm's extension); position 0 had none. */
export function promptVoteOf(u: ApiScoredToken) {
  return { position: u.position, ...voteFields(u) };
}

export type PromptVote = ReturnType<typeof promptVoteOf>;

/** The stages the server computed for any token of a completion (the fallback). */
export function serverStagesOf(votes: readonly { readonly server_stages: readonly number[] }[]): number[] {
  return [...new Set(votes.flatMap((v) => v.server_stages))].sort((a, b) => a - b);
}

/** A chunk's or a choice's `logprobs`: chat's entries, completions' arrays, or null when not asked for (or no token). */
export type ChunkLogprobs = { content: ChatLogprob[]; refusal: null } | CompletionLogprobs | null;

export class ChoiceState {
  readonly votes: TokenVote[] = [];
  /** An echoed prompt's scored tokens (from position 1), as their votes. */
  readonly promptVotes: PromptVote[] = [];
  /** The text streamed so far. */
  sent = '';
  /** Whether a chunk of this choice went out (chat's first one carries the role). */
  started = false;
  /** The sum of its draws' log-probabilities under the agreed logits, and how many (best_of ranks by their mean). */
  private logprobTotal = 0;
  private draws = 0;
  private readonly chatEntries: ChatLogprob[] = [];
  private readonly completionArrays = emptyCompletionLogprobs();
  private readonly offsets: CompletionLogprobsBuilder;
  /** An echoed prompt's log-probabilities, its offsets from the prompt's start. */
  private readonly promptArrays = emptyCompletionLogprobs();
  private readonly promptOffsets: CompletionLogprobsBuilder;

  constructor(
    readonly index: number,
    private readonly kind: 'completion' | 'chat',
    /** How many alternatives to list at each position, or null for no log-probabilities. */
    private readonly logprobs: number | null,
    private readonly texts: TokenTexts,
    /** Completions' text offsets count the prompt: its length in code points (codePoints). */
    promptChars: number,
    /** Whether best_of ranks this choice: only then is each draw's log-probability taken when none were asked for. */
    private readonly ranked = false,
    /** The bytes of a character the prompt begins and leaves unfinished (a prompt of token ids): its completion's. */
    promptUnfinished: readonly number[] = [],
  ) {
    this.offsets = new CompletionLogprobsBuilder(texts, promptChars, promptUnfinished);
    this.promptOffsets = new CompletionLogprobsBuilder(texts, 0);
  }

  /** Records a token of the echoed prompt (completions only): its vote, and its log-probabilities when asked for. */
  addPrompt(u: ApiScoredToken): void {
    if (u.position > 0) this.promptVotes.push(promptVoteOf(u));
    if (this.logprobs === null || this.kind !== 'completion') return;
    const arrays =
      u.logits === null
        ? this.promptOffsets.first(u.token)
        : this.promptOffsets.next(tokenLogprob(u.logits, u.token, this.logprobs, u.logSumExp));
    appendCompletionLogprobs(this.promptArrays, arrays);
  }

  /** The echoed prompt's log-probabilities so far (completions' arrays), or null when none were asked for. */
  promptLogprobs(): CompletionLogprobs | null {
    return this.logprobs === null || this.kind !== 'completion' ? null : this.promptArrays;
  }

  /** Records the token's vote; its log-probabilities in the request's shape (null when none were asked for). */
  add(u: ApiTokenUpdate): { vote: TokenVote; logprobs: ChunkLogprobs } {
    const vote = voteOf(u);
    this.votes.push(vote);
    // A log-softmax over the vocabulary a token: taken only where it is wanted (logprobs, or best_of's ranking).
    if (this.logprobs === null && !this.ranked) return { vote, logprobs: null };
    const lp = tokenLogprob(u.logits, u.token, this.logprobs ?? 0, u.logSumExp);
    this.logprobTotal += lp.logprob;
    this.draws += 1;
    if (this.logprobs === null) return { vote, logprobs: null };
    if (this.kind === 'chat') {
      const entry = chatLogprob(lp, this.texts);
      this.chatEntries.push(entry);
      return { vote, logprobs: { content: [entry], refusal: null } };
    }
    const arrays = this.offsets.next(lp);
    appendCompletionLogprobs(this.completionArrays, arrays);
    return { vote, logprobs: arrays };
  }

  /**
   * The end-of-text draw that ended the choice: no token of it, but drawn as one is, so it counts in the mean (an
   * empty completion is not the best there is, nor a text whose unlikely end was left out).
   */
  ended(end: { readonly token: number; readonly logits: ArrayLike<number>; readonly logSumExp?: number }): void {
    this.logprobTotal += tokenLogprob(end.logits, end.token, 0, end.logSumExp).logprob;
    this.draws += 1;
  }

  /** Its draws' mean log-probability (its tokens', and the end-of-text draw that ended it; 0 with none): what best_of ranks by. */
  get meanLogprob(): number {
    return this.draws === 0 ? 0 : this.logprobTotal / this.draws;
  }

  /** The whole choice's log-probabilities. */
  wholeLogprobs(): ChunkLogprobs {
    if (this.logprobs === null) return null;
    if (this.kind === 'chat') return { content: this.chatEntries, refusal: null };
    // An echoed prompt's come first (none when the prompt was not echoed).
    const whole = emptyCompletionLogprobs();
    appendCompletionLogprobs(whole, this.promptArrays);
    appendCompletionLogprobs(whole, this.completionArrays);
    return whole;
  }
}
