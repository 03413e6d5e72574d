// The landing page says how many volunteers are ready and whether the swarm
// can answer, live: a volunteer tab becoming ready turns "no volunteers yet"
// into "1 of 1 … answers now", and its leaving turns it back. At r = 2 one
// ready tab is not a route: the page waits for the second, and the volunteer
// page and the widget say why the one tab gets no work.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { goldenModelDir } from '../testing/golden.js';
import { startLocalSwarm } from '../tools/local-swarm.js';
import { E2E_MODEL, idleReasonOf, type OneStageRig, startOneStageRig, startTestServer } from './harness.js';

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

  it("at r = 2, one ready volunteer in the stage is not enough: it waits for the route's second, and the volunteer's page and the widget say why it idles", async () => {
    const cache = mkdtempSync(join(tmpdir(), 'webswarm-landing-r2-'));
    const server = await startTestServer([{ dir: goldenModelDir(E2E_MODEL), stages: 1 }], cache, { redundancy: 2, quiet: true });
    const context = await rig.browser.newContext();
    const closers: (() => Promise<unknown>)[] = [];
    try {
      // The one volunteer, on its own page: ready, and told that its stage waits for a second volunteer (before, only
      // "Ready, waiting for work").
      const tab = await context.newPage();
      await tab.goto(`${server.address().url}/volunteer?backend=wasm`);
      await tab.getByTestId('consent').click();
      await tab.waitForFunction(() => window.webswarmVolunteer?.state === 'ready', null, { timeout: 90_000 });
      await expect
        .poll(() => idleReasonOf(tab), { timeout: SEEN_WITHIN_MS * 3 })
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

      // The widget's frame, alone in the swarm, says it too, in its one line (the sentence as its title), and after
      // consent still the share it promised (before: "Waiting for work", and no share).
      await tab.close();
      await expect.poll(() => server.coordinator?.registry.size).toBe(0);
      // In a frame of another site's page (a top-level /embed keeps its windows apart: the consent window could not answer it).
      const site = createServer((_req, res) =>
        res
          .writeHead(200, { 'content-type': 'text/html' })
          .end(
            `<!doctype html><title>A host site</title><iframe title="webswarm volunteer" src="${server.address().url}/embed/?backend=wasm&share=0.5" style="width:480px;height:200px;border:0"></iframe>`,
          ),
      );
      closers.push(() => new Promise((r) => site.close(() => r(undefined))));
      await new Promise<void>((r) => site.listen(0, '127.0.0.1', r));
      const host = await context.newPage();
      await host.goto(`http://localhost:${(site.address() as AddressInfo).port}/`);
      const widget = host.frameLocator('iframe');
      await expect.poll(() => widget.getByTestId('consent').isEnabled(), { timeout: SEEN_WITHIN_MS }).toBe(true);
      const opened = context.waitForEvent('page', { timeout: SEEN_WITHIN_MS });
      await widget.getByTestId('consent').click();
      const w = await opened;
      await expect.poll(() => w.getByTestId('consent').isEnabled(), { timeout: SEEN_WITHIN_MS }).toBe(true);
      await w.getByTestId('consent').click();
      const line = widget.getByTestId('embed-state');
      await expect
        .poll(() => line.textContent({ timeout: 1000 }).catch(() => null), { timeout: 90_000 })
        .toBe('No work yet: stage 0 has 1 of 2 volunteers');
      expect(await line.getAttribute('title')).toBe(
        "This tab's stage 0 has 1 of the 2 ready volunteers a route needs: until more volunteers join, requests wait for them, and this tab gets no work.",
      );
      expect(await widget.getByTestId('embed-share').textContent()).toBe(' · at most 50 % of the time');
    } finally {
      for (const close of closers) await close();
      await context.close();
      await server.close();
      rmSync(cache, { recursive: true, force: true });
    }
  });
});
