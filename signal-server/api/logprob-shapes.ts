// OpenAI's two shapes of log-probabilities: chat's list of entries, and the
// legacy completions' parallel arrays with character offsets.
import type { TokenLogprob } from './logprobs.js';
import { beginsCharacter, type TokenTexts, unfinishedBytes } from './token-text.js';

/** One token of chat's `choices[].logprobs.content`. */
export interface ChatLogprob {
  readonly token: string;
  readonly logprob: number;
  readonly bytes: readonly number[];
  readonly top_logprobs: readonly { token: string; logprob: number; bytes: readonly number[] }[];
}

export function chatLogprob(lp: TokenLogprob, texts: TokenTexts): ChatLogprob {
  const own = texts.of(lp.token);
  return {
    token: own.token,
    logprob: lp.logprob,
    bytes: own.bytes,
    top_logprobs: lp.top.map((t) => {
      const x = texts.of(t.token);
      return { token: x.token, logprob: t.logprob, bytes: x.bytes };
    }),
  };
}

/** `choices[].logprobs` of /v1/completions (for a whole response, or the tokens of one chunk). */
export interface CompletionLogprobs {
  tokens: string[];
  /** null for an echoed prompt's first token, which nothing predicts. */
  token_logprobs: (number | null)[];
  /** The `logprobs` most likely tokens at each position, and the generated one (so up to logprobs + 1); null as above. */
  top_logprobs: (Record<string, number> | null)[];
  /** Where each token's text starts, in characters (Unicode code points, as Python counts them) from the start of the prompt. */
  text_offset: number[];
}

/**
 * Builds completions' log-probabilities token by token; the offsets count the text before each token. A token that
 * finishes a character split across tokens stands where the character does; one whose bytes do not continue such a
 * character stands after the U+FFFD that the unfinished bytes become in the text.
 */
export class CompletionLogprobsBuilder {
  /** Holds back a character split across tokens until its last byte, as the text does. */
  private readonly decoder = new TextDecoder('utf-8');
  private offset: number;
  /** The bytes of a character begun and not yet finished. */
  private pending: readonly number[];

  constructor(
    private readonly texts: TokenTexts,
    promptChars: number,
    /** Bytes that begin a character the text before leaves unfinished (a prompt of token ids may end inside one). */
    pending: readonly number[] = [],
  ) {
    this.offset = promptChars;
    this.pending = pending;
    this.decoder.decode(Uint8Array.from(pending), { stream: true });
  }

  /** The arrays for the next token (append them for a whole response). */
  next(lp: TokenLogprob): CompletionLogprobs {
    const own = this.texts.of(lp.token);
    // No prototype: a token may be spelled "__proto__".
    const top = Object.create(null) as Record<string, number>;
    for (const t of lp.top) top[this.texts.of(t.token).token] = t.logprob;
    top[own.token] = lp.logprob;
    return { tokens: [own.token], token_logprobs: [lp.logprob], top_logprobs: [top], text_offset: [this.advance(own.bytes)] };
  }

  /** The arrays for an echoed prompt's first token: nothing before it predicts it, so no log-probability. */
  first(token: number): CompletionLogprobs {
    const own = this.texts.of(token);
    return { tokens: [own.token], token_logprobs: [null], top_logprobs: [null], text_offset: [this.advance(own.bytes)] };
  }

  /** Counts a token's bytes into the text; returns where the token stands. */
  private advance(bytes: readonly number[]): number {
    let at = this.offset;
    // Unfinished bytes that this token does not continue are a U+FFFD of their own, before the token.
    if (this.pending.length > 0 && bytes.length > 0 && !beginsCharacter([...this.pending, bytes[0] as number]))
      at += codePoints(new TextDecoder('utf-8').decode(Uint8Array.from(this.pending)));
    this.offset += codePoints(this.decoder.decode(Uint8Array.from(bytes), { stream: true }));
    const all = [...this.pending, ...bytes];
    this.pending = all.slice(all.length - unfinishedBytes(all));
    return at;
  }
}

/**
 * A text's length in characters as OpenAI's `text_offset` counts them: Unicode code points (Python's len), not
 * UTF-16 units (JavaScript's), so that an emoji counts once and a Python client can slice the text by them.
 */
export function codePoints(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

export function emptyCompletionLogprobs(): CompletionLogprobs {
  return { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
}

/** Appends `more` to `into`. */
export function appendCompletionLogprobs(into: CompletionLogprobs, more: CompletionLogprobs): void {
  into.tokens.push(...more.tokens);
  into.token_logprobs.push(...more.token_logprobs);
  into.top_logprobs.push(...more.top_logprobs);
  into.text_offset.push(...more.text_offset);
}
