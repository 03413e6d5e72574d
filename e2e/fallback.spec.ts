// The fallback in Chromium: three volunteer tabs for 3 stages × r = 1 and a
// server with FALLBACK=stage. Stage 1's tab closes after a few steps of a
// generation; the server computes stage 1 from there, its frames going to and
// from the tabs of stages 0 and 2 over their sockets, and the answer is the
// reference runner's. A second request, through the chat page, finds stage 1
// without any volunteer: every token is the server's at stage 1, and the page
// says so.
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FAULT_AFTER_STEPS } from '../shared/swarm/faults.js';
import { type E2eSwarm, startE2eSwarm } from './harness.js';

/** Volunteers fill stages 0, 1, 2 in the order they open: index 1 is stage 1's only tab. */
const CRASHING = 1;
const PROMPT = 'Emma Woodhouse, handsome, clever, and rich,';
const TOKENS = 12;

let e: E2eSwarm;
beforeAll(async () => {
  e = await startE2eSwarm({
    volunteers: 3,
    redundancy: 1,
    allowFaults: true,
    faultOf: (i) => (i === CRASHING ? 'crash' : null),
    fallback: 'stage',
  });
});
afterAll(() => e?.close());

describe('the fallback with browser volunteers', () => {
  it('stage 1’s only tab closes mid-generation: the server computes stage 1 over the tabs’ sockets, the reference tokens, labelled', async () => {
    const status = (i: number) => e.swarm.pages[i]?.evaluate(() => window.webswarmVolunteer);
    expect((await status(CRASHING))?.stage).toBe(1);
    const expected = await e.expected(PROMPT, TOKENS);
    const { status: code, json } = await e.complete({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0 });
    expect(code).toBe(200);
    expect(json.webswarm.tokens).toEqual(expected);
    const labels = json.webswarm.votes.map((v) => v.server_stages);
    // The tab computed FAULT_AFTER_STEPS steps (the prompt's among them) before it closed. With the mesh
    // loop it computes up to MESH_AHEAD steps before the coordinator has verified them, so it may close
    // before even step 0 is verified: the server then computes that step again, and its token says so.
    const first = labels.findIndex((l) => l.length > 0);
    expect(first, `labels ${JSON.stringify(labels)}`).toBeGreaterThanOrEqual(0);
    expect(labels.slice(0, first)).toEqual(labels.slice(0, first).map(() => []));
    expect(labels.slice(first)).toEqual(labels.slice(first).map(() => [1]));
    expect(labels.at(-1)).toEqual([1]);
    expect(labels.filter((l) => l.length === 0).length).toBeLessThanOrEqual(FAULT_AFTER_STEPS);
    expect(json.webswarm.server_stages).toEqual([1]);
    expect(json.webswarm.route[1]).toEqual(['server:1']);
  });

  it('the chat page marks the tokens the server computed and says so in the vote panel', async () => {
    const volunteerPage = e.swarm.pages[0] as Page;
    const chat = await volunteerPage.context().newPage();
    try {
      await chat.goto(`${e.server.address().url}/chat`);
      await chat.getByTestId('prompt').fill(PROMPT);
      await chat.getByTestId('send').click();
      await chat.waitForFunction(() => document.querySelector('[data-testid="run-state"]')?.textContent?.startsWith('done'), null, {
        timeout: 60_000,
      });
      const expected = await e.expected(PROMPT, 32);
      const tokens = chat.locator('[data-testid="output"] .token');
      const shown = await tokens.evaluateAll((els) => els.map((el) => Number(el.getAttribute('data-token'))));
      expect(shown).toEqual(expected.slice(0, shown.length));
      const marks = await tokens.evaluateAll((els) => els.map((el) => [el.className, el.getAttribute('data-server-stages')]));
      expect(marks.every(([cls, stages]) => cls === 'token unverified server' && stages === '1')).toBe(true);
      expect(await chat.getByTestId('legend').textContent()).toContain('computed by the server itself');
      expect(await chat.getByTestId('run-state').textContent()).toMatch(/computed in part by the server/);
      await tokens.first().click();
      const panel = chat.getByTestId('vote-panel');
      expect(await panel.textContent()).toContain('the server computed stage 1 itself');
      expect(await panel.locator('tr[data-stage="1"] [data-field="by"]').textContent()).toBe('server (fallback)');
      expect(await panel.locator('tr[data-stage="0"] [data-field="by"]').textContent()).toBe('volunteers');
    } finally {
      await chat.close();
    }
  });
});
