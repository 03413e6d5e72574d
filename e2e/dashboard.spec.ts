// The live dashboard in Chromium against a real server: a volunteer tab
// joining appears in the stages × replicas grid, a generation moves the plots
// and the volunteer's record, and the volunteer leaving takes it off.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type OneStageRig, startOneStageRig } from './harness.js';

const TOKENS = 8;
let rig: OneStageRig;

beforeAll(async () => {
  rig = await startOneStageRig();
});
afterAll(() => rig?.close());

describe('the dashboard', () => {
  it('shows a volunteer joining, computing and leaving, live', async () => {
    const { server, browser } = rig;
    const url = server.address().url;
    const dash = await browser.newPage();
    await dash.goto(`${url}/dashboard`);
    const summary = dash.getByTestId('summary');
    await expect.poll(() => summary.textContent()).toContain('0 volunteers online');
    await expect.poll(() => dash.locator('[data-stage="0"]').textContent()).toContain('no volunteer');

    const context = await browser.newContext();
    const tab = await context.newPage();
    await tab.goto(`${url}/volunteer?backend=wasm`);
    await tab.getByTestId('consent').click();
    await tab.waitForFunction(() => window.webswarmVolunteer?.state === 'ready', null, { timeout: 90_000 });
    const id = (await tab.evaluate(() => window.webswarmVolunteer?.volunteerId)) as string;
    const cell = dash.locator(`[data-volunteer="${id}"]`);
    await expect.poll(() => cell.textContent(), { timeout: 10_000 }).toContain('wasm · ready');
    await expect.poll(() => summary.textContent()).toContain('1 volunteer online');

    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      body: JSON.stringify({ prompt: 'Emma', max_tokens: TOKENS, temperature: 0 }),
    });
    expect(res.status).toBe(200);
    // Its record after the votes, and the plots' newest numbers.
    await expect.poll(() => cell.textContent(), { timeout: 10_000 }).toContain(`(${TOKENS}✓ 0✗)`);
    // The plots' peaks: the tokens came within one or two one-second samples, each voted by its one replica.
    const peak = async (title: string) =>
      Number(await dash.locator('figure', { hasText: title }).locator('text.tick').first().textContent());
    await expect.poll(() => peak('Tokens per second'), { timeout: 10_000 }).toBeGreaterThanOrEqual(TOKENS / 2);
    await expect.poll(() => peak('Votes per second'), { timeout: 10_000 }).toBeGreaterThanOrEqual(TOKENS / 2);
    expect(await peak('Volunteers online')).toBe(1);
    await context.close();
    await expect.poll(() => dash.locator(`[data-volunteer="${id}"]`).count(), { timeout: 10_000 }).toBe(0);
    await expect.poll(() => summary.textContent()).toContain('0 volunteers online');
  });
});
