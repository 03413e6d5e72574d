// Where a request's session starts, first or replayed (a re-partition under it): a scored prompt (echo) goes on
// from the position it reached, so that no position is scored twice or skipped, and generation from what it has.
import { describe, expect, it } from 'vitest';
import { maxScoreRows } from '../../shared/protocol/messages.js';
import { firstScoreRows, resumeAt } from './session-runner.js';

const PROMPT = [11, 12, 13, 14];

describe('resumeAt', () => {
  it('a plain request prefills its prompt and, replayed, the tokens generated so far', () => {
    expect(resumeAt(PROMPT, false, 0, [])).toEqual({ prompt: PROMPT, forced: [] });
    expect(resumeAt(PROMPT, false, 0, [7, 8])).toEqual({ prompt: [...PROMPT, 7, 8], forced: [] });
  });

  it('a scored prompt prefills its first token and feeds the rest a step each; replayed, from the position it reached', () => {
    expect(resumeAt(PROMPT, true, 0, [])).toEqual({ prompt: [11], forced: [12, 13, 14] });
    // Positions 1 and 2 were scored: the replay prefills up to the token position 2 predicted, and scores 3 on.
    expect(resumeAt(PROMPT, true, 2, [])).toEqual({ prompt: [11, 12, 13], forced: [14] });
    // Every position scored, tokens generated: the replay is a plain one.
    expect(resumeAt(PROMPT, true, 3, [7])).toEqual({ prompt: [...PROMPT, 7], forced: [] });
    // A one-token prompt has nothing to score.
    expect(resumeAt([11], true, 0, [])).toEqual({ prompt: [11], forced: [] });
  });
});

describe('firstScoreRows', () => {
  it("a fresh scored prompt's step 0 runs all but its last position, within MAX_SCORED_FORM_ROWS (maxScoreRows where rows go whole) and the operator's most", () => {
    expect(firstScoreRows(10, 2048)).toBe(9);
    expect(firstScoreRows(500, 2048)).toBe(96);
    // Scored forms, 268 bytes a row, at any vocabulary a form fits: 4 whole rows of 49 152 would fill a message.
    expect(firstScoreRows(500, 49_152)).toBe(96);
    expect(maxScoreRows(49_152)).toBe(4);
    // A vocabulary too small for forms (under 268 tokens): whole rows, as many as fit.
    expect(firstScoreRows(500, 200)).toBe(Math.min(499, maxScoreRows(200)));
    expect(firstScoreRows(10, 2048, 3)).toBe(3);
    // Fewer than 2 rows: a position a step, as before.
    expect(firstScoreRows(2, 2048)).toBe(1);
    expect(firstScoreRows(1, 2048)).toBe(1);
    expect(firstScoreRows(10, 2048, 1)).toBe(1);
    // Fewer where the graph's rows of logits would pass SCORED_OUTPUT_BYTES.
    expect(firstScoreRows(500, 128_256)).toBe(49);
    expect(firstScoreRows(500, 1_000_000)).toBe(6);
    expect(firstScoreRows(500, 20_000_000)).toBe(1);
  });
});
