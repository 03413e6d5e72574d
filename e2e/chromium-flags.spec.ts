// The Chromium every spec, tool and benchmark launches (tools/local-swarm.ts launchChromium), as Chromium
// itself reports it: no omnibox pop-up WebUI loaded for each context's window (measured: 3.5 s of CPU a
// volunteer tab), and playwright-core's own disabled features still disabled, though Chromium reads only the
// last --disable-features it is given.
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from '../tools/local-swarm.js';

let browser: Browser;
beforeAll(async () => {
  browser = await launchChromium({ webgpu: false });
});
afterAll(() => browser?.close());

/** The switches chrome://version shows. */
async function commandLine(): Promise<string[]> {
  const page = await browser.newPage();
  try {
    await page.goto('chrome://version');
    return ((await page.locator('#command_line').textContent()) ?? '').split(/\s+/).filter((a) => a !== '');
  } finally {
    await page.close();
  }
}

describe('launchChromium', () => {
  it('opens contexts without the omnibox pop-up WebUI', async () => {
    for (let i = 0; i < 2; i++) {
      const page = await (await browser.newContext()).newPage();
      await page.goto('about:blank');
    }
    // The pop-up loads with the window, after the page: without the change its two targets were listed within this.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const cdp = await browser.newBrowserCDPSession();
    const { targetInfos } = (await cdp.send('Target.getTargets')) as { targetInfos: { type: string; url: string }[] };
    expect(targetInfos.filter((t) => t.type === 'page').length).toBeGreaterThanOrEqual(2);
    expect(targetInfos.filter((t) => t.url.startsWith('chrome://omnibox-popup')).map((t) => t.url)).toEqual([]);
  });

  it('keeps every feature playwright-core disables in the --disable-features Chromium reads (the last)', async () => {
    const lists = (await commandLine())
      .filter((a) => a.startsWith('--disable-features='))
      .map((a) => a.slice('--disable-features='.length).split(','));
    expect(lists.length).toBeGreaterThanOrEqual(1);
    const last = new Set(lists[lists.length - 1]);
    expect(lists.flat().filter((f) => !last.has(f))).toEqual([]);
    expect([...last]).toEqual(expect.arrayContaining(['WebUIOmniboxPopup', 'ThirdPartyStoragePartitioning']));
  });

  it('runs WebAssembly on the baseline tier only under the e2e suite (WEBSWARM_LIFTOFF_ONLY)', async () => {
    expect(process.env.WEBSWARM_LIFTOFF_ONLY).toBe('1');
    expect(process.execArgv).toContain('--liftoff-only'); // this process too (vitest.e2e.config.ts)
    expect(await commandLine()).toContain('--js-flags=--liftoff-only');
  });
});
