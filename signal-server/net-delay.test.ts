// The bench's WAN (netDelayMs): the server delays each of its messages to a
// volunteer once, in order, tells the volunteer the delay for its own sends,
// and nothing a client sends can turn it on or change it.
import { afterEach, describe, expect, it } from 'vitest';
import { createSignalServer } from './server.js';
import { httpSwarm, TOKENS, WAIT_MS } from './testing/http-swarm.js';
import { type Client, connectClient, next } from './testing/socket-client.js';

const { start, volunteer, readyCount, complete } = httpSwarm('net-delay');
const clients: Client[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

describe('netDelayMs: a one-way delay on the coordinator’s socket (bench and tests only)', () => {
  it('delays the welcome, the assignment and volunteer:net by the configured amount, in the order they were sent', async () => {
    const { url } = await start(3, 1, { netDelayMs: 150 });
    const c = connectClient(url);
    clients.push(c);
    await new Promise<void>((resolve) => c.once('connect', () => resolve()));
    const seen: { event: string; at: number }[] = [];
    c.onAny((event: string) => seen.push({ event, at: performance.now() }));
    const net = next<{ delayMs: number }>(c, 'volunteer:net');
    const t0 = performance.now();
    c.emit('volunteer:hello', { backend: 'wasm', adapter: null, fault: null, clientKey: null });
    expect(await net).toEqual({ delayMs: 150 });
    const order = seen.filter((s) => s.event !== 'volunteer:ice');
    expect(order.map((s) => s.event)).toEqual(['volunteer:welcome', 'volunteer:assign', 'volunteer:net']);
    for (const s of order) {
      expect(s.at - t0, s.event).toBeGreaterThanOrEqual(150 - 1);
      expect(s.at - t0, s.event).toBeLessThan(150 + 5_000);
    }
  });

  it('sends no volunteer:net without a delay', async () => {
    const { url } = await start(3, 1);
    const c = connectClient(url);
    clients.push(c);
    const seen: string[] = [];
    c.onAny((event: string) => seen.push(event));
    const assign = next(c, 'volunteer:assign');
    c.emit('volunteer:hello', { backend: 'wasm', adapter: null, fault: null, clientKey: null });
    await assign;
    await new Promise((r) => setTimeout(r, 200));
    expect(seen).not.toContain('volunteer:net');
  });

  it('refuses a client that sends volunteer:net itself (ERR_BAD_MESSAGE): no client sets anyone’s delay', async () => {
    const { url } = await start(3, 1);
    const c = connectClient(url);
    clients.push(c);
    const error = next<{ code: string; message: string }>(c, 'server:error');
    (c as unknown as { emit: (e: string, m: unknown) => void }).emit('volunteer:net', { delayMs: 5_000 });
    expect(await error).toMatchObject({ code: 'ERR_BAD_MESSAGE', message: expect.stringContaining('unknown event') });
    // Its neighbours are not slowed: a welcome comes at once.
    const other = connectClient(url);
    clients.push(other);
    const t0 = performance.now();
    const welcome = next(other, 'volunteer:welcome');
    other.emit('volunteer:hello', { backend: 'wasm', adapter: null, fault: null, clientKey: null });
    await welcome;
    expect(performance.now() - t0).toBeLessThan(4_000);
  });

  it('refuses a delay out of range by name', () => {
    for (const netDelayMs of [-1, 0.5, 10_001])
      expect(() => createSignalServer({ port: 0, host: '127.0.0.1', webRoot: null, models: [], netDelayMs })).toThrow(
        /netDelayMs must be an integer from 0 to 10000/,
      );
  });

  it('keeps a generation exact, each step at least its delayed server legs late', async () => {
    const delay = 100;
    const { url, expected } = await start(3, 1, { netDelayMs: delay });
    for (let i = 0; i < 3; i++) volunteer(url, `127.0.0.${40 + i}`);
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(3);
    const r = await complete(url);
    expect(r.status).toBe(200);
    expect(r.body.webswarm?.tokens).toEqual(expected);
    // Node volunteers do not delay their own sends; the server's legs of a step are step:input to stage 0 and
    // the relayed frames to stages 1 and 2 (Node has no data channels): 3 delayed legs per token at least.
    expect(r.ms).toBeGreaterThanOrEqual(TOKENS * 3 * delay);
  }, 60_000);
});
