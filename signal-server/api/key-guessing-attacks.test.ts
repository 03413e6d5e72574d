// A stranger guessing API keys (API_KEYS set), over HTTP and over Socket.IO,
// against a real server on port 0. Before, a wrong key was answered 401
// before any allowance was spent: a red-team pass made 300 guesses in 182 ms
// and found a key shaped like README's example. Now an address has
// KEY_FAILURES_PER_MINUTE requests without a valid key, and then every key
// check from it waits (429, Retry-After), the right key too; another address
// is not held up.
import { request } from 'node:http';
import { afterAll, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../../shared/protocol/version.js';
import { type Client, connectClient, next } from '../testing/socket-client.js';
import { tinyServerForFile } from '../testing/tiny-stages.js';
import { KEY_FAILURES_PER_MINUTE } from './access.js';

const KEY = 'sk-local-7';
const GUESSES = 300;
const server = tinyServerForFile('webswarm-key-guessing-', { apiKeys: [KEY], ratePerMinute: 600 });
const clients: Client[] = [];
afterAll(() => {
  for (const c of clients.splice(0)) c.disconnect();
});

/** GET `path` from `localAddress` with `key`: the status and Retry-After. */
function get(path: string, key: string, localAddress: string): Promise<{ status: number; retryAfter: string | undefined }> {
  const url = new URL(path, server().address().url);
  return new Promise((resolve, reject) => {
    const req = request(url, { localAddress, headers: { authorization: `Bearer ${key}` } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('guessing API keys', () => {
  it('over HTTP: an address gets KEY_FAILURES_PER_MINUTE wrong tries, then 429 for every key, the right one too', async () => {
    const statuses: number[] = [];
    const guesses = Array.from({ length: GUESSES }, (_, i) => (i === GUESSES - 50 ? KEY : `sk-local-${1000 + i}`));
    for (let i = 0; i < GUESSES; i += 10) {
      const answers = await Promise.all(guesses.slice(i, i + 10).map((k) => get('/v1/models', k, '127.0.0.31')));
      statuses.push(...answers.map((a) => a.status));
      for (const a of answers) if (a.status === 429) expect(Number(a.retryAfter)).toBeGreaterThanOrEqual(1);
    }
    expect(statuses.filter((s) => s === 401)).toHaveLength(KEY_FAILURES_PER_MINUTE);
    expect(statuses.filter((s) => s === 429)).toHaveLength(GUESSES - KEY_FAILURES_PER_MINUTE);
    // The right key, guessed after the allowance was spent, was not told apart.
    expect(statuses[GUESSES - 50]).toBe(429);
    // A client at another address is not held up.
    expect((await get('/v1/models', KEY, '127.0.0.32')).status).toBe(200);
  });

  it('over Socket.IO (chat:generate with apiKey): the same allowance, then ERR_RATE_LIMITED', async () => {
    const c = connectClient(server().address().url, { protocol: PROTOCOL_VERSION, role: 'requester' }, '127.0.0.33');
    clients.push(c);
    await new Promise<void>((resolve) => c.once('connect', () => resolve()));
    const codes: string[] = [];
    c.on('chat:error', (e) => codes.push(e.code));
    const n = 3 * KEY_FAILURES_PER_MINUTE;
    for (let i = 0; i < n; i++) {
      c.emit('chat:generate', {
        requestId: `g${i}`,
        prompt: 'x',
        maxTokens: 1,
        temperature: 0,
        topP: 1,
        seed: 0,
        apiKey: `sk-local-${2000 + i}`,
      });
      // Inside the socket's event budget.
      if (i % 15 === 14) await new Promise((r) => setTimeout(r, 100));
    }
    await expect.poll(() => codes.length, { timeout: 5_000 }).toBe(n);
    expect(codes.slice(0, KEY_FAILURES_PER_MINUTE)).toEqual(Array(KEY_FAILURES_PER_MINUTE).fill('ERR_UNAUTHORIZED'));
    expect(codes.slice(KEY_FAILURES_PER_MINUTE)).toEqual(Array(n - KEY_FAILURES_PER_MINUTE).fill('ERR_RATE_LIMITED'));
    c.emit('chat:generate', { requestId: 'right', prompt: 'x', maxTokens: 1, temperature: 0, topP: 1, seed: 0, apiKey: KEY });
    expect(await next<{ requestId: string; code: string }>(c, 'chat:error')).toMatchObject({
      requestId: 'right',
      code: 'ERR_RATE_LIMITED',
    });
  });
});
