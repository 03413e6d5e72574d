// A volunteer's tab closes mid-generation: a spare of its stage takes its
// place, rebuilds its KV cache from the agreed inputs, and the answer is the
// reference runner's, token for token.
//
// Another replica of the same stage is silent, so after the crash the stage
// has one honest replica left and no majority without the spare: every step
// after the crash waits for the spare's replay. (With two honest replicas left
// the steps went on without it, and whether the spare had caught up by the
// last token was a race against the machine's speed.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FAULT_AFTER_STEPS } from '../shared/swarm/faults.js';
import { type E2eSwarm, startE2eSwarm } from './harness.js';

/** Volunteers fill stages 0, 1, 2, 0, …: indices 1, 4, 7 are stage 1's route, index 10 is stage 1's spare. */
const SILENT = 1;
const CRASHING = 4;
const SPARE = 10;
const PROMPT = 'Emma Woodhouse, handsome, clever, and rich,';
const TOKENS = 16;

let e: E2eSwarm;
beforeAll(async () => {
  e = await startE2eSwarm({
    volunteers: SPARE + 1,
    allowFaults: true,
    faultOf: (i) => (i === CRASHING ? 'crash' : i === SILENT ? 'silent' : null),
  });
});
afterAll(() => e?.close());

describe('a tab closes mid-generation', () => {
  it('a spare takes over and the tokens do not change', async () => {
    const status = (i: number) => e.swarm.pages[i]?.evaluate(() => window.webswarmVolunteer);
    const crashing = await status(CRASHING);
    const spare = await status(SPARE);
    expect(crashing?.stage).toBe(1);
    expect(spare?.stage).toBe(1);
    expect((await status(SILENT))?.stage).toBe(1);
    const expected = await e.expected(PROMPT, TOKENS);
    const { status: code, json } = await e.complete({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0 });
    expect(code).toBe(200);
    expect(json.webswarm.tokens).toEqual(expected);
    // The route as it ended: the spare in the crashed tab's place.
    expect(json.webswarm.route[1]).toContain(spare?.volunteerId);
    expect(json.webswarm.route[1]).not.toContain(crashing?.volunteerId);
    // The spare replayed the steps before the crash and computed every one after it:
    // the steps after the crash had no majority in stage 1 without it.
    expect((await status(SPARE))?.stepsComputed).toBe(TOKENS);
    expect(FAULT_AFTER_STEPS).toBeLessThan(TOKENS);
    // Every token was agreed by two of stage 1's three replicas (the silent one never answers),
    // after the crash by the honest one and the spare.
    for (const v of json.webswarm.votes) expect(v.votes[1]).toMatchObject({ agreed: 2, replicas: 3 });
  });
});
