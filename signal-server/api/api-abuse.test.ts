// The requester's API attacked from outside: a real server on port 0, fetch
// and raw TCP. One requester with its minute's allowance could hold every
// place of the route queue (MAX_QUEUED) so that everyone else was answered
// 503 ERR_BUSY at once, and a body sent a byte now and then held its request
// for Node's 300 s request timeout. Now each key (or address) has at most
// API_MAX_CONCURRENT generations running, and a body has 10 s to arrive.
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { WireError } from '../../shared/protocol/errors.js';
import { PROTOCOL_VERSION } from '../../shared/protocol/version.js';
import { scrapeMetrics } from '../../testing/metrics-scrape.js';
import { ensureStages, partitionKey } from '../models/model-folder.js';
import { createSignalServer, DEFAULT_API_MAX_CONCURRENT, type SignalServer, type SignalServerOptions } from '../server.js';
import { httpSwarm } from '../testing/http-swarm.js';
import { connectClient } from '../testing/socket-client.js';

const { stageCache } = httpSwarm('api-abuse');
const QUEUE = 8;
const ROUTE_WAIT_MS = 4_000;
const BODY_TIMEOUT_MS = 1_000;
const TEST_MS = 60_000;
/** Tokens of each of the attacker's generations on the fallback: long beside an honest one's 8. */
const ATTACK_TOKENS = 400;
const servers: SignalServer[] = [];

afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

/**
 * A server without volunteers: every generation waits ROUTE_WAIT_MS in the queue, then fails ERR_NO_ROUTE;
 * with the fallback, the server computes it.
 */
async function server(extra: Partial<SignalServerOptions> = {}): Promise<string> {
  const { dir, manifest } = await ensureStages('fixtures/models/tiny-untied', { stages: 2 }, stageCache());
  const s = createSignalServer({
    port: 0,
    host: '127.0.0.1',
    webRoot: null,
    models: [{ dir, manifest, key: partitionKey(2, { stages: 2 }) }],
    redundancy: 2,
    routeWaitMs: ROUTE_WAIT_MS,
    maxQueued: QUEUE,
    apiKeys: ['sk-attacker', 'sk-honest', 'sk-chatty'],
    ratePerMinute: 0,
    bodyTimeoutMs: BODY_TIMEOUT_MS,
    ...extra,
  });
  await s.ready;
  servers.push(s);
  return s.address().url;
}

interface Answer {
  readonly status: number;
  readonly code: string | null;
  readonly message: string | null;
  readonly retryAfter: string | null;
  readonly ms: number;
}

function generate(url: string, key: string, signal?: AbortSignal, maxTokens = 64, n = 1): Promise<Answer> {
  const t0 = performance.now();
  return fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ prompt: 'Emma', max_tokens: maxTokens, stream: true, n }),
    ...(signal === undefined ? {} : { signal }),
  }).then(async (res) => {
    const body = (await res.json().catch(() => null)) as { error?: { code: string; message: string } } | null;
    return {
      status: res.status,
      code: body?.error?.code ?? null,
      message: body?.error?.message ?? null,
      retryAfter: res.headers.get('retry-after'),
      ms: performance.now() - t0,
    };
  });
}

/**
 * Waits (15 s at most) until the server's fallback computes `n` generations (its /metrics page). A wait, not a timed
 * claim: the first generation starts the server's runner thread and loads its stages, and on loaded cores that took
 * over 5 s once (CI on 9235e37: 0 of 2 after 5 s).
 */
async function fallbackSessions(url: string, n: number): Promise<void> {
  const until = performance.now() + 15_000;
  let now = Number.NaN;
  while (performance.now() < until) {
    now = (await scrapeMetrics(url, ['webswarm_fallback_sessions'])).webswarm_fallback_sessions;
    if (now === n) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`the fallback computes ${now} generations, not ${n}, after 15 s`);
}

/** One completion, not streamed: its status and body. */
async function complete(
  url: string,
  key: string,
  maxTokens: number,
): Promise<{ status: number; body: { choices?: unknown[]; error?: unknown } }> {
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ prompt: 'Emma', max_tokens: maxTokens }),
  });
  return { status: res.status, body: (await res.json()) as { choices?: unknown[]; error?: unknown } };
}

/** Headers of a POST whose body never completes: 10 of 1 000 bytes. */
function slowBody(url: string, key: string): Promise<{ firstLine: string; ms: number }> {
  const { hostname, port } = new URL(url);
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const sock = connect(Number(port), hostname, () => {
      sock.write(
        `POST /v1/completions HTTP/1.1\r\nHost: ${hostname}\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"prompt":`,
      );
    });
    let got = '';
    sock.on('data', (d) => {
      got += d.toString('utf8');
      if (got.includes('\r\n')) {
        resolve({ firstLine: got.slice(0, got.indexOf('\r\n')), ms: performance.now() - t0 });
        sock.destroy();
      }
    });
    sock.on('error', reject);
  });
}

/** One request of 3 generations, as n = 3 and as a batch of 3 prompts, each answered 200 with its 3 choices. */
async function expectThreeServed(url: string, maxTokens: number): Promise<void> {
  for (const body of [{ prompt: 'Emma', n: 3 }, { prompt: ['Emma', 'Harriet', 'Mr. Knightley'] }]) {
    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer sk-honest' },
      body: JSON.stringify({ ...body, max_tokens: maxTokens }),
    });
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(((await res.json()) as { choices: unknown[] }).choices).toHaveLength(3);
  }
}

describe('one requester against everyone else', () => {
  it(
    `hostile: a key with ${QUEUE} requests at once gets ${DEFAULT_API_MAX_CONCURRENT} places, the rest 429 at once; another key still gets a place in the queue; the chat page's socket shares the count; a client gone gives its place back`,
    async () => {
      const url = await server();
      const waiting = new AbortController();
      const attack = Array.from({ length: QUEUE }, () => generate(url, 'sk-attacker', waiting.signal).catch(() => null));
      // The refusals come at once, while the admitted ones wait for a route.
      const refused = (await Promise.race([
        Promise.all(attack.slice(DEFAULT_API_MAX_CONCURRENT)),
        new Promise((r) => setTimeout(() => r('late'), ROUTE_WAIT_MS / 2)),
      ])) as (Answer | null)[] | 'late';
      expect(refused).not.toBe('late');
      for (const a of refused as Answer[]) {
        expect(a).toMatchObject({ status: 429, code: 'too_many_concurrent_requests', retryAfter: '1' });
        expect(a.message).toContain(`${DEFAULT_API_MAX_CONCURRENT} generations of this client are running already`);
      }
      // Its chat page's socket counts with them.
      const page = connectClient(url, { protocol: PROTOCOL_VERSION, role: 'requester' });
      const chatError = new Promise<WireError>((resolve) => page.on('chat:error', (e: WireError) => resolve(e)));
      page.emit('chat:generate', {
        requestId: 'r1',
        apiKey: 'sk-attacker',
        prompt: 'Emma',
        maxTokens: 4,
        temperature: 0,
        topP: 1,
        seed: 0,
      });
      expect(await chatError).toMatchObject({ code: 'ERR_RATE_LIMITED', message: expect.stringMatching(/at most 4 at once/) });
      page.disconnect();
      // Another requester is queued, not refused for the attacker's crowd: it waits its turn and fails only for want of volunteers.
      const honest = await generate(url, 'sk-honest');
      expect(honest).toMatchObject({ status: 503, code: 'ERR_NO_ROUTE' });
      expect(honest.ms).toBeGreaterThan(ROUTE_WAIT_MS / 2);
      // The attacker goes away: its places come back at once, not after the route wait.
      waiting.abort();
      await Promise.all(attack);
      await expect
        .poll(
          async () => {
            const c = new AbortController();
            const a = generate(url, 'sk-attacker', c.signal).catch(() => null);
            const r = await Promise.race([a, new Promise((res) => setTimeout(() => res('waiting'), 300))]);
            c.abort();
            await a;
            return r;
          },
          { timeout: 10_000 },
        )
        .toBe('waiting');
    },
    TEST_MS,
  );

  it(
    'n choices beside requests of the same key run in turns on the generations it has left: answered, never refused',
    async () => {
      const url = await server({ fallback: 'stage', fallbackMaxSessions: 16 });
      const choices = async (n: number) => {
        const res = await fetch(`${url}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: 'Bearer sk-attacker' },
          body: JSON.stringify({ prompt: 'Emma', max_tokens: 4, n, temperature: 0 }),
        });
        const body = (await res.json()) as { choices?: { index: number; text: string }[] };
        return { status: res.status, texts: body.choices?.map((c) => c.text) ?? [] };
      };
      // Alone: n = 8 (MAX_CHOICES) is twice what the key may run at once. Before: a 429 that no wait could cure.
      const eight = await choices(8);
      expect(eight.status).toBe(200);
      expect(eight.texts).toHaveLength(8);
      // Greedy: every choice is the same draw.
      expect(new Set(eight.texts).size).toBe(1);
      // Three of the key's four places held by bodies still arriving: n = 4 runs one choice at a time. Before: a 429.
      const slow = Array.from({ length: DEFAULT_API_MAX_CONCURRENT - 1 }, () => slowBody(url, 'sk-attacker'));
      await new Promise((r) => setTimeout(r, 300));
      const four = await choices(4);
      expect(four).toEqual({ status: 200, texts: eight.texts.slice(0, 4) });
      for (const s of await Promise.all(slow)) expect(s.firstLine).toBe('HTTP/1.1 408 Request Timeout');
    },
    TEST_MS,
  );

  it(
    `hostile: a body that never completes is answered 408 after ${BODY_TIMEOUT_MS} ms and holds one of its key's places until then`,
    async () => {
      const url = await server();
      const slow = Array.from({ length: DEFAULT_API_MAX_CONCURRENT }, () => slowBody(url, 'sk-attacker'));
      // While they dribble, the key has no place left; another key has.
      await expect.poll(async () => (await generate(url, 'sk-attacker')).code, { timeout: 5_000 }).toBe('too_many_concurrent_requests');
      const c = new AbortController();
      const honest = generate(url, 'sk-honest', c.signal).catch(() => null);
      expect(await Promise.race([honest, new Promise((r) => setTimeout(() => r('waiting'), 300))])).toBe('waiting');
      c.abort();
      for (const s of await Promise.all(slow)) {
        expect(s.firstLine).toBe('HTTP/1.1 408 Request Timeout');
        // Before: nothing within Node's 300 s request timeout.
        expect(s.ms).toBeGreaterThanOrEqual(BODY_TIMEOUT_MS - 50);
        expect(s.ms).toBeLessThan(BODY_TIMEOUT_MS + 10_000);
      }
    },
    TEST_MS,
  );

  it(
    'hostile: with the fallback computing, one key holds at most half its sessions, the rest in turns; another key is served meanwhile',
    async () => {
      // No volunteers: every stage is the server's, 4 sessions at once (FALLBACK_MAX_SESSIONS).
      const url = await server({ fallback: 'stage', fallbackMaxSessions: 4 });
      let ended = 0;
      const attack = Array.from({ length: DEFAULT_API_MAX_CONCURRENT }, () =>
        generate(url, 'sk-attacker', undefined, ATTACK_TOKENS).finally(() => {
          ended += 1;
        }),
      );
      // Two of its four take a seat; the other two wait for those (before: refused at once, and a request of n = 3
      // or a batch of 3 prompts could never be served while the fallback computed). The two other seats are there
      // for another client, at once.
      await new Promise((r) => setTimeout(r, 100));
      const honest = await Promise.all([generate(url, 'sk-honest', undefined, 8), generate(url, 'sk-honest', undefined, 8)]);
      expect(honest.map((a) => a.status)).toEqual([200, 200]);
      expect(ended).toBeLessThanOrEqual(2);
      // Each of the attacker's is served in its turn.
      const answers = await Promise.all(attack);
      expect(
        answers.map((a) => a.status),
        JSON.stringify(answers),
      ).toEqual([200, 200, 200, 200]);
      // One request of 3 generations (n = 3, or a batch of 3 prompts) is served in turns too. Before: a 503 "try again
      // shortly" that no retry could cure, while the fallback computed.
      await expectThreeServed(url, 4);
    },
    TEST_MS,
  );

  it(
    'n = 3 on the fallback, its first two outlasting the route wait: the third waits for them, not for the route wait',
    async () => {
      // A route wait far shorter than one generation (a red-team review: the third failed after it, the first two's
      // work thrown away).
      const url = await server({ fallback: 'stage', fallbackMaxSessions: 4, routeWaitMs: 100 });
      await expectThreeServed(url, ATTACK_TOKENS);
    },
    TEST_MS,
  );

  it(
    'hostile: a seat the fallback frees goes to the session waiting for it in turn, not to a client asking again and again',
    async () => {
      // Two seats, one a client; no volunteers; a route wait far shorter than a generation.
      const url = await server({
        fallback: 'stage',
        fallbackMaxSessions: 2,
        routeWaitMs: 100,
        apiKeys: ['sk-attacker', 'sk-honest', 'sk-other'],
      });
      // The scenario needs the hammer to meet both seats held. On loaded cores a generation of austen-2m (some
      // 400 ms of the server's compute) can end before the hammer's first try comes (CI, 2026-12-06: no try was
      // refused); where no try met them, it is run again, three times at most.
      let tries: Answer[] = [];
      for (let attempt = 0; attempt < 3 && !tries.some((t) => t.status !== 200); attempt++) {
        // Two requests of one client, not streamed: the second waits for the first (the client's share is one seat).
        const request = () => complete(url, 'sk-honest', ATTACK_TOKENS);
        const first = request();
        await new Promise((r) => setTimeout(r, 50));
        const honest = request();
        await new Promise((r) => setTimeout(r, 50));
        // Another client holds the other seat meanwhile, as long.
        const other = generate(url, 'sk-other', undefined, ATTACK_TOKENS);
        // Both seats held before the third starts (on a busy machine, 50 ms was not always enough for the other's, and
        // the third then took a free seat at every try: nothing to refuse).
        await fallbackSessions(url, 2);
        // A third asks again and again (bounded in count), to take the seat the first choice frees and hold it a while.
        let done = false;
        tries = [];
        const hammer = (async () => {
          for (let i = 0; i < 1000 && !done; i++) {
            tries.push(await generate(url, 'sk-attacker', undefined, 40));
            await new Promise((r) => setTimeout(r, 5));
          }
        })();
        const answer = await honest;
        done = true;
        await hammer;
        // The waiting request is served; the other client's wait for a seat ends with its route wait meanwhile. (Before, a freed seat
        // was whoever's asked first; here the waiting request's poll, overdue while the server computed, came first
        // anyway: the turn is proven in fallback-handover.test.ts, this shows it through the API.)
        expect((await first).status).toBe(200);
        expect(answer.status, JSON.stringify(answer.body)).toBe(200);
        expect(answer.body.choices).toHaveLength(1);
        expect((await other).status).toBe(200);
        // Every seat free again before another attempt.
        await fallbackSessions(url, 0);
      }
      const refused = tries.filter((t) => t.status !== 200);
      expect(refused.length).toBeGreaterThan(0);
      for (const t of refused) expect(t).toMatchObject({ status: 503, code: 'ERR_BUSY' });
      expect(refused.some((t) => /waiting for a seat\) until its route wait ended/.test(t.message ?? ''))).toBe(true);
    },
    TEST_MS,
  );

  it(
    'hostile: two keys resubmitting to keep every fallback seat: a third, holding none, waits its turn and is served',
    async () => {
      const url = await server({
        fallback: 'stage',
        fallbackMaxSessions: 4,
        routeWaitMs: 10_000,
        maxQueued: 64,
        apiKeys: ['sk-a1', 'sk-a2', 'sk-honest'],
      });
      let stop = false;
      // Each attacking key keeps its four generations going, a new one as soon as one ends (bounded in count).
      const keepBusy = (key: string) =>
        Promise.all(
          Array.from({ length: DEFAULT_API_MAX_CONCURRENT }, async () => {
            for (let i = 0; i < 40 && !stop; i++) await complete(url, key, 200);
          }),
        );
      const attack = [keepBusy('sk-a1'), keepBusy('sk-a2')];
      await new Promise((r) => setTimeout(r, 500));
      // Before (a red-team pass): the third key, holding no seat, was refused at once every time (0 of about 100
      // tries in 12 s), since a freed seat went to a session of the keys holding seats, which always had one waiting.
      const answers: { status: number; body: unknown }[] = [];
      try {
        for (let i = 0; i < 4; i++) answers.push(await complete(url, 'sk-honest', 4));
      } finally {
        stop = true;
        await Promise.all(attack);
      }
      expect(
        answers.map((a) => a.status),
        JSON.stringify(answers.find((a) => a.status !== 200)?.body),
      ).toEqual([200, 200, 200, 200]);
    },
    TEST_MS,
  );

  it(
    'hostile: a batch of prompts counts as its prompts against the rate limit (before, 32 prompts cost one request)',
    async () => {
      const url = await server({ fallback: 'stage', fallbackMaxSessions: 16, ratePerMinute: 5 });
      const batch = async (key: string, prompts: number) => {
        const res = await fetch(`${url}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
          body: JSON.stringify({ prompt: Array.from({ length: prompts }, (_, i) => `Emma ${i}`), max_tokens: 2 }),
        });
        const body = (await res.json()) as { choices?: unknown[]; error?: { code: string; message: string; param: string | null } };
        return { status: res.status, body, retryAfter: res.headers.get('retry-after') };
      };
      // More prompts than a minute's allowance: refused whatever the wait (its request took one of the five).
      const six = await batch('sk-attacker', 6);
      expect(six).toMatchObject({ status: 429, retryAfter: null });
      expect(six.body.error).toEqual({
        type: 'rate_limit_error',
        code: 'rate_limit_exceeded',
        param: 'prompt',
        message:
          'a batch of 6 prompts counts as 6 requests: more than the rate limit of 5 requests per minute allows; send at most 5 prompts a request',
      });
      // Four left: a batch of 3 is served (one left); the next batch of 3 is let in (none left) but not its two other
      // prompts: refused, with the wait for them; and then the key's minute is spent, for one prompt too.
      const three = await batch('sk-attacker', 3);
      expect(three.status, JSON.stringify(three.body)).toBe(200);
      expect(three.body.choices).toHaveLength(3);
      const more = await batch('sk-attacker', 3);
      // Two more requests at 5 a minute: 24 s, less what the requests before took (seconds on a loaded machine).
      expect(more.status).toBe(429);
      expect(Number(more.retryAfter)).toBeGreaterThan(12);
      expect(Number(more.retryAfter)).toBeLessThanOrEqual(24);
      expect(more.body.error?.message).toBe(
        `a batch of 3 prompts counts as 3 requests: rate limit of 5 requests per minute reached; retry in ${more.retryAfter} s`,
      );
      // A chat of many messages counts as a request a 64 messages (its template renders each): 129 of them, 3.
      const chat = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer sk-chatty' },
        body: JSON.stringify({ messages: Array.from({ length: 129 }, () => ({ role: 'user', content: '' })), max_tokens: 1 }),
      });
      expect(chat.status).not.toBe(429);
      const again = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer sk-chatty' },
        body: JSON.stringify({ messages: Array.from({ length: 129 }, () => ({ role: 'user', content: '' })), max_tokens: 1 }),
      });
      expect(again.status).toBe(429);
      expect(((await again.json()) as { error: { message: string; param: string } }).error).toMatchObject({
        param: 'messages',
        message: expect.stringMatching(/^a chat of 129 messages counts as 3 requests/),
      });
      expect((await generate(url, 'sk-attacker', undefined, 2)).status).toBe(429);
      // Another key's allowance is its own.
      expect((await batch('sk-honest', 5)).status).toBe(200);
    },
    TEST_MS,
  );
});
