/**
 * npm run screenshots: takes README's screenshots (docs/screenshots/) from a
 * real run: the default model, a local swarm of 3 stages × 2 replicas, a
 * generation on /chat with one token's votes open, the dashboard after it, the
 * volunteer page on a phone and a desktop, the embed widget on a host page from
 * another origin, and the landing page on a phone.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildWebApp } from './build-web.js';
import { DEFAULT_MODEL, modelDir, runCli } from './cli-args.js';
import { startLocalServer } from './local-server.js';
import { launchChromium, startLocalSwarm } from './local-swarm.js';

const OUT = 'docs/screenshots';
const STAGES = 3;
const REDUNDANCY = 2;

runCli(async () => {
  mkdirSync(OUT, { recursive: true });
  buildWebApp();
  const cache = mkdtempSync(join(tmpdir(), 'webswarm-shots-'));
  const server = await startLocalServer([{ dir: modelDir(DEFAULT_MODEL), stages: STAGES }], cache, { redundancy: REDUNDANCY });
  const modelId = server.coordinator?.modelInfo.modelId ?? DEFAULT_MODEL;
  const url = server.address().url;
  // One tab short of the full grid: the widget's volunteer takes the free place, so it computes in its screenshot.
  const swarm = await startLocalSwarm({ serverUrl: url, volunteers: STAGES * REDUNDANCY - 1, log: (l) => process.stderr.write(`${l}\n`) });
  const browser = await launchChromium({ webgpu: false });
  const host = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' }).end(`<!doctype html><html><head><title>Mansfield Gazette</title>
<style>body{font:17px/1.6 Georgia,serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#222}h1{font-size:2rem}</style></head><body>
<h1>The Mansfield Gazette</h1><p>News from the parish: the assembly rooms will reopen on Thursday, and Mrs. Norris wishes it known that the
donation of a pianoforte to the school was entirely her own idea.</p><p>This page embeds the webswarm widget with one script tag; the visitor
is asked before anything runs.</p>
<script src="${url}/embed.js" data-model="${modelId}" data-backend="wasm" async></script></body></html>`);
  });
  await new Promise<void>((r) => host.listen(0, '127.0.0.1', r));
  const hostUrl = `http://localhost:${(host.address() as AddressInfo).port}`;
  try {
    const desktop = { width: 1280, height: 800 };
    const phone = { width: 390, height: 844 };

    const volunteer = swarm.pages[0];
    if (volunteer === undefined) throw new Error('no volunteer page');
    await volunteer.setViewportSize(desktop);
    await volunteer.screenshot({ path: `${OUT}/volunteer-desktop.png`, fullPage: true });
    await volunteer.setViewportSize(phone);
    await volunteer.screenshot({ path: `${OUT}/volunteer-phone.png`, fullPage: true });

    const site = await browser.newPage({ viewport: { width: 1024, height: 640 } });
    await site.goto(hostUrl);
    await site.getByRole('button', { name: 'Continue', exact: true }).waitFor();
    await site.screenshot({ path: `${OUT}/widget-consent.png` });
    await site.getByRole('button', { name: 'Continue', exact: true }).click();
    const frame = site.frameLocator('iframe[title="webswarm volunteer"]');
    // The consent: the frame's button opens the swarm's own window, and the visitor's click there (trusted) is it.
    const opened = site.context().waitForEvent('page', { timeout: 30_000 });
    await frame.getByTestId('consent').click({ timeout: 30_000 });
    const window = await opened;
    await window.getByTestId('consent').click({ timeout: 30_000 });
    await frame.getByTestId('embed-state').filter({ hasText: 'Waiting for work' }).waitFor({ timeout: 120_000 });
    await fetch(`${url}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: 'Emma', max_tokens: 32 }) });
    await site.waitForTimeout(1000);
    await site.screenshot({ path: `${OUT}/widget-running.png` });

    const chat = await browser.newPage({ viewport: desktop });
    await chat.goto(`${url}/chat`);
    // The full grid (the widget's volunteer included), so every stage votes with r replicas.
    await chat
      .getByTestId('swarm')
      .filter({ hasText: `${STAGES * REDUNDANCY} volunteers online` })
      .waitFor({ timeout: 30_000 });
    await chat.getByTestId('prompt').fill('It is a truth universally acknowledged, that');
    await chat.getByLabel('Max tokens').fill('48');
    await chat.getByTestId('send').click();
    await chat.getByTestId('run-state').filter({ hasText: 'done' }).waitFor({ timeout: 120_000 });
    await chat.locator('[data-token]').nth(5).click();
    await chat.getByTestId('vote-panel').waitFor();
    await chat.screenshot({ path: `${OUT}/chat.png`, fullPage: true });
    const landing = await browser.newPage({ viewport: phone });
    await landing.goto(url);
    await landing
      .getByTestId('online')
      .filter({ hasText: `${STAGES * REDUNDANCY} volunteers online` })
      .waitFor({ timeout: 30_000 });
    await landing.screenshot({ path: `${OUT}/landing-phone.png`, fullPage: true });
    const dash = await browser.newPage({ viewport: desktop });
    await dash.goto(`${url}/dashboard`);
    await dash.getByTestId('grid').waitFor();
    for (let i = 0; i < 4; i++) {
      await fetch(`${url}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: 'Emma Woodhouse', max_tokens: 64, seed: i }) });
      await dash.waitForTimeout(1500);
    }
    await dash.screenshot({ path: `${OUT}/dashboard.png`, fullPage: true });

    process.stdout.write(`screenshots written to ${OUT}/\n`);
  } finally {
    await browser.close();
    await swarm.close();
    await server.close();
    host.close();
    rmSync(cache, { recursive: true, force: true });
  }
});
