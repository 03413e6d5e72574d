// The landing page says how many volunteers are ready and whether the swarm
// can answer, live: a volunteer tab becoming ready turns "no volunteers yet"
// into "1 of 1 … answers now", and its leaving turns it back. At r = 2 one
// ready tab is not a route: the page waits for the second.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { goldenModelDir } from '../testing/golden.js';
import { startLocalSwarm } from '../tools/local-swarm.js';
import { E2E_MODEL, type OneStageRig, startOneStageRig, startTestServer } from './harness.js';

/** The page polls /api/swarm every 2 s. */
const SEEN_WITHIN_MS = 10_000;
let rig: OneStageRig;

beforeAll(async () => {
  rig = await startOneStageRig();
});
afterAll(() => rig?.close());

describe('the landing page', () => {
  it('shows volunteers ready per stage and when the swarm can answer', async () => {
    const url = rig.server.address().url;
    const page = await rig.browser.newPage();
    await page.goto(`${url}/`);
    const line = page.getByTestId('readiness');
    await expect
      .poll(() => line.textContent({ timeout: 1000 }), { timeout: SEEN_WITHIN_MS })
      .toBe('No volunteers yet: the swarm answers once every stage has the 1 ready volunteer a route needs.');

    const swarm = await startLocalSwarm({ serverUrl: url, volunteers: 1 });
    try {
      await expect
        .poll(() => line.textContent({ timeout: 1000 }), { timeout: SEEN_WITHIN_MS })
        .toBe('1 of 1 volunteer ready (per stage: 1): every stage has the 1 ready volunteer a route needs, the swarm answers now.');
    } finally {
      await swarm.close();
    }
    await expect
      .poll(() => line.textContent({ timeout: 1000 }), { timeout: SEEN_WITHIN_MS })
      .toBe('No volunteers yet: the swarm answers once every stage has the 1 ready volunteer a route needs.');
  });

  it("at r = 2, one ready volunteer in the stage is not enough: it waits for the route's second, and the volunteer's page says why it idles", async () => {
    const cache = mkdtempSync(join(tmpdir(), 'webswarm-landing-r2-'));
    const server = await startTestServer([{ dir: goldenModelDir(E2E_MODEL), stages: 1 }], cache, { redundancy: 2, quiet: true });
    const context = await rig.browser.newContext();
    try {
      // The one volunteer, on its own page: ready, and told that its stage waits for a second volunteer (before, only
      // "Ready, waiting for work").
      const tab = await context.newPage();
      await tab.goto(`${server.address().url}/volunteer?backend=wasm`);
      await tab.getByTestId('consent').click();
      await tab.waitForFunction(() => window.webswarmVolunteer?.state === 'ready', null, { timeout: 90_000 });
      await expect
        .poll(
          () =>
            tab
              .getByTestId('idle-reason')
              .textContent({ timeout: 1000 })
              .catch(() => null),
          { timeout: SEEN_WITHIN_MS * 3 },
        )
        .toBe(
          "This tab's stage 0 has 1 of the 2 ready volunteers a route needs: until more volunteers join, requests wait for them, and this tab gets no work.",
        );
      expect(await tab.getByTestId('state').textContent()).toBe('Ready, waiting for work');
      const page = await rig.browser.newPage();
      await page.goto(`${server.address().url}/`);
      await expect
        .poll(() => page.getByTestId('readiness').textContent({ timeout: 1000 }), { timeout: SEEN_WITHIN_MS * 3 })
        .toBe(
          '1 of 1 volunteer ready (per stage: 1): the swarm answers once every stage has the 2 ready volunteers a route needs (waiting for stage 0).',
        );
    } finally {
      await context.close();
      await server.close();
      rmSync(cache, { recursive: true, force: true });
    }
  });
});
