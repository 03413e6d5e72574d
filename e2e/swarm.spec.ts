// The swarm end to end: a real server on port 0, nine Chromium volunteer
// contexts (3 stages × 3 replicas on WASM) joined by WebRTC data channels, a
// requester through /chat and through POST /v1/completions; the reference
// runner's tokens are the oracle.
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GREEDY, type SamplingParams } from '../shared/model/sampling.js';
import { maxScoreRows } from '../shared/protocol/messages.js';
import { promptLogprobs } from '../signal-server/testing/prompt-logprobs.js';
import { consent, launchChromium } from '../tools/local-swarm.js';
import { E2E_MODEL, type E2eSwarm, startE2eSwarm } from './harness.js';

const MODEL = E2E_MODEL;
const STAGES = 3;
const REDUNDANCY = 3;
const PROMPT = 'It is a truth universally acknowledged, that a single man';
const TOKENS = 24;
const CHAT_TIMEOUT_MS = 120_000;

let e: E2eSwarm;
beforeAll(async () => {
  e = await startE2eSwarm({ volunteers: STAGES * REDUNDANCY, stages: STAGES, redundancy: REDUNDANCY });
});
afterAll(() => e?.close());

const referenceTokens = (sampling: SamplingParams) => e.expected(PROMPT, TOKENS, sampling);
const complete = (body: Record<string, unknown>) => e.complete(body);

describe(`a swarm of ${STAGES} stages × ${REDUNDANCY} replicas of ${MODEL} on WASM`, () => {
  it('gives the reference runner’s greedy tokens through POST /v1/completions, every step voted', async () => {
    const expected = await referenceTokens(GREEDY);
    const { status, json } = await complete({ model: MODEL, prompt: PROMPT, max_tokens: TOKENS, temperature: 0 });
    expect(status).toBe(200);
    expect(json.webswarm.tokens).toEqual(expected);
    expect(json.choices[0]?.text).toBe(e.reference.tokenizer.decode(expected));
    expect(json.choices[0]?.finish_reason).toBe('length');
    expect(json.usage.completion_tokens).toBe(TOKENS);
    expect(json.webswarm.route.map((ids) => ids.length)).toEqual([REDUNDANCY, REDUNDANCY, REDUNDANCY]);
    expect(new Set(json.webswarm.route.flat()).size).toBe(STAGES * REDUNDANCY);
    for (const t of json.webswarm.votes) {
      for (const v of t.votes) expect(v.agreed * 2, `token ${t.token} stage ${v.stage}`).toBeGreaterThan(v.replicas);
    }
  });

  it('scores a prompt (echo) as the reference runner does, all but its last position in one step (a row of logits each), the last sent to stage 0 ahead; every position voted', async () => {
    const ids = e.reference.tokenizer.encode(PROMPT);
    const want = await promptLogprobs(e.reference, ids);
    const expected = await referenceTokens(GREEDY);
    const ahead = e.server.coordinator?.inputsAhead ?? Number.NaN;
    const { status, json } = await complete({ model: MODEL, prompt: PROMPT, max_tokens: 4, temperature: 0, echo: true, logprobs: 1 });
    // Step 0 ran every token but the last (the last stage's tabs a position at a time, a row each); the last token,
    // step 1's input, went to stage 0's tabs before its step began.
    expect(ids.length - 1).toBeLessThanOrEqual(maxScoreRows(e.reference.manifest.model.vocabSize));
    expect((e.server.coordinator?.inputsAhead ?? Number.NaN) - ahead).toBe(1);
    expect(status).toBe(200);
    const scored = json as unknown as {
      choices: { text: string; logprobs: { token_logprobs: (number | null)[] } }[];
      webswarm: { tokens: number[]; prompt_votes: { votes: { agreed: number; replicas: number }[] }[] };
    };
    expect(scored.choices[0]?.text).toBe(PROMPT + e.reference.tokenizer.decode(expected.slice(0, 4)));
    expect(scored.webswarm.tokens).toEqual(expected.slice(0, 4));
    const got = scored.choices[0]?.logprobs.token_logprobs ?? [];
    expect(got[0]).toBeNull();
    // Chromium's WebAssembly against this process's: the same kernels.
    for (const [i, lp] of want.entries()) expect(Math.abs((got[i + 1] as number) - lp), `position ${i + 1}`).toBeLessThan(1e-4);
    expect(scored.webswarm.prompt_votes).toHaveLength(ids.length - 1);
    for (const v of scored.webswarm.prompt_votes) for (const s of v.votes) expect(s.agreed * 2).toBeGreaterThan(s.replicas);
  });

  it('scores a prompt past the rows a step may carry: its first positions in step 0, the rest in one chunk (a row each), every position the reference’s', async () => {
    const rows = maxScoreRows(e.reference.manifest.model.vocabSize);
    let prompt = PROMPT;
    while (e.reference.tokenizer.encode(prompt).length < rows + 8) prompt = `${prompt} ${PROMPT}`;
    const ids = e.reference.tokenizer.encode(prompt);
    expect(ids.length).toBeLessThan(2 * rows);
    const want = await promptLogprobs(e.reference, ids);
    const ahead = e.server.coordinator?.inputsAhead ?? Number.NaN;
    const { status, json } = await complete({ model: MODEL, prompt, max_tokens: 0, echo: true, logprobs: 1 });
    expect(status).toBe(200);
    // Two steps: the first `rows` positions, then the rest but the last token (max_tokens 0 never feeds it) in one
    // chunk, its input sent to stage 0's tabs ahead.
    expect((e.server.coordinator?.inputsAhead ?? Number.NaN) - ahead).toBe(1);
    const got = (json as unknown as { choices: { logprobs: { token_logprobs: (number | null)[] } }[] }).choices[0]?.logprobs.token_logprobs;
    expect(got).toHaveLength(ids.length);
    for (const [i, lp] of want.entries()) expect(Math.abs((got?.[i + 1] as number) - lp), `position ${i + 1}`).toBeLessThan(1e-4);
  });

  it('reproduces seeded sampling exactly', async () => {
    const sampling = { temperature: 0.8, topK: 0, topP: 0.95, seed: 7 };
    const expected = await referenceTokens(sampling);
    const { json } = await complete({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0.8, top_p: 0.95, seed: 7 });
    expect(json.webswarm.tokens).toEqual(expected);
    expect(expected).not.toEqual(await referenceTokens(GREEDY));
  });

  it('streams verified tokens to the chat page', async () => {
    const expected = await referenceTokens(GREEDY);
    const browser: Browser = await launchChromium({ webgpu: false });
    try {
      const page = await browser.newPage();
      await page.goto(`${e.server.address().url}/chat`);
      await expect.poll(() => page.getByTestId('swarm').textContent()).toContain(`${STAGES * REDUNDANCY} volunteers online`);
      await page.getByTestId('prompt').fill(PROMPT);
      await page.getByLabel('Max tokens').fill(String(TOKENS));
      await page.getByTestId('send').click();
      await page.getByTestId('run-state').filter({ hasText: 'done' }).waitFor({ timeout: CHAT_TIMEOUT_MS });
      const shown = await page.locator('[data-token]').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-token'))));
      expect(shown).toEqual(expected);
      expect(await page.locator('.token.verified').count()).toBe(TOKENS);
      expect(await page.getByTestId('run-state').textContent()).toContain(`${TOKENS} tokens, ${TOKENS} verified`);
      expect(await page.locator('table tr').count()).toBe(STAGES);
    } finally {
      await browser.close();
    }
  });

  it('shows the swarm on the landing page', async () => {
    const browser: Browser = await launchChromium({ webgpu: false });
    try {
      const page = await browser.newPage();
      await page.goto(e.server.address().url);
      await expect.poll(() => page.getByTestId('online').textContent()).toContain(`${STAGES * REDUNDANCY} volunteers online`);
      expect(await page.locator('a[href="/chat"]').count()).toBe(1);
      expect(await page.locator('a[href="/volunteer"]').count()).toBe(1);
      // Every endpoint of the API, no key where the server asks none, and what an unverified token is.
      const api = await page.getByTestId('api').textContent();
      for (const path of ['/v1/chat/completions', '/v1/completions', '/v1/responses', '/v1/models']) expect(api).toContain(path);
      expect(api).not.toContain('API key');
      expect(api).toContain('not verified');
      // The chat page says it continues a text.
      await page.goto(`${e.server.address().url}/chat`);
      expect(await page.getByTestId('what-it-does').textContent()).toContain('The model continues your text');
    } finally {
      await browser.close();
    }
  });

  it('a reloaded volunteer takes its stage from the browser cache', async () => {
    const page = e.swarm.pages[0];
    if (page === undefined) throw new Error('no volunteer page');
    await page.reload();
    await consent(page);
    await page.waitForFunction(() => window.webswarmVolunteer?.state === 'ready', null, { timeout: 60_000 });
    const status = await page.evaluate(() => window.webswarmVolunteer);
    expect(status?.progress, 'the reloaded tab took its stage from the cache').toMatchObject({ fromCache: true });
  });

  it('refuses bad requests with OpenAI-shaped errors', async () => {
    const cases: [Record<string, unknown>, number, RegExp][] = [
      [{ prompt: '', max_tokens: 4 }, 400, /prompt/],
      [{ prompt: 'x', max_tokens: 0 }, 400, /max_tokens/],
      [{ prompt: 'x', temperature: -1 }, 400, /temperature/],
      [{ model: 'gpt-4', prompt: 'x' }, 404, /^The model "gpt-4" does not exist here \(served: /],
    ];
    for (const [body, status, message] of cases) {
      const r = await complete(body);
      expect(r.status).toBe(status);
      expect(r.json.error?.message).toMatch(message);
    }
  });
});
