// The chat page's fields, checked in its own words before sending (before, the server's refusal came back naming
// the protocol's fields: "ERR_BAD_REQUEST: chat:generate: maxTokens must be an integer in [1, 512]").
import { describe, expect, it } from 'vitest';
import { MAX_GENERATE_TOKENS, MAX_PROMPT_CHARS, parseGenerate } from '../../shared/protocol/validate.js';
import { type ChatInput, chatInputProblem } from './chat-input.js';

const OK: ChatInput = { prompt: 'Emma', maxTokens: 32, temperature: 0, seed: 0 };

describe('chatInputProblem', () => {
  it('lets through what the server takes, at every bound', () => {
    for (const i of [
      OK,
      { ...OK, prompt: 'x'.repeat(MAX_PROMPT_CHARS) },
      { ...OK, maxTokens: 1 },
      { ...OK, maxTokens: MAX_GENERATE_TOKENS },
      { ...OK, temperature: 2 },
      { ...OK, seed: 0xffffffff },
    ]) {
      expect(chatInputProblem(i)).toBeNull();
      expect(parseGenerate({ requestId: 'r', topP: 1, apiKey: null, ...i }).ok).toBe(true);
    }
  });

  it('stops, in the page’s words, each value the server would refuse', () => {
    const cases: [Partial<ChatInput>, string][] = [
      [{ prompt: '' }, 'Type a prompt first.'],
      [
        { prompt: 'x'.repeat(MAX_PROMPT_CHARS + 1) },
        `The prompt is ${MAX_PROMPT_CHARS + 1} characters long; at most ${MAX_PROMPT_CHARS} can be sent.`,
      ],
      [{ maxTokens: 0 }, `Max tokens must be a whole number from 1 to ${MAX_GENERATE_TOKENS}.`],
      [{ maxTokens: MAX_GENERATE_TOKENS + 1 }, `Max tokens must be a whole number from 1 to ${MAX_GENERATE_TOKENS}.`],
      [{ maxTokens: 2.5 }, `Max tokens must be a whole number from 1 to ${MAX_GENERATE_TOKENS}.`],
      // An emptied number field reads as NaN.
      [{ temperature: Number.NaN }, 'Temperature must be a number from 0 to 2.'],
      [{ temperature: 2.1 }, 'Temperature must be a number from 0 to 2.'],
      [{ seed: -1 }, 'Seed must be a whole number from 0 to 4294967295.'],
      [{ seed: 1e20 }, 'Seed must be a whole number from 0 to 4294967295.'],
    ];
    for (const [change, words] of cases) {
      const i = { ...OK, ...change };
      expect(chatInputProblem(i)).toBe(words);
      expect(parseGenerate({ requestId: 'r', topP: 1, apiKey: null, ...i }).ok).toBe(false);
    }
  });
});
