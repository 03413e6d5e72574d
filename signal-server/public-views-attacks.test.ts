// What the public views and the log tell a stranger: a real server on 127.0.0.1:0, a barrage of client-chosen
// paths, models, events, adapters and messages, then /metrics, /api/swarm, /api/status and the dashboard feed
// searched for them (a red-team pass, 2026-12-06, found all of this holding; kept so that it goes on holding).
// What these views do show (the swarm's traffic, second by second) is in README's "What is public".
import { afterAll, describe, expect, it } from 'vitest';
import type { DashboardSnapshot } from '../shared/protocol/messages.js';
import { PROTOCOL_VERSION } from '../shared/protocol/version.js';
import { serverLog } from './testing/server-log.js';
import { type Client, connectClient, next } from './testing/socket-client.js';
import { tinyServerForFile } from './testing/tiny-stages.js';

const server = tinyServerForFile('webswarm-public-views-', { ratePerMinute: 0, apiMaxConcurrent: 0, routeWaitMs: 50 });
const log = serverLog('trace');
const logLines = log.lines;
const VICTIM_KEY = 'sk-victim-0123456789';
/** A keyed API whose server computes (FALLBACK=whole), logging everything, to be searched. */
const keyed = tinyServerForFile('webswarm-public-log-', {
  apiKeys: [VICTIM_KEY],
  fallback: 'whole',
  redundancy: 1,
  ratePerMinute: 0,
  logger: log.logger,
});

/** An event the protocol does not name, sent as a stranger would. */
const rawEmit = (c: Client, event: string, m: unknown) => (c as unknown as { emit(e: string, m: unknown): void }).emit(event, m);

const clients: Client[] = [];
afterAll(() => {
  for (const c of clients.splice(0)) c.disconnect();
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The webswarm_* series (name and labels) other than prom-client's process/Node.js ones. */
async function series(url: string): Promise<string[]> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith('webswarm_') && !/^webswarm_(process|nodejs)_/.test(l))
    .map((l) => l.slice(0, l.lastIndexOf(' ')));
}

describe('what a stranger’s strings leave in the public views and the log', () => {
  it('a barrage of client-chosen paths, models, events, codes and adapters adds no series beyond fixed label sets', async () => {
    const url = server().address().url;
    const before = new Set(await series(url));
    const M = 'stranger';
    const reqs: Promise<unknown>[] = [];
    for (let i = 0; i < 30; i++) {
      const go = (path: string, init?: RequestInit) => reqs.push(fetch(`${url}${path}`, init).then((r) => r.arrayBuffer()));
      go(`/v1/${M}-path-${i}`);
      go(`/v1/models/${M}-model-${i}`);
      go(`/v1/responses/${M}-resp-${i}`);
      go('/v1/completions', { method: 'POST', body: JSON.stringify({ model: `${M}-model-${i}`, prompt: 'x', max_tokens: 1 }) });
      go('/v1/chat/completions', { method: 'POST', body: `{"${M}-field-${i}": 1}` });
      go('/tokenize', { method: 'POST', body: JSON.stringify({ model: `${M}-m-${i}`, prompt: 'x' }) });
      go(`/${M}-page-${i}`, { method: 'DELETE' });
      go(`/metrics?${M}=${i}`);
    }
    await Promise.all(reqs);
    // Sockets: a bad handshake, unknown events, hellos with chosen adapters, failures with chosen messages.
    for (let i = 0; i < 5; i++) {
      const bad = connectClient(url, { protocol: `${M}-proto-${i}`, role: 'volunteer' }, `127.0.0.${80 + i}`);
      clients.push(bad);
      const v = connectClient(url, { protocol: PROTOCOL_VERSION, role: 'volunteer' }, `127.0.0.${90 + i}`);
      clients.push(v);
      const welcome = next(v, 'volunteer:welcome');
      v.emit('volunteer:hello', {
        backend: 'wasm',
        adapter: `${M}-adapter-${i}`,
        fault: null,
        clientKey: `${M}-key-${i}-xxxx`,
        capacity: { deviceMemoryGiB: 64, maxBufferBytes: null, maxStorageBindingBytes: null },
      });
      await welcome;
      rawEmit(v, `${M}-event-${i}`, {});
      v.emit('step:failed', { sessionId: i, step: 0, code: 'ERR_INTERNAL', message: `${M}-msg-${i}` } as never);
      v.emit('volunteer:ready', { modelId: `${M}-model-${i}`, stage: 99, stepMs: 1 } as never);
    }
    await sleep(500);
    const after = await series(url);
    const added = after.filter((s) => !before.has(s));
    expect(after.filter((s) => s.includes(M))).toEqual([]);
    // Fixed label sets only: nothing per path, model, adapter or event.
    expect(added.length).toBeLessThan(30);
  });

  it('public listings show a volunteer’s id and chosen adapter, never its address or client key', async () => {
    const url = server().address().url;
    const swarm = await (await fetch(`${url}/api/swarm`)).text();
    const spy = connectClient(url, { protocol: PROTOCOL_VERSION, role: 'requester' }, '127.0.0.99');
    clients.push(spy);
    const snap = next<DashboardSnapshot>(spy, 'dashboard:snapshot');
    spy.emit('dashboard:subscribe');
    const dash = JSON.stringify(await snap);
    const status = await (await fetch(`${url}/api/status`)).text();
    for (const text of [swarm, dash, status]) {
      expect(text).not.toMatch(/127\.0\.0\.9\d/);
      expect(text).not.toContain('stranger-key');
    }
  });

  it('the log, at its most detailed level, keeps no prompt, output or API key of a request', async () => {
    const url = keyed().address().url;
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${VICTIM_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'tiny-untied',
        messages: [{ role: 'user', content: 'STRANGERPROMPTMARK' }],
        max_tokens: 5,
        temperature: 0,
      }),
    });
    const body = (await res.json()) as { choices?: { message: { content: string } }[] };
    expect(res.status).toBe(200);
    const out = body.choices?.[0]?.message.content ?? '';
    // A wrong key, a malformed body: refused lines.
    await (
      await fetch(`${url}/v1/completions`, { method: 'POST', headers: { authorization: 'Bearer sk-STRANGERWRONGKEY' }, body: '{}' })
    ).text();
    await (
      await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${VICTIM_KEY}` },
        body: '{"prompt":"STRANGERPROMPTMARK2","max_tokens":"x"}',
      })
    ).text();
    const text = logLines.join('\n');
    // The log did speak of these requests (the refusals, at least), so the search below means something.
    expect(logLines.some((l) => /401|invalid_api_key|400|max_tokens/.test(l))).toBe(true);
    expect(text).not.toContain('STRANGERPROMPTMARK');
    expect(text).not.toContain(VICTIM_KEY);
    expect(text).not.toContain('STRANGERWRONGKEY');
    if (out.trim().length >= 6) expect(text).not.toContain(out.trim());
  });
});
