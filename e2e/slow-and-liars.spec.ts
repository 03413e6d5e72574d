// Two liars (that disagree with each other) in one stage, with two spares
// ready, and a slow replica in the next: the stage without a majority is
// retried on the spares across real data channels, the slow one is never
// waited for, and the answer is the reference runner's, token for token.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FaultKind } from '../shared/swarm/faults.js';
import { type E2eSwarm, startE2eSwarm } from './harness.js';

/**
 * 2 stages × 3 replicas. Volunteers fill the emptiest stage (the first on a
 * tie): 0 1 0 1 0 1 | 0 1 0. The route takes the first three ready of each
 * stage: stage 0 gets 0, 2, 4 (two liars) and keeps 6 and 8 as spares; stage 1
 * gets 1, 3, 5, of which 1 is slow.
 */
const LIARS = [2, 4]; // stage 0
const SPARES = [6, 8]; // stage 0
const SLOW = 1; // stage 1
const VOLUNTEERS = 9;
const PROMPT = 'Emma Woodhouse, handsome, clever, and rich,';
const TOKENS = 16;

function faultOf(i: number): FaultKind | null {
  if (i === SLOW) return 'slow';
  return LIARS.includes(i) ? 'noise' : null;
}

let e: E2eSwarm;
beforeAll(async () => {
  // Routes are drawn at random; drawing 0 makes the first-opened tabs the route and the last ones the spares.
  e = await startE2eSwarm({ volunteers: VOLUNTEERS, stages: 2, allowFaults: true, faultOf, random: () => 0 });
});
afterAll(() => e?.close());

describe('a stage without an honest majority, and a slow replica', () => {
  it('retries the stage on spares, never waits for the slow one, and gives the reference tokens', async () => {
    const status = (i: number) => e.swarm.pages[i]?.evaluate(() => window.webswarmVolunteer);
    const spareIds = await Promise.all(SPARES.map(async (i) => (await status(i))?.volunteerId));
    for (const i of [...LIARS, ...SPARES]) expect((await status(i))?.stage).toBe(0);
    expect((await status(SLOW))?.stage).toBe(1);
    const expected = await e.expected(PROMPT, TOKENS);
    const { status: code, json } = await e.complete({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0 });
    // Read the slow replica's progress the moment the answer is in.
    const slowSteps = (await status(SLOW))?.stepsComputed ?? TOKENS;
    expect(code).toBe(200);
    expect(json.webswarm.tokens).toEqual(expected);
    // The two spares took the liars' places in stage 0.
    for (const id of spareIds) expect(json.webswarm.route[0]).toContain(id);
    // 1 s a step: had the swarm waited for it, it would have finished every step.
    expect(slowSteps).toBeLessThan(TOKENS);
  });
});
