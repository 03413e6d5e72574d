// The official `openai` package in a web page of another origin
// (http://localhost:PORT, against the swarm's http://127.0.0.1:PORT), bundled
// for the browser by Vite at test time. Its requests carry x-stainless-*
// headers, so each is preceded by a CORS preflight that must allow them. A
// chat completes, streamed and not, with the reference runner's tokens; the
// model is retrieved, and an unknown one gives the client's own error.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { build, type Rolldown } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { E2E_MODEL, type E2eSwarm, startE2eSwarm } from './harness.js';

const TOKENS = 12;
const MESSAGES = [{ role: 'user' as const, content: 'Good morning. Is your sister at home?' }];

/** The `openai` package as one ES module for a browser. */
async function bundleOpenAi(): Promise<string> {
  const out = await build({
    configFile: false,
    logLevel: 'silent',
    publicDir: false,
    build: {
      write: false,
      minify: false,
      lib: { entry: fileURLToPath(import.meta.resolve('openai')), formats: ['es'], fileName: 'openai' },
    },
  });
  const outputs = (Array.isArray(out) ? out : [out]) as Rolldown.RolldownOutput[];
  const chunk = outputs.flatMap((o) => o.output).find((c) => c.type === 'chunk' && c.isEntry);
  if (chunk === undefined || chunk.type !== 'chunk') throw new Error('vite gave no bundle of the openai package');
  return chunk.code;
}

// The host page's script: what a site's own code would do with the client.
const HOST_SCRIPT = `
import OpenAI from '/openai.js';
window.runClient = async ({ baseURL, model, messages, maxTokens }) => {
  const client = new OpenAI({ baseURL, apiKey: 'none', dangerouslyAllowBrowser: true, maxRetries: 0 });
  const whole = await client.chat.completions.create({ model, messages, max_tokens: maxTokens, temperature: 0, logprobs: true });
  let streamed = '';
  const stream = await client.chat.completions.create({ model, messages, max_tokens: maxTokens, temperature: 0, stream: true });
  for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content ?? '';
  const retrieved = await client.models.retrieve(model);
  const unknown = await client.models.retrieve('gpt-4').then(
    () => null,
    (e) => ({ name: e.constructor.name, status: e.status, code: e.code }),
  );
  return {
    content: whole.choices[0].message.content,
    tokens: whole.webswarm.tokens,
    logprobs: whole.choices[0].logprobs.content.length,
    streamed,
    retrieved: retrieved.id,
    unknown,
  };
};
window.clientReady = true;
`;

interface ClientResult {
  readonly content: string;
  readonly tokens: number[];
  readonly logprobs: number;
  readonly streamed: string;
  readonly retrieved: string;
  readonly unknown: { name: string; status: number; code: string } | null;
}
type ClientWindow = {
  runClient(a: { baseURL: string; model: string; messages: typeof MESSAGES; maxTokens: number }): Promise<ClientResult>;
};

let e: E2eSwarm;
let host: Server;
let hostUrl: string;
let page: Page;
const pageErrors: string[] = [];

beforeAll(async () => {
  const bundle = await bundleOpenAi();
  e = await startE2eSwarm({ volunteers: 1, stages: 1, redundancy: 1, quiet: true });
  host = createServer((req, res) => {
    if (req.url === '/')
      res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>A site that uses the openai package</title>');
    else if (req.url === '/openai.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(bundle);
    else if (req.url === '/host.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(HOST_SCRIPT);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => host.listen(0, '127.0.0.1', r));
  hostUrl = `http://localhost:${(host.address() as AddressInfo).port}`;
  const browser = e.swarm.pages[0]?.context().browser();
  if (browser === null || browser === undefined) throw new Error('the local swarm has no browser');
  page = await (await browser.newContext()).newPage();
  // Uncaught errors, and requests the browser failed (a refused preflight fails its request: net::ERR_FAILED).
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('requestfailed', (r) => pageErrors.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText ?? ''}`));
  await page.goto(hostUrl);
  await page.addScriptTag({ url: '/host.js', type: 'module' });
  await page.waitForFunction(() => (window as unknown as { clientReady?: boolean }).clientReady === true, null, { timeout: 10_000 });
});

afterAll(async () => {
  await page?.context().close();
  await new Promise((r) => host?.close(r));
  await e?.close();
});

describe('the openai package in a page of another origin', () => {
  it('gets through the CORS preflight and completes a chat like the reference runner', async () => {
    const r = await page.evaluate((a) => (window as unknown as ClientWindow).runClient(a), {
      baseURL: `${e.server.address().url}/v1`,
      model: E2E_MODEL,
      messages: MESSAGES,
      maxTokens: TOKENS,
    });
    const expected = await e.expected(e.server.coordinator?.chatPrompt(MESSAGES) as string, TOKENS);
    expect(r.tokens).toEqual(expected);
    expect(r.content).toBe(e.reference.tokenizer.decode(expected));
    expect(r.streamed).toBe(r.content);
    expect(r.logprobs).toBe(TOKENS);
    expect(r.retrieved).toBe(E2E_MODEL);
    expect(r.unknown).toEqual({ name: 'NotFoundError', status: 404, code: 'model_not_found' });
    expect(pageErrors).toEqual([]);
  });
});
