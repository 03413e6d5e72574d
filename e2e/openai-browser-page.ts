// The official `openai` package in a web page of another origin, for
// e2e/openai-client.spec.ts: the package bundled for the browser by Vite at
// test time, the host page's script (what a site's own code would do with the
// client), and a host server on http://localhost:PORT (the swarm is on
// http://127.0.0.1:PORT, so every request is cross-origin).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { build, type Rolldown } from 'vite';

export const BROWSER_MESSAGES = [{ role: 'user' as const, content: 'Good morning. Is your sister at home?' }];

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
export const HOST_SCRIPT = `
import OpenAI from '/openai.js';
window.runClient = async ({ baseURL, model, messages, maxTokens }) => {
  const client = new OpenAI({ baseURL, apiKey: 'none', dangerouslyAllowBrowser: true, maxRetries: 0 });
  const whole = await client.chat.completions.create({ model, messages, max_tokens: maxTokens, temperature: 0, logprobs: true });
  let streamed = '';
  const stream = await client.chat.completions.create({ model, messages, max_tokens: maxTokens, temperature: 0, stream: true });
  for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content ?? '';
  // The Responses API, streamed through the SDK's helper, for the same conversation.
  const answer = await client.responses.stream({ model, input: messages, max_output_tokens: maxTokens, temperature: 0 }).finalResponse();
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
    responses: { text: answer.output_text, tokens: answer.webswarm.tokens, status: answer.status },
    retrieved: retrieved.id,
    unknown,
  };
};
window.clientReady = true;
`;

export interface ClientResult {
  readonly content: string;
  readonly tokens: number[];
  readonly logprobs: number;
  readonly streamed: string;
  /** The same conversation through /v1/responses (client.responses.stream(...).finalResponse()). */
  readonly responses: { readonly text: string; readonly tokens: number[]; readonly status: string };
  readonly retrieved: string;
  readonly unknown: { name: string; status: number; code: string } | null;
}
export type ClientWindow = {
  runClient(a: { baseURL: string; model: string; messages: typeof BROWSER_MESSAGES; maxTokens: number }): Promise<ClientResult>;
};

/** A page of the host's origin in a context of its own, the client loaded; its uncaught errors and failed requests go to `errors`. */
export async function openHostPage(browser: Browser, errors: string[]): Promise<{ page: Page; close(): Promise<void> }> {
  const bundle = await bundleOpenAi();
  const host: Server = createServer((req, res) => {
    if (req.url === '/')
      res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>A site that uses the openai package</title>');
    else if (req.url === '/openai.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(bundle);
    else if (req.url === '/host.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(HOST_SCRIPT);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => host.listen(0, '127.0.0.1', r));
  const page = await (await browser.newContext()).newPage();
  // Uncaught errors, and requests the browser failed (a refused preflight fails its request: net::ERR_FAILED).
  page.on('pageerror', (err) => errors.push(err.message));
  page.on('requestfailed', (r) => errors.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText ?? ''}`));
  await page.goto(`http://localhost:${(host.address() as AddressInfo).port}`);
  await page.addScriptTag({ url: '/host.js', type: 'module' });
  await page.waitForFunction(() => (window as unknown as { clientReady?: boolean }).clientReady === true, null, { timeout: 10_000 });
  return {
    page,
    async close() {
      await page.context().close();
      await new Promise((r) => host.close(r));
    },
  };
}
