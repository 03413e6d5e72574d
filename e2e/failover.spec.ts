// Volunteers leave mid-generation, at the same step: in stage 1 a tab closes,
// in stage 0 a tab loses its network and comes back 2 s later. In each stage
// a spare takes the place, rebuilds its KV cache from the agreed inputs, and
// the answer is the reference runner's, token for token. The tab that lost
// its network joins the swarm again by itself, as a new volunteer.
//
// Another replica of stage 1 is silent, so after the crash that stage has one
// honest replica left and no majority without the spare: every step after the
// crash waits for the spare's replay. (With two honest replicas left the steps
// went on without it, and whether the spare had caught up by the last token
// was a race against the machine's speed.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FAULT_AFTER_STEPS, type FaultKind } from '../shared/swarm/faults.js';
import { type E2eSwarm, startE2eSwarm } from './harness.js';

/**
 * Volunteers fill stages 0, 1, 2, 0, …: indices 0, 3, 6 are stage 0's route
 * and 9 its spare; 1, 4, 7 are stage 1's route and 10 its spare.
 */
const DISCONNECTING = 3;
const STAGE0_SPARE = 9;
const SILENT = 1;
const CRASHING = 4;
const SPARE = 10;
const FAULTS: Record<number, FaultKind> = { [DISCONNECTING]: 'disconnect', [SILENT]: 'silent', [CRASHING]: 'crash' };
const PROMPT = 'Emma Woodhouse, handsome, clever, and rich,';
const TOKENS = 16;

let e: E2eSwarm;
beforeAll(async () => {
  e = await startE2eSwarm({
    volunteers: SPARE + 1,
    allowFaults: true,
    faultOf: (i) => FAULTS[i] ?? null,
    // Routes are drawn at random; drawing 0 makes the first-opened tabs the route and the last ones the spares.
    random: () => 0,
  });
});
afterAll(() => e?.close());

describe('tabs close or lose their network mid-generation', () => {
  it('spares take over, the tokens do not change, and the tab that lost its network comes back', async () => {
    const status = (i: number) => e.swarm.pages[i]?.evaluate(() => window.webswarmVolunteer);
    const crashing = await status(CRASHING);
    const spare = await status(SPARE);
    const disconnecting = await status(DISCONNECTING);
    const stage0Spare = await status(STAGE0_SPARE);
    expect(crashing?.stage).toBe(1);
    expect(spare?.stage).toBe(1);
    expect((await status(SILENT))?.stage).toBe(1);
    expect(disconnecting?.stage).toBe(0);
    expect(stage0Spare?.stage).toBe(0);
    const expected = await e.expected(PROMPT, TOKENS);
    const { status: code, json } = await e.complete({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0 });
    expect(code).toBe(200);
    expect(json.webswarm.tokens).toEqual(expected);
    // The route as it ended: the spare in the crashed tab's place.
    expect(json.webswarm.route[1]).toContain(spare?.volunteerId);
    expect(json.webswarm.route[1]).not.toContain(crashing?.volunteerId);
    expect(json.webswarm.route[0]).toContain(stage0Spare?.volunteerId);
    expect(json.webswarm.route[0]).not.toContain(disconnecting?.volunteerId);
    // The spare replayed the steps before the crash and computed every one after it:
    // the steps after the crash had no majority in stage 1 without it.
    expect((await status(SPARE))?.stepsComputed).toBe(TOKENS);
    expect(FAULT_AFTER_STEPS).toBeLessThan(TOKENS);
    // Every token was agreed by two of stage 1's three replicas (the silent one never answers),
    // after the crash by the honest one and the spare.
    for (const v of json.webswarm.votes) expect(v.votes[1]).toMatchObject({ agreed: 2, replicas: 3 });
    // The tab that lost its network reconnected by itself, registered again under a
    // new id, and loaded its stage again: the server lists it as ready.
    const back = e.swarm.pages[DISCONNECTING];
    await back?.waitForFunction(
      (old) => window.webswarmVolunteer?.state === 'ready' && window.webswarmVolunteer.volunteerId !== old,
      disconnecting?.volunteerId,
      { timeout: 60_000 },
    );
    const newId = (await status(DISCONNECTING))?.volunteerId;
    // Ready for the server once it has answered its challenge step.
    await expect.poll(() => e.server.coordinator?.volunteers().find((v) => v.id === newId)?.ready, { timeout: 30_000 }).toBe(true);
  });
});
