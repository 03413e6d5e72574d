// The landing page says how many volunteers are ready and whether the swarm
// can answer, live: a volunteer tab becoming ready turns "no volunteers yet"
// into "1 of 1 … answers now", and its leaving turns it back.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalSwarm } from '../tools/local-swarm.js';
import { type OneStageRig, startOneStageRig } from './harness.js';

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
      .toBe('No volunteers yet: the swarm answers once every stage has a ready volunteer.');

    const swarm = await startLocalSwarm({ serverUrl: url, volunteers: 1 });
    try {
      await expect
        .poll(() => line.textContent({ timeout: 1000 }), { timeout: SEEN_WITHIN_MS })
        .toBe('1 of 1 volunteer ready (per stage: 1): every stage has one, the swarm answers now.');
    } finally {
      await swarm.close();
    }
    await expect
      .poll(() => line.textContent({ timeout: 1000 }), { timeout: SEEN_WITHIN_MS })
      .toBe('No volunteers yet: the swarm answers once every stage has a ready volunteer.');
  });
});
