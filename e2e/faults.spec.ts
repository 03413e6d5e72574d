// Lying volunteers in real tabs: one noisy replica in every stage of a
// 3 × 3 swarm (a test-mode server accepts fault injection). The answer must be
// the reference runner's; the liars lose reputation and are evicted.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EVICT_AFTER_DISAGREEMENTS } from '../signal-server/coordinator/reputation.js';
import { fetchSwarmListing } from '../testing/swarm-listing.js';
import { consent } from '../tools/local-swarm.js';
import { type E2eSwarm, startE2eSwarm } from './harness.js';

const STAGES = 3;
const REDUNDANCY = 3;
const PROMPT = '"My dear Mr. Bennet," said his lady to him one day,';
const TOKENS = 16;

let e: E2eSwarm;
// Volunteers fill stages 0, 1, 2, 0, …: the first three are one liar per stage.
beforeAll(async () => {
  e = await startE2eSwarm({ volunteers: STAGES * REDUNDANCY, allowFaults: true, faultOf: (i) => (i < STAGES ? 'noise' : null) });
});
afterAll(() => e?.close());

describe('one noisy replica in every stage', () => {
  it('does not change a token; each liar loses reputation, is evicted, and is refused when it comes back', async () => {
    const liarPages = e.swarm.pages.slice(0, STAGES);
    const liars = await Promise.all(liarPages.map((p) => p.evaluate(() => window.webswarmVolunteer?.volunteerId)));
    const expected = await e.expected(PROMPT, TOKENS);
    const { status, json } = await e.complete({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0 });
    expect(status).toBe(200);
    expect(json.webswarm.tokens).toEqual(expected);
    for (const [stage, id] of liars.entries()) expect(json.webswarm.route[stage]).toContain(id);
    // Each liar disagreed with its stage's majority step after step, and was evicted.
    for (const page of liarPages) {
      await page.waitForFunction(() => window.webswarmVolunteer?.state === 'evicted', null, { timeout: 30_000 });
      const s = await page.evaluate(() => window.webswarmVolunteer);
      expect(s?.score?.disagreed).toBeGreaterThanOrEqual(EVICT_AFTER_DISAGREEMENTS);
      expect(s?.score?.reputation).toBeLessThan(0.5);
    }
    const listing = (await fetchSwarmListing(e.server.address().url)).list;
    expect(
      listing.filter((v) => liars.includes(v.id)),
      'liars still listed',
    ).toEqual([]);
    expect(listing).toHaveLength(STAGES * (REDUNDANCY - 1));
    expect(
      listing.filter((v) => v.disagreed !== 0 || v.agreed === 0),
      'honest volunteers that disagreed or never agreed',
    ).toEqual([]);
    // An evicted volunteer that comes back (same browser, same key) is refused.
    const liarPage = liarPages[0];
    await liarPage?.reload();
    if (liarPage !== undefined) await consent(liarPage);
    await liarPage?.waitForFunction(() => window.webswarmVolunteer?.state === 'evicted', null, { timeout: 30_000 });
    expect(await liarPage?.evaluate(() => window.webswarmVolunteer?.lastError)).toMatch(/ERR_BANNED/);
  });
});
