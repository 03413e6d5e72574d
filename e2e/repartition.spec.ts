// Live re-partition in Chromium: six volunteer tabs for 3 stages × r = 2 and a
// server with REPARTITION on and no fallback. Stage 1's first tab closes
// after a few steps of a generation: 5 tabs cannot hold 3 stages × 2, so the
// model is cut anew, every tab fetches its new layers, proves them, and the
// running request, replayed on the new partition, answers the reference
// runner's tokens; so does the next one.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type E2eSwarm, startE2eSwarm } from './harness.js';

/** Volunteers fill stages 0, 1, 2, 0, 1, 2 in the order they open: index 1 is stage 1's first tab. */
const CRASHING = 1;
const PROMPT = 'Emma Woodhouse, handsome, clever, and rich, with a comfortable home';
const TOKENS = 16;

let e: E2eSwarm;
beforeAll(async () => {
  e = await startE2eSwarm({
    volunteers: 6,
    redundancy: 2,
    allowFaults: true,
    faultOf: (i) => (i === CRASHING ? 'crash' : null),
    repartition: true,
  });
});
afterAll(() => e?.close());

describe('re-partition with browser volunteers', () => {
  it('a tab closes mid-generation until 3 stages no longer serve: the running request gives the reference tokens, and the new partition serves the next', async () => {
    const status = (i: number) => e.swarm.pages[i]?.evaluate(() => window.webswarmVolunteer);
    expect((await status(CRASHING))?.stage).toBe(1);
    const expected = await e.expected(PROMPT, TOKENS);
    const first = await e.complete({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0 });
    expect(first.json.error).toBeUndefined();
    expect(first.status).toBe(200);
    expect(first.json.webswarm.tokens).toEqual(expected);
    const coordinator = e.server.coordinator;
    expect(coordinator?.repartitions).toBe(1);
    expect(coordinator?.replays).toBeGreaterThanOrEqual(1);
    const stages = coordinator?.modelInfo.stages ?? 0;
    expect(stages).toBeLessThan(3);
    // The next request routes on the new partition, through tabs that proved their new stages.
    const second = await e.complete({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0 });
    expect(second.status).toBe(200);
    expect(second.json.webswarm.tokens).toEqual(expected);
    expect(second.json.webswarm.route).toHaveLength(stages);
    expect(second.json.webswarm.server_stages).toEqual([]);
  });
});
