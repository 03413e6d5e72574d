// A whole (not streamed) answer of POST /v1/completions or /v1/chat/completions: each prompt's choices (best_of's
// ranked candidates) in OpenAI's order, with webswarm's extension.
import type { ApiCompletion } from './api-swarm.js';
import { type ChoiceState, serverStagesOf } from './choice-state.js';
import type { ChatParams, CompletionParams } from './openai-params.js';

/**
 * best_of's score of each candidate: its mean log-probability per draw, and for candidates with the same draws (the
 * same tokens, ended the same way) the lowest index's. Their draws had the same logits (a function of prompt +
 * tokens), but computed by two paths (with echo, candidate 0's first position comes from scoring the prompt a token
 * a step, the others' from a prefill) they differ in float32 rounding, and the tie went by that noise rather than to
 * the lower index.
 */
export function rankingMeans(
  candidates: readonly { readonly meanLogprob: number; readonly tokens: readonly number[]; readonly end?: unknown }[],
): number[] {
  const seen = new Map<string, number>();
  return candidates.map((c) => {
    const key = `${c.tokens.join(',')}${c.end === undefined ? '' : ' end'}`;
    const mean = seen.get(key) ?? c.meanLogprob;
    seen.set(key, mean);
    return mean;
  });
}

/**
 * The choices a response returns: with best_of > n, the n candidates with the highest mean log-probability per
 * draw (under the logits their votes agreed on), best first, the lower index on a tie; else every one, in order.
 */
export function returnedChoices<T extends { readonly index: number; readonly meanLogprob: number }>(
  candidates: readonly T[],
  n: number,
): T[] {
  if (candidates.length === n) return [...candidates];
  return [...candidates].sort((a, b) => b.meanLogprob - a.meanLogprob || a.index - b.index).slice(0, n);
}

/** One prompt of a request, ready to run. */
export interface Prompt {
  /** Its place in the request's prompts (0 for a chat's conversation). */
  readonly index: number;
  /** Its text (a prompt of ids: their decoding, less a character they leave unfinished). */
  readonly text: string;
  /** A completion's prompt sent as token ids: run as they are, `text` being their text. */
  readonly ids?: readonly number[];
  /** The bytes of a character that the prompt of ids ends and leaves unfinished, and how many ids hold them. */
  readonly unfinished: { readonly ids: number; readonly bytes: readonly number[] };
}

/** A prompt's generations once ended: its choices (best_of candidates), each with its completion. */
export interface PromptDone {
  readonly prompt: Prompt;
  readonly choices: readonly ChoiceState[];
  readonly done: readonly ApiCompletion[];
}

/**
 * A whole (not streamed) response's choices and webswarm extension: each prompt's returned choices at index
 * prompt × n + i (with best_of > n its best n candidates, best first), and every token's vote. One prompt keeps the
 * extension's shape of before (the choice's data at its top with n = 1); a batch lists every choice with its prompt.
 */
export function wholeResponse(
  finished: readonly PromptDone[],
  p: CompletionParams | ChatParams,
  kind: 'completion' | 'chat',
  echo: boolean,
  verifiedOf: (c: ApiCompletion, choice: ChoiceState) => boolean,
) {
  const ranked = p.kind === 'completion' && p.bestOf > p.n;
  const answers = finished.map((d) => {
    // The candidates ranked (best_of > n), or every choice; each returned at its place in this list.
    const means = rankingMeans(d.choices.map((choice, i) => ({ ...(d.done[i] as ApiCompletion), meanLogprob: choice.meanLogprob })));
    const returned = returnedChoices(
      d.choices.map((choice) => ({ index: choice.index, meanLogprob: means[choice.index] as number, choice })),
      p.n,
    ).map((r) => r.choice);
    return { ...d, means, returned, completionOf: (choice: ChoiceState) => d.done[choice.index] as ApiCompletion };
  });
  type Answer = (typeof answers)[number];
  const placeOf = (a: Answer, choice: ChoiceState) => {
    const i = a.returned.indexOf(choice);
    return i < 0 ? null : a.prompt.index * p.n + i;
  };
  const choices = answers.flatMap((a) =>
    a.returned.map((choice) => {
      const c = a.completionOf(choice);
      const index = placeOf(a, choice) as number;
      const message =
        kind === 'chat'
          ? { index, message: { role: 'assistant', content: c.text, refusal: null } }
          : { index, text: echo ? a.prompt.text + c.text : c.text };
      return { ...message, logprobs: choice.wholeLogprobs(), finish_reason: c.finishReason };
    }),
  );
  // webswarm's extension: the token ids, the route and every token's vote (per choice when there are several).
  const ext = (a: Answer, choice: ChoiceState) => {
    const c = a.completionOf(choice);
    return {
      ...(ranked ? { candidate: choice.index } : {}),
      // The sampler's seed for this choice (the request's, or the one drawn for it, + the choice's index).
      seed: (p.seed + choice.index) >>> 0,
      tokens: c.tokens,
      route: c.route,
      server_stages: serverStagesOf([...choice.promptVotes, ...choice.votes]),
      votes: choice.votes,
      ...(echo ? { prompt_votes: choice.promptVotes } : {}),
    };
  };
  const one = answers.length === 1 ? (answers[0] as Answer) : null;
  /** A batch names each choice's (and candidate's) prompt. */
  const promptOf = (a: Answer) =>
    one === null ? { prompt: a.prompt.index, prompt_tokens: (a.done[0] as ApiCompletion).promptTokens } : {};
  return {
    choices,
    webswarm: {
      redundancy: ((finished[0] as PromptDone).done[0] as ApiCompletion).redundancy,
      // Which candidates are returned rests on every candidate's votes.
      verified: answers.every((a) => a.choices.every((choice) => verifiedOf(a.completionOf(choice), choice))),
      ...(one === null ? {} : { prompt_tokens: (one.done[0] as ApiCompletion).promptTokens }),
      ...(one !== null && p.n === 1
        ? ext(one, one.returned[0] as ChoiceState)
        : {
            choices: answers.flatMap((a) =>
              a.returned.map((choice) => ({
                index: placeOf(a, choice),
                ...promptOf(a),
                verified: verifiedOf(a.completionOf(choice), choice),
                ...ext(a, choice),
              })),
            ),
          }),
      // best_of: every candidate, how it ranked (seed: the request's seed + its index reproduces it alone).
      ...(ranked
        ? {
            candidates: answers.flatMap((a) =>
              a.choices.map((choice) => ({
                ...(one === null ? { prompt: a.prompt.index } : {}),
                candidate: choice.index,
                seed: (p.seed + choice.index) >>> 0,
                mean_logprob: a.means[choice.index],
                tokens: a.completionOf(choice).tokens.length,
                verified: verifiedOf(a.completionOf(choice), choice),
                returned: placeOf(a, choice),
              })),
            ),
          }
        : {}),
    },
  };
}
