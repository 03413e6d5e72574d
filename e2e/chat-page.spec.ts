// The chat page and the landing page in Chromium against a real server: a
// one-stage model with redundancy 1 and one volunteer tab (so nothing may be
// shown as verified), and, for the phone layout, a three-stage server with no
// volunteers (its status line is as long as a full swarm's).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TokenEvent } from '../shared/protocol/messages.js';
import { goldenModelDir } from '../testing/golden.js';
import { consent } from '../tools/local-swarm.js';
import { E2E_MODEL, type OneStageRig, startOneStageRig, startTestServer } from './harness.js';

const READY_MS = 90_000;
const RUN_MS = 60_000;
const TOKENS = 6;
const PHONE = { width: 390, height: 844 };
/** The verified marking's background (style.css `.token.verified`): no token of an r = 1 server may have it. */
const VERIFIED_GREEN = 'rgb(227, 244, 230)';

let rig: OneStageRig;
let volunteer: BrowserContext;

beforeAll(async () => {
  rig = await startOneStageRig();
  volunteer = await rig.browser.newContext();
  const tab = await volunteer.newPage();
  await tab.goto(`${rig.server.address().url}/volunteer?backend=wasm`);
  await consent(tab);
  await tab.waitForFunction(() => window.webswarmVolunteer?.state === 'ready', null, { timeout: READY_MS });
});
afterAll(async () => {
  await volunteer?.close();
  await rig?.close();
});

/** Socket.IO event packets (`42["name",payload]`) the page sent and received, in order. */
interface Wire {
  readonly sent: { name: string; payload: unknown }[];
  readonly received: { name: string; payload: unknown }[];
}

function parsePacket(raw: string | Buffer): { name: string; payload: unknown } | null {
  const text = typeof raw === 'string' ? raw : raw.toString('utf8');
  if (!text.startsWith('42')) return null;
  const body: unknown = JSON.parse(text.slice(2));
  if (!Array.isArray(body) || typeof body[0] !== 'string') return null;
  return { name: body[0], payload: body[1] };
}

function watchWire(page: Page): Wire {
  const wire: Wire = { sent: [], received: [] };
  page.on('websocket', (ws) => {
    ws.on('framesent', ({ payload }) => {
      const p = parsePacket(payload);
      if (p !== null) wire.sent.push(p);
    });
    ws.on('framereceived', ({ payload }) => {
      const p = parsePacket(payload);
      if (p !== null) wire.received.push(p);
    });
  });
  return wire;
}

function tokenEvents(wire: Wire): TokenEvent[] {
  return wire.received.filter((p) => p.name === 'chat:token').map((p) => p.payload as TokenEvent);
}

async function openChat(): Promise<{ page: Page; wire: Wire }> {
  const page = await rig.browser.newPage();
  const wire = watchWire(page);
  await page.goto(`${rig.server.address().url}/chat`);
  await expect.poll(() => page.getByTestId('swarm').textContent(), { timeout: 10_000 }).toContain('1 volunteer');
  await page.getByLabel('Max tokens').fill(String(TOKENS));
  return { page, wire };
}

const done = (page: Page) => page.getByTestId('run-state').filter({ hasText: 'done' }).waitFor({ timeout: RUN_MS });

describe('the chat page', () => {
  it('sends on Enter; Shift+Enter adds a newline and an IME composition’s Enter sends nothing', async () => {
    const { page, wire } = await openChat();
    const box = page.getByTestId('prompt');
    await box.fill('Emma');
    await box.press('Shift+Enter');
    await box.pressSequentially('Woodhouse');
    expect(await box.inputValue()).toBe('Emma\nWoodhouse');
    // A keydown is a discrete event: React has rendered a started run by the time the key press returns.
    const runState = page.getByTestId('run-state');
    expect(await runState.textContent(), 'Shift+Enter started nothing').toBe('');
    // The Enter that commits an IME composition (what a Japanese or Chinese keyboard sends) must not send,
    // whether the browser flags it isComposing or (Safari) only with keyCode 229.
    for (const init of [{ isComposing: true }, { keyCode: 229 }]) {
      await box.evaluate(
        (el, i) => el.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', code: 'Enter', bubbles: true, cancelable: true, ...i })),
        init,
      );
      expect(await runState.textContent(), `an IME Enter (${JSON.stringify(init)}) started nothing`).toBe('');
    }
    await box.press('Enter');
    await done(page);
    const prompts = wire.sent.filter((p) => p.name === 'chat:generate').map((p) => (p.payload as { prompt?: unknown }).prompt);
    expect(prompts, 'exactly one chat:generate, from the plain Enter').toEqual(['Emma\nWoodhouse']);
    expect(await box.inputValue(), 'Enter sent and added no newline').toBe('Emma\nWoodhouse');
    await page.close();
  });

  it('says in its own words what its fields cannot hold, and sends nothing until they can', async () => {
    const { page, wire } = await openChat();
    const box = page.getByTestId('prompt');
    const problem = page.getByTestId('input-problem');
    await box.fill('');
    expect(await problem.textContent()).toBe('Type a prompt first.');
    expect(await page.getByTestId('send').isDisabled()).toBe(true);
    await box.press('Enter');
    await box.fill('Emma');
    await page.getByLabel('Seed').fill('100000000000000000000');
    expect(await problem.textContent()).toBe('Seed must be a whole number from 0 to 4294967295.');
    await page.getByLabel('Seed').fill('7');
    await page.getByLabel('Max tokens').fill('0');
    expect(await problem.textContent()).toBe('Max tokens must be a whole number from 1 to 512.');
    await box.press('Enter');
    expect(await page.getByTestId('run-state').textContent(), 'no run, and no server refusal naming chat:generate').toBe('');
    await page.getByLabel('Max tokens').fill(String(TOKENS));
    expect(await problem.count()).toBe(0);
    await box.press('Enter');
    await done(page);
    const sent = wire.sent.filter((p) => p.name === 'chat:generate').map((p) => p.payload as { seed: number; maxTokens: number });
    expect(
      sent.map((p) => [p.seed, p.maxTokens]),
      'one request, once the fields held what may be sent',
    ).toEqual([[7, TOKENS]]);
    await page.close();
  });

  it('keeps each run’s prompt with its output when the box is edited', async () => {
    const { page } = await openChat();
    const box = page.getByTestId('prompt');
    await box.fill('It is a truth universally acknowledged');
    await page.getByTestId('send').click();
    await done(page);
    const shownPrompt = page.getByTestId('output').locator('.prompt');
    expect(await shownPrompt.textContent()).toBe('It is a truth universally acknowledged');
    await box.fill('Mr. Darcy');
    expect(await shownPrompt.textContent(), 'the finished output still shows the prompt it answered').toBe(
      'It is a truth universally acknowledged',
    );
    await page.close();
  });

  it('opens a token’s votes in a panel by click or keyboard: agreed, disagreed and late per stage', async () => {
    const { page, wire } = await openChat();
    await page.getByTestId('prompt').fill('Emma');
    await page.getByTestId('send').click();
    await done(page);
    const events = tokenEvents(wire);
    expect(events).toHaveLength(TOKENS);
    const tokens = page.locator('[data-token]');
    expect(await tokens.count()).toBe(TOKENS);
    expect(await page.getByTestId('vote-panel').count(), 'no panel before a token is chosen').toBe(0);

    const panelRows = async () =>
      page
        .getByTestId('vote-panel')
        .locator('tr[data-stage]')
        .evaluateAll((rows) =>
          rows.map((r) => ({
            stage: Number(r.getAttribute('data-stage')),
            agreed: Number(r.querySelector('[data-field="agreed"]')?.textContent),
            disagreed: Number(r.querySelector('[data-field="disagreed"]')?.textContent),
            late: Number(r.querySelector('[data-field="late"]')?.textContent),
            replicas: Number(r.querySelector('[data-field="replicas"]')?.textContent),
          })),
        );
    const expected = (t: TokenEvent | undefined) =>
      (t?.votes ?? []).map((v) => ({ stage: v.stage, agreed: v.agreed, disagreed: v.disagreed, late: v.missing, replicas: v.replicas }));

    await tokens.nth(2).click();
    await page.getByTestId('vote-panel').waitFor();
    expect(await page.getByTestId('vote-panel').getAttribute('data-index')).toBe('2');
    expect(await panelRows()).toEqual(expected(events[2]));
    expect(await panelRows()).toEqual([{ stage: 0, agreed: 1, disagreed: 0, late: 0, replicas: 1 }]);
    expect(await tokens.nth(2).getAttribute('aria-expanded')).toBe('true');

    // Keyboard: the tokens are focusable, and Enter on one shows its votes.
    expect(await tokens.nth(4).evaluate((el) => (el as HTMLElement).tabIndex)).toBeGreaterThanOrEqual(0);
    await tokens.nth(4).focus();
    await page.keyboard.press('Enter');
    await expect.poll(() => page.getByTestId('vote-panel').getAttribute('data-index')).toBe('4');
    expect(await panelRows()).toEqual(expected(events[4]));
    await tokens.nth(1).focus();
    await page.keyboard.press('Space');
    await expect.poll(() => page.getByTestId('vote-panel').getAttribute('data-index')).toBe('1');
    await page.getByTestId('vote-panel').getByRole('button', { name: 'Close' }).click();
    expect(await page.getByTestId('vote-panel').count()).toBe(0);
    await page.close();
  });

  it('opens a token’s votes with a tap on a phone', async () => {
    const phone = await rig.browser.newContext({ viewport: PHONE, hasTouch: true, isMobile: true });
    try {
      const page = await phone.newPage();
      await page.goto(`${rig.server.address().url}/chat`);
      await expect.poll(() => page.getByTestId('swarm').textContent(), { timeout: 10_000 }).toContain('1 volunteer');
      await page.getByLabel('Max tokens').fill(String(TOKENS));
      await page.getByTestId('prompt').fill('Emma');
      await page.getByTestId('send').tap();
      await done(page);
      await page.locator('[data-token]').nth(3).tap();
      await page.getByTestId('vote-panel').waitFor();
      expect(await page.getByTestId('vote-panel').getAttribute('data-index')).toBe('3');
      expect(await page.getByTestId('vote-panel').locator('tr[data-stage]').count()).toBe(1);
    } finally {
      await phone.close();
    }
  });

  it('with redundancy 1 marks no token green and says “not verified” wherever tokens are shown', async () => {
    const { page, wire } = await openChat();
    await page.getByTestId('prompt').fill('Emma');
    await page.getByTestId('send').click();
    await done(page);
    const events = tokenEvents(wire);
    expect(events.map((t) => [t.verified, t.redundancy])).toEqual(Array.from({ length: TOKENS }, () => [false, 1]));
    const tokens = page.locator('[data-token]');
    expect(await tokens.count()).toBe(TOKENS);
    expect(await page.locator('.token.verified').count()).toBe(0);
    expect(await page.locator('.token.unverified').count()).toBe(TOKENS);
    const backgrounds = await tokens.evaluateAll((els) => els.map((e) => getComputedStyle(e).backgroundColor));
    expect(backgrounds.filter((b) => b === VERIFIED_GREEN)).toEqual([]);
    expect(await page.getByTestId('legend').textContent()).toContain('not verified');
    expect(await page.getByTestId('run-state').textContent()).toContain('not verified');
    await tokens.first().click();
    expect(await page.getByTestId('vote-panel').textContent()).toContain('not verified');
    await page.close();
  });

  it('keeps the prompt box inside the output box’s width', async () => {
    for (const viewport of [PHONE, { width: 1280, height: 800 }]) {
      const page = await rig.browser.newPage({ viewport });
      await page.goto(`${rig.server.address().url}/chat`);
      const box = await page.getByTestId('prompt').boundingBox();
      const output = await page.getByTestId('output').boundingBox();
      if (box === null || output === null) throw new Error('the prompt box or the output box is not laid out');
      expect(box.x + box.width, `right edges at ${viewport.width} px`).toBeLessThanOrEqual(output.x + output.width);
      expect(box.x).toBeGreaterThanOrEqual(output.x);
      await page.close();
    }
  });
});

describe('a three-stage swarm’s status on a 390 px phone', () => {
  /** How many lines the text `figure` inside `element` takes (distinct tops of its boxes); 0 when it is not there. */
  const linesOf = (page: Page, testId: string, figure: string) =>
    page.getByTestId(testId).evaluate((el, f) => {
      const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
      for (let n = walker.nextNode(); n !== null; n = walker.nextNode()) {
        const at = n.textContent?.indexOf(f) ?? -1;
        if (at < 0) continue;
        const range = document.createRange();
        range.setStart(n, at);
        range.setEnd(n, at + f.length);
        return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size;
      }
      return 0;
    }, figure);

  it('shows the replicas-per-stage figure on one line, on the landing page and the chat page', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'webswarm-phone-'));
    const server = await startTestServer([{ dir: goldenModelDir(E2E_MODEL), stages: 3 }], cache, { quiet: true });
    try {
      const page = await rig.browser.newPage({ viewport: PHONE });
      await page.goto(server.address().url);
      await expect.poll(() => page.getByTestId('online').textContent(), { timeout: 10_000 }).toContain('0 / 0 / 0');
      expect(await linesOf(page, 'online', '0 / 0 / 0'), 'landing page').toBe(1);
      await page.goto(`${server.address().url}/chat`);
      await expect.poll(() => page.getByTestId('swarm').textContent(), { timeout: 10_000 }).toContain('0 / 0 / 0');
      expect(await linesOf(page, 'swarm', '0 / 0 / 0'), 'chat page').toBe(1);
      await page.close();
    } finally {
      await server.close();
      rmSync(cache, { recursive: true, force: true });
    }
  });
});
