// A slow replica in one stage and two liars (that disagree with each other) in
// another, with two spares ready: the slow one is never waited for, the stage
// without a majority is retried on the spares, and the answer is the
// reference runner's, token for token.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FaultKind } from '../shared/swarm/faults.js';
import { type E2eSwarm, startE2eSwarm } from './harness.js';

/**
 * Volunteers fill the emptiest stage: 0 1 2 0 1 2 0 1 2 | 0 1 2 0 1. The route
 * takes the first three of each stage; 10 and 13 are stage 1's spares.
 */
const SLOW = 3; // stage 0
const LIARS = [4, 7]; // stage 1
const SPARES = [10, 13]; // stage 1
const VOLUNTEERS = 14;
const PROMPT = 'Emma Woodhouse, handsome, clever, and rich,';
const TOKENS = 16;

function faultOf(i: number): FaultKind | null {
  if (i === SLOW) return 'slow';
  return LIARS.includes(i) ? 'noise' : null;
}

let e: E2eSwarm;
beforeAll(async () => {
  e = await startE2eSwarm({ volunteers: VOLUNTEERS, allowFaults: true, faultOf });
});
afterAll(() => e?.close());

describe('a slow replica and a stage without an honest majority', () => {
  it('retries the stage on spares, never waits for the slow one, and gives the reference tokens', async () => {
    const status = (i: number) => e.swarm.pages[i]?.evaluate(() => window.webswarmVolunteer);
    const spareIds = await Promise.all(SPARES.map(async (i) => (await status(i))?.volunteerId));
    for (const i of [...LIARS, ...SPARES]) expect((await status(i))?.stage).toBe(1);
    expect((await status(SLOW))?.stage).toBe(0);
    const expected = await e.expected(PROMPT, TOKENS);
    const { status: code, json } = await e.complete({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0 });
    // Read the slow replica's progress the moment the answer is in.
    const slowSteps = (await status(SLOW))?.stepsComputed ?? TOKENS;
    expect(code).toBe(200);
    expect(json.webswarm.tokens).toEqual(expected);
    // The two spares took the liars' places in stage 1.
    for (const id of spareIds) expect(json.webswarm.route[1]).toContain(id);
    // 1 s a step: had the swarm waited for it, it would have finished every step.
    expect(slowSteps).toBeLessThan(TOKENS);
  });
});
