// A volunteer's tab closes mid-generation: a spare of its stage takes its
// place, rebuilds its KV cache from the agreed inputs, and the answer is the
// reference runner's, token for token.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FAULT_AFTER_STEPS } from '../shared/swarm/faults.js';
import { type E2eSwarm, startE2eSwarm } from './harness.js';

/** Volunteers fill stages 0, 1, 2, 0, …: index 4 is in stage 1's route, index 10 is stage 1's spare. */
const CRASHING = 4;
const SPARE = 10;
const PROMPT = 'Emma Woodhouse, handsome, clever, and rich,';
const TOKENS = 16;

let e: E2eSwarm;
beforeAll(async () => {
  e = await startE2eSwarm({ volunteers: SPARE + 1, allowFaults: true, faultOf: (i) => (i === CRASHING ? 'crash' : null) });
});
afterAll(() => e?.close());

describe('a tab closes mid-generation', () => {
  it('a spare takes over and the tokens do not change', async () => {
    const status = (i: number) => e.swarm.pages[i]?.evaluate(() => window.webswarmVolunteer);
    const crashing = await status(CRASHING);
    const spare = await status(SPARE);
    expect(crashing?.stage).toBe(1);
    expect(spare?.stage).toBe(1);
    const expected = await e.expected(PROMPT, TOKENS);
    const { status: code, json } = await e.complete({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0 });
    expect(code).toBe(200);
    expect(json.webswarm.tokens).toEqual(expected);
    // The route as it ended: the spare in the crashed tab's place.
    expect(json.webswarm.route[1]).toContain(spare?.volunteerId);
    expect(json.webswarm.route[1]).not.toContain(crashing?.volunteerId);
    expect((await status(SPARE))?.stepsComputed).toBe(TOKENS);
    expect(FAULT_AFTER_STEPS).toBeLessThan(TOKENS);
  });
});
