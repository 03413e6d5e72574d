// The embed widget on a host page from another origin (another port, and
// "localhost" against the swarm's "127.0.0.1") that sends a strict CSP
// allowing only itself and the swarm: nothing runs before consent (the card's
// Continue, then the Donate button inside the swarm's frame); after it a
// volunteer registers and computes a real generation (checked against the
// reference runner); pause takes it out of the swarm; the host page's own
// script keeps running and no CSP rule is broken. consent.spec.ts tries to
// get around the frame's button.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GREEDY } from '../shared/model/sampling.js';
import { ensureStages } from '../signal-server/models/model-folder.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';
import { goldenModelDir } from '../testing/golden.js';
import { E2E_MODEL, type OneStageRig, startOneStageRig } from './harness.js';

const PROMPT = 'Mr. Darcy';
const TOKENS = 6;

let rig: OneStageRig;
let reference: ReferenceRunner;
let host: Server;
let hostUrl: string;

const HOST_SCRIPT = `
window.cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));
let ticks = 0;
setInterval(() => { ticks += 1; document.getElementById('ticks').textContent = String(ticks); }, 50);
document.getElementById('host-button').addEventListener('click', () => { document.getElementById('clicked').textContent = 'yes'; });
`;

/** The widget's tag as a careless embedder writes it: a position, a theme and a share it does not know. */
const ODD_ATTRIBUTES = 'data-position="middle" data-theme="purple" data-max-share="50"';

function hostPage(
  swarmUrl: string,
  model: string = E2E_MODEL,
  attributes = 'data-backend="wasm" data-max-share="1" data-position="bottom-left" data-theme="dark"',
): string {
  return `<!doctype html><html><head><title>A host site</title></head><body>
<h1>Someone else's site</h1><p>ticks: <span id="ticks">0</span></p>
<button id="host-button">host button</button> <span id="clicked">no</span>
<script src="/host.js"></script>
<script src="${swarmUrl}/embed.js" data-model="${model}" ${attributes} async></script>
</body></html>`;
}

/** The console warnings `page` logs from now on. */
function consoleWarnings(page: Page): string[] {
  const warnings: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'warning') warnings.push(m.text());
  });
  return warnings;
}

beforeAll(async () => {
  rig = await startOneStageRig({ routeWaitMs: 1500 });
  reference = await ReferenceRunner.fromStageDir((await ensureStages(goldenModelDir(E2E_MODEL), { stages: 1 }, rig.cache)).dir);
  const swarmUrl = rig.server.address().url;
  host = createServer((req, res) => {
    const csp = `default-src 'none'; script-src 'self' ${swarmUrl}; frame-src ${swarmUrl}; style-src 'self'; connect-src 'self'; img-src 'self'`;
    if (req.url === '/host.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(HOST_SCRIPT);
    else if (req.url === '/odd-attributes')
      res
        .writeHead(200, { 'content-type': 'text/html', 'content-security-policy': csp })
        .end(hostPage(swarmUrl, E2E_MODEL, ODD_ATTRIBUTES));
    else if (req.url === '/' || req.url === '/unknown-model')
      res
        .writeHead(200, { 'content-type': 'text/html', 'content-security-policy': csp })
        .end(hostPage(swarmUrl, req.url === '/' ? E2E_MODEL : 'gpt-4'));
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => host.listen(0, '127.0.0.1', r));
  hostUrl = `http://localhost:${(host.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((r) => host?.close(r));
  await reference?.close();
  await rig?.close();
});

async function complete(): Promise<{ status: number; tokens?: number[] }> {
  const res = await fetch(`${rig.server.address().url}/v1/completions`, {
    method: 'POST',
    body: JSON.stringify({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0 }),
  });
  const j = (await res.json()) as { webswarm?: { tokens: number[] } };
  return { status: res.status, ...(j.webswarm === undefined ? {} : { tokens: j.webswarm.tokens }) };
}

/** The consent window that `act` (the frame's button) opens, confirmed as the visitor would: its own button, clicked. */
async function confirmInWindow(page: Page, act: () => Promise<unknown>): Promise<void> {
  const opened = page.context().waitForEvent('page', { timeout: 10_000 });
  await act();
  const w = await opened;
  await expect.poll(() => w.getByTestId('consent').isEnabled(), { timeout: 10_000 }).toBe(true);
  await w.getByTestId('consent').click();
  await expect.poll(() => w.getByTestId('consent-window-done').count()).toBe(1);
}

const ticks = async (page: Page) => Number(await page.locator('#ticks').textContent());

describe('the embed widget on a cross-origin host page with a strict CSP', () => {
  it('asks first, volunteers after consent, pauses, and leaves the host page alone', async () => {
    const page = await rig.browser.newPage();
    const swarmRequests: string[] = [];
    page.on('request', (r) => {
      if (r.url().startsWith(rig.server.address().url)) swarmRequests.push(new URL(r.url()).pathname);
    });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(hostUrl);

    // Before consent: the card, and nothing else from the swarm than embed.js.
    const proceed = page.getByRole('button', { name: 'Continue', exact: true });
    await expect.poll(() => proceed.isVisible()).toBe(true);
    await expect
      .poll(() => page.getByRole('region', { name: 'webswarm: donate compute' }).textContent())
      .toContain("Donate this tab's computing power to webswarm?");
    await page.waitForTimeout(1000);
    expect(swarmRequests).toEqual(['/embed.js']);
    expect(await page.locator('iframe').count()).toBe(0);
    expect(rig.server.coordinator?.registry.size).toBe(0);
    // The widget's styles apply inside its shadow root (adopted style sheets pass style-src 'self').
    const position = await page.locator('[data-webswarm-widget]').evaluate((e) => getComputedStyle(e).position);
    expect(position).toBe('fixed');

    // Continue opens the swarm's frame, which says what it would use and still asks.
    await proceed.click();
    const frame = page.frameLocator('iframe[title="webswarm volunteer"]');
    await expect.poll(() => frame.getByTestId('plan').textContent()).toBe('Runs on the CPU (WebAssembly)');
    // data-theme="dark": the transparent frame's text is light over the dark card (before, dark text on it), and the
    // frame stays transparent.
    expect(
      await frame.locator('body').evaluate((b) => [b.className, getComputedStyle(b).color, getComputedStyle(b).backgroundColor]),
    ).toEqual(['embedded dark', 'rgb(238, 241, 247)', 'rgba(0, 0, 0, 0)']);
    await page.waitForTimeout(1000);
    expect(rig.server.coordinator?.registry.size).toBe(0);
    // Consent: the frame's button opens the swarm's own window, where the visitor confirms; the frame then registers
    // and becomes ready, waiting for work.
    await confirmInWindow(page, () => frame.getByRole('button', { name: "Donate this tab's CPU" }).click());
    await expect.poll(() => frame.getByTestId('embed-state').textContent(), { timeout: 90_000, interval: 500 }).toBe('Waiting for work');
    // The frame says ready as it tells the server, which counts it once its challenge step is answered: a round trip later.
    await expect.poll(() => rig.server.coordinator?.volunteers().map((v) => [v.backend, v.state])).toEqual([['wasm', 'ready']]);
    expect(await frame.getByTestId('embed-steps').locator('..').textContent()).toBe('0 steps · stage 0 · CPU · at full speed');

    // It computes a real generation: the reference runner's tokens.
    const expected = (await reference.generateIds(reference.tokenizer.encode(PROMPT), TOKENS, GREEDY)).tokens;
    expect(await complete()).toEqual({ status: 200, tokens: expected });
    await expect.poll(() => frame.getByTestId('embed-steps').textContent()).toBe(String(TOKENS));
    // The host page hears the count by postMessage.
    await expect.poll(() => page.locator('[data-webswarm-widget]').getAttribute('data-steps')).toBe(String(TOKENS));

    // The host page's own script kept running, and its button still works.
    const t0 = await ticks(page);
    await page.waitForTimeout(300);
    expect(await ticks(page)).toBeGreaterThan(t0);
    await page.locator('#host-button').click();
    expect(await page.locator('#clicked').textContent()).toBe('yes');

    // Pause: out of the swarm, so a request finds no volunteer for the stage.
    await frame.getByTestId('pause').click();
    await expect.poll(() => frame.getByTestId('embed-state').textContent()).toBe('Paused');
    await expect.poll(() => rig.server.coordinator?.registry.size).toBe(0);
    expect((await complete()).status).toBe(503);
    expect(await frame.getByTestId('embed-steps').textContent()).toBe(String(TOKENS));

    // The host page's script cannot undo the visitor's own pause (before, its resume() did).
    await page.evaluate(() => window.webswarmWidget?.resume());
    await page.waitForTimeout(1_000);
    expect(await frame.getByTestId('embed-state').textContent()).toBe('Paused');
    expect(rig.server.coordinator?.registry.size).toBe(0);
    // The visitor's resume does; and a pause the host page made, the host page may undo.
    await frame.getByTestId('resume').click();
    await expect.poll(() => frame.getByTestId('embed-state').textContent(), { timeout: 60_000, interval: 500 }).toBe('Waiting for work');
    await page.evaluate(() => window.webswarmWidget?.pause());
    await expect.poll(() => frame.getByTestId('embed-state').textContent()).toBe('Paused');
    await page.evaluate(() => window.webswarmWidget?.resume());
    await expect.poll(() => frame.getByTestId('embed-state').textContent(), { timeout: 60_000, interval: 500 }).toBe('Waiting for work');
    expect(await complete()).toEqual({ status: 200, tokens: expected });

    // The host page hides the widget after consent (before, it went on computing, its Pause and Stop out of sight):
    // a frame hidden for 3 s pauses, the host's resume() does not undo that, and shown again it resumes.
    const widget = page.locator('[data-webswarm-widget]');
    // Through the CSSOM: the host page's CSP refuses style attributes.
    // A zoom to a speck too (a red-team helper's, 2026-12-07: at 0.03, a 6 × 4 px frame, it computed on).
    for (const [property, hide] of [
      ['display', 'none'],
      ['opacity', '0'],
      ['zoom', '0.03'],
    ] as const) {
      await widget.evaluate((el, kv) => (el as HTMLElement).style.setProperty(kv.k, kv.v), { k: property, v: hide });
      await expect.poll(() => frame.getByTestId('embed-state').textContent(), { timeout: 15_000, interval: 250 }).toBe('Paused');
      await expect.poll(() => rig.server.coordinator?.registry.size).toBe(0);
      await page.evaluate(() => window.webswarmWidget?.resume());
      await page.waitForTimeout(1_000);
      expect(await frame.getByTestId('embed-state').textContent(), property).toBe('Paused');
      await widget.evaluate((el, k) => (el as HTMLElement).style.removeProperty(k), property);
      await expect.poll(() => frame.getByTestId('embed-state').textContent(), { timeout: 60_000, interval: 500 }).toBe('Waiting for work');
    }
    expect(await complete()).toEqual({ status: 200, tokens: expected });

    expect(await page.evaluate(() => (window as unknown as { cspViolations: string[] }).cspViolations)).toEqual([]);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('goes away on "No thanks" without loading anything', async () => {
    const page = await rig.browser.newPage();
    const swarmRequests: string[] = [];
    page.on('request', (r) => {
      if (r.url().startsWith(rig.server.address().url)) swarmRequests.push(new URL(r.url()).pathname);
    });
    await page.goto(hostUrl);
    await page.getByRole('button', { name: 'No thanks' }).click();
    await expect.poll(() => page.locator('[data-webswarm-widget]').count()).toBe(0);
    expect(swarmRequests).toEqual(['/embed.js']);
    await page.close();
  });

  it('says so before consent, and computes nothing, when data-model names a model the swarm does not serve', async () => {
    const page = await rig.browser.newPage();
    const warnings = consoleWarnings(page);
    await page.goto(`${hostUrl}/unknown-model`);
    await page.getByRole('button', { name: 'Continue' }).click();
    const frame = page.frameLocator('iframe[title="webswarm volunteer"]');
    // Refused in the frame before the visitor is asked (before, the frame and the consent window asked to volunteer
    // for "gpt-4", and the refusal came after the visitor's click): the button stays disabled, no window opens.
    await expect
      .poll(() => frame.getByTestId('plan').textContent(), { timeout: 30_000 })
      .toBe(`Cannot start: this swarm serves ${E2E_MODEL}, not "gpt-4"`);
    expect(await frame.getByTestId('consent').isDisabled()).toBe(true);
    // The host page hears that it failed (before, its widget said "starting" for ever).
    await expect.poll(() => page.evaluate(() => window.webswarmWidget?.state)).toBe('failed');
    expect(rig.server.coordinator?.registry.size).toBe(0);
    // Every attribute of the host page's tag is one the widget knows: nothing in the console.
    expect(warnings.filter((w) => w.includes('webswarm'))).toEqual([]);
    await page.close();
  });

  it('names in the console each data attribute it does not take as written, and the card promises what it uses', async () => {
    const page = await rig.browser.newPage();
    const warnings = consoleWarnings(page);
    await page.goto(`${hostUrl}/odd-attributes`);
    const card = page.locator('[data-webswarm-widget]');
    await expect.poll(() => card.getAttribute('data-position')).toBe('bottom-right');
    expect(await card.locator('p').first().textContent()).toContain('using at most 100 % of its time');
    expect(warnings).toEqual([
      'webswarm embed.js: data-max-share="50" is outside 0.05–1 (a share of the time: 0.5 is half): 1 is used',
      'webswarm embed.js: data-position="middle" is not one of bottom-right, bottom-left, top-right, top-left: bottom-right is used',
      'webswarm embed.js: data-theme="purple" is not one of light, dark, auto: auto is used',
    ]);
    await page.close();
  });
});
