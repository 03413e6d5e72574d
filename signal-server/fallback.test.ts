// The fallback over the real protocol: a real server on port 0, Node
// volunteers that compute with onnxruntime and speak Socket.IO (frames to and
// from the server's own replica travel as `frame` events, as a browser sends
// them; see node-volunteer.ts), requests over the HTTP API. The browser's path
// is in e2e/fallback.spec.ts.
import { describe, expect, it } from 'vitest';
import { DEFAULT_FRAME_LIMITS, FrameAssembler } from '../shared/protocol/frames.js';
import { parseServiceStatus } from '../shared/protocol/http.js';
import { packFrameMessages } from '../shared/protocol/messages.js';
import { type CompletionBody, httpSwarm, PROMPT, TOKENS, WAIT_MS } from './testing/http-swarm.js';
import type { NodeVolunteer } from './testing/node-volunteer.js';

const { start, volunteer, readyCount, complete } = httpSwarm('fallback');

/** Nine volunteers for 3 stages × r = 3, from nine addresses; resolves once all are ready, with stage 1's three. */
async function fullSwarm(url: string) {
  const vs = Array.from({ length: 9 }, (_, i) => volunteer(url, `127.0.0.${40 + i}`));
  await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(9);
  return vs.filter((v) => v.stage === 1);
}

describe('the fallback over Socket.IO', () => {
  it('a stage loses every volunteer mid-generation: the answer is the reference, the tokens after the loss say the server computed stage 1', async () => {
    const { url, expected } = await start(3, 3, { fallback: 'stage', joinTimeoutMs: 3_000, stepTimeoutMs: 3_000 });
    const stage1 = await fullSwarm(url);
    expect(stage1).toHaveLength(3);
    for (const v of stage1) v.leaveAfter(2);
    const r = await complete(url);
    expect(r.status).toBe(200);
    expect(r.body.webswarm?.tokens).toEqual(expected);
    const perToken = r.body.webswarm?.votes.map((v) => v.server_stages) ?? [];
    expect(perToken).toHaveLength(TOKENS);
    expect(perToken[0]).toEqual([]);
    expect(perToken.at(-1)).toEqual([1]);
    expect(r.body.webswarm?.server_stages).toEqual([1]);
    expect(r.body.webswarm?.verified).toBe(false);
    // The labelled tokens are never called verified; the vote says who computed the stage.
    for (const v of r.body.webswarm?.votes ?? [])
      if (v.server_stages.length > 0) {
        expect(v.verified).toBe(false);
        expect(v.votes[1]).toMatchObject({ server: true, agreed: 1 });
      }
    // GET /api/status counts it: answered, and some tokens computed in part by the server.
    const status = parseServiceStatus(await (await fetch(`${url}/api/status`)).json());
    if (!status.ok) throw new Error(status.reason);
    expect(status.value.fallback).toEqual({ mode: 'stage', maxSessions: 4, sessions: 0 });
    expect(status.value.windows[0]?.answered).toBe(1);
    expect(status.value.windows[0]?.computedByServer).toBeGreaterThan(0);
    expect(status.value.windows[0]?.computedByServer).toBeLessThan(1);
  });

  it('with FALLBACK=off the same loss fails with the named error', async () => {
    const { url } = await start(3, 3, { fallback: 'off', joinTimeoutMs: 3_000, stepTimeoutMs: 3_000 });
    for (const v of await fullSwarm(url)) v.leaveAfter(2);
    const r = await complete(url);
    expect(r.status).toBe(503);
    expect(r.body.error?.code).toMatch(/^ERR_(NO_QUORUM|STEP_TIMEOUT)$/);
    expect(r.retryAfter).not.toBeNull();
  });

  it('a stage short at the start (2 of r = 2 ready elsewhere, 1 here): the server computes it for every token at once, never waiting', async () => {
    const { url, expected } = await start(2, 2, { fallback: 'stage', routeWaitMs: 30_000 });
    const vs = Array.from({ length: 3 }, (_, i) => volunteer(url, `127.0.0.${60 + i}`));
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(3);
    const short = [0, 1].find((s) => vs.filter((v) => v.stage === s).length < 2) as number;
    const r = await complete(url);
    expect(r.status).toBe(200);
    // Far under the 30 s the request would otherwise wait for a route.
    expect(r.ms).toBeLessThan(15_000);
    expect(r.body.webswarm?.tokens).toEqual(expected);
    expect(r.body.webswarm?.votes.map((v) => v.server_stages)).toEqual(expected.map(() => [short]));
    // The lone volunteer of the short stage computed nothing for it.
    expect(vs.find((v) => v.stage === short)?.steps).toBe(0);
  });

  it('a scored prompt (echo, max_tokens 0) the server computed a stage of: not verified, and server_stages names the stage, streamed or not', async () => {
    const { url } = await start(2, 2, { fallback: 'stage' });
    const vs = Array.from({ length: 3 }, (_, i) => volunteer(url, `127.0.0.${65 + i}`));
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(3);
    const short = [0, 1].find((s) => vs.filter((v) => v.stage === s).length < 2) as number;
    const body = { model: 'tiny-untied', prompt: PROMPT, max_tokens: 0, echo: true, logprobs: 1 };
    const post = (extra: Record<string, unknown>) =>
      fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ ...body, ...extra }),
      });
    const whole = (await (await post({})).json()) as { webswarm: { verified: boolean; server_stages: number[] } };
    expect(whole.webswarm).toMatchObject({ verified: false, server_stages: [short] });
    // Streamed, nothing generated: the last chunk's summary covers the prompt's positions too.
    const chunks = (await (await post({ stream: true })).text())
      .split('\n\n')
      .map((l) => l.replace(/^data: /, '').trim())
      .filter((l) => l !== '' && l !== '[DONE]')
      .map((l) => JSON.parse(l) as { webswarm?: { verified?: boolean; server_stages?: number[] } });
    expect(chunks.at(-1)?.webswarm).toMatchObject({ verified: false, server_stages: [short] });
  });

  it('an answer ended at once by the end-of-text token the server computed a stage of: no token, and not verified (its end was not voted by volunteers)', async () => {
    const { url } = await start(2, 2, { fallback: 'stage' });
    const vs = Array.from({ length: 3 }, (_, i) => volunteer(url, `127.0.0.${70 + i}`));
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(3);
    const short = [0, 1].find((s) => vs.filter((v) => v.stage === s).length < 2) as number;
    // tiny-untied's end-of-text token is 0: biased to certainty, it is the first draw.
    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny-untied', prompt: PROMPT, max_tokens: 4, logit_bias: { '0': 100 } }),
    });
    const body = (await res.json()) as { choices: { text: string; finish_reason: string }[]; webswarm: CompletionBody['webswarm'] };
    expect(res.status).toBe(200);
    expect(body.choices[0]).toMatchObject({ text: '', finish_reason: 'stop' });
    expect(body.webswarm?.tokens).toEqual([]);
    // No token to say so: before, an empty answer was "verified" whoever drew its end.
    expect(body.webswarm?.verified).toBe(false);
    // The short stage's lone volunteer computed nothing: the server drew that end.
    expect(vs.find((v) => v.stage === short)?.steps).toBe(0);
  });

  it('FALLBACK=whole: a request that finds a stage short is the server’s at every stage', async () => {
    const { url, expected } = await start(2, 2, { fallback: 'whole' });
    const vs = Array.from({ length: 3 }, (_, i) => volunteer(url, `127.0.0.${70 + i}`));
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(3);
    const r = await complete(url);
    expect(r.status).toBe(200);
    expect(r.body.webswarm?.tokens).toEqual(expected);
    expect(r.body.webswarm?.server_stages).toEqual([0, 1]);
    expect(vs.map((v) => v.steps)).toEqual([0, 0, 0]);
  });

  it('under load the fallback computes its sessions one at a time, the others waiting in turn: a client’s own in turns past the route wait, another’s refused after it with 503 ERR_BUSY and Retry-After', async () => {
    const keys = ['sk-1', 'sk-2', 'sk-3', 'sk-4'];
    // Each key a client (the swarm helper turns per-client limits off by default).
    const { url } = await start(2, 2, { fallback: 'stage', fallbackMaxSessions: 1, routeWaitMs: 300, apiKeys: keys, apiMaxConcurrent: 4 });
    for (let i = 0; i < 3; i++) volunteer(url, `127.0.0.${80 + i}`);
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(3);
    // One client's three: one seat, so in turns, each waiting past its route wait while its own computes.
    const own = await Promise.all(Array.from({ length: 3 }, () => complete(url, 24, 'sk-1')));
    expect(
      own.map((r) => r.status),
      JSON.stringify(own.map((r) => r.body.error?.message)),
    ).toEqual([200, 200, 200]);
    // Four clients' long ones at once: one is computed; the others wait their turn until their route wait ends
    // (before, refused at once, so that clients holding seats kept them among themselves: a red-team pass).
    const results = await Promise.all(keys.map((k) => complete(url, 200, k)));
    const busy = results.filter((r) => r.status === 503);
    expect(results.filter((r) => r.status === 200).length).toBeGreaterThanOrEqual(1);
    expect(busy.length).toBeGreaterThanOrEqual(1);
    for (const r of busy) {
      expect(r.body.error?.code).toBe('ERR_BUSY');
      expect(r.body.error?.message).toMatch(
        /fallback computes 1 sessions already \(at most 1, 1 for one client; this client's requests hold 0; \d waiting for a seat\) until its route wait ended; waited 300 ms/,
      );
      expect(r.retryAfter).not.toBeNull();
      expect(r.ms).toBeLessThan(5_000);
    }
  });
});

describe('hostile volunteers against the fallback', () => {
  it('a stage-0 sender that equivocates while another leaves: the receivers can take no majority, the server takes stage 0, the reference tokens', async () => {
    const { url, expected } = await start(2, 3, { fallback: 'stage', joinTimeoutMs: 3_000, stepTimeoutMs: 3_000 });
    const liars = new Set<number>();
    // Honest reports, and from step 3 on other frames than it reports (when it is the liar).
    const vs = Array.from({ length: 6 }, (_, i) =>
      volunteer(url, `127.0.0.${100 + i}`, {
        fault: {
          delayMs: 0,
          output: (_step: number, d: Float32Array) => d,
          frames: (step: number, d: Float32Array) => (liars.has(i) && step >= 3 ? new Float32Array(d.length).fill(3) : d),
        },
      }),
    );
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(6);
    const stage0 = vs.map((v, i) => [v, i] as const).filter(([v]) => v.stage === 0);
    expect(stage0).toHaveLength(3);
    liars.add((stage0[0] as (typeof stage0)[number])[1]);
    (stage0[1] as (typeof stage0)[number])[0].leaveAfter(3);
    const r = await complete(url);
    expect(r.status).toBe(200);
    expect(r.body.webswarm?.tokens).toEqual(expected);
    expect(r.body.webswarm?.server_stages).toEqual([0]);
    // Stage 1's volunteers stayed in the route: the server took the senders' stage, not theirs.
    expect(r.body.webswarm?.votes.at(-1)?.server_stages).toEqual([0]);
  });
});

describe('hostile claims against the fallback', () => {
  it('a majority of a stage that computes nothing and says its inputs had no majority moves stages to the server, and changes no token', async () => {
    const { url, expected } = await start(2, 3, { fallback: 'stage', stepTimeoutMs: 2_000 });
    const liars = new Set<number>();
    const vs: NodeVolunteer[] = [];
    for (let i = 0; i < 6; i++) {
      // Silent when a liar: no frames, digests or logits.
      const v = volunteer(url, `127.0.0.${110 + i}`, { fault: { delayMs: 0, output: (_s, d) => (liars.has(i) ? null : d) } });
      // On each frame from stage 0, a liar claims that step's inputs had no majority.
      const frames = new FrameAssembler(DEFAULT_FRAME_LIMITS);
      v.socket.on('signal', ({ data }) => {
        const f = (data as { f?: unknown }).f;
        if (!liars.has(i) || typeof f !== 'string') return;
        const r = frames.push(new Uint8Array(Buffer.from(f, 'base64')));
        if (r.kind === 'complete')
          v.socket.emit('step:failed', { sessionId: r.frame.sessionId, step: r.frame.step, code: 'ERR_NO_QUORUM', message: 'says who' });
      });
      vs.push(v);
    }
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(6);
    for (const [i, v] of vs.entries()) if (v.stage === 1 && liars.size < 2) liars.add(i);
    const r = await complete(url);
    expect(r.status).toBe(200);
    expect(r.body.webswarm?.tokens).toEqual(expected);
    // Their claim handed stage 0 to the server; their silence, stage 1.
    expect(r.body.webswarm?.server_stages).toEqual([0, 1]);
  });
});

describe('hostile frames for the server replicas', () => {
  it('a volunteer that no session links is refused; a frame for anyone but a server replica is a bad message', async () => {
    const { url } = await start(2, 2, { fallback: 'stage' });
    const hostile = volunteer(url, '127.0.0.90', { readyAtOnce: true, challenges: 'never' });
    await expect.poll(() => hostile.stage, { timeout: WAIT_MS }).not.toBeNull();
    const emit = hostile.socket.emit.bind(hostile.socket) as (event: string, m: unknown) => void;
    const bytes = new Uint8Array(64).fill(7);
    emit('frame', { to: 'server:0', data: packFrameMessages([bytes]) });
    emit('frame', { to: 'server:1', data: packFrameMessages([bytes, bytes]) });
    emit('frame', { to: 'someone', data: packFrameMessages([bytes]) });
    emit('frame', { to: 'server:0', data: [bytes] });
    emit('frame', { to: 'server:0', data: packFrameMessages([bytes]).slice(0, 30) });
    emit('frame', { to: 'server:0', data: packFrameMessages([new Uint8Array(300 * 1024)]) });
    // The largest batches a volunteer sends reach the parser (and are refused here only for want of a session).
    emit('frame', { to: 'server:0', data: packFrameMessages(Array.from({ length: 256 }, () => bytes)) });
    emit('frame', { to: 'server:0', data: packFrameMessages(Array.from({ length: 4 }, () => new Uint8Array(190 * 1024))) });
    await expect.poll(() => hostile.errors.length, { timeout: 5_000 }).toBe(8);
    expect(hostile.errors.slice(6).map((e) => e.code)).toEqual(['ERR_NOT_LINKED', 'ERR_NOT_LINKED']);
    const said = hostile.errors.map((e) => `${e.code}: ${e.message}`);
    expect(said.slice(0, 2).every((e) => e.startsWith('ERR_NOT_LINKED: frame: server:'))).toBe(true);
    expect(said.slice(2, 6).every((e) => e.startsWith('ERR_BAD_MESSAGE: frame: '))).toBe(true);
    // The server still serves.
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
  });
});
