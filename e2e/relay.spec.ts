// A mesh relayed through TURN: Debian's coturn on loopback with the shipped
// deploy/turnserver.conf (relays to 127.0.0.1 allowed: every relay address is
// there) and a generated secret, a server with ICE_TRANSPORT_POLICY=relay handing volunteers coturn
// REST-API credentials, Chromium volunteers whose every data channel must go
// through the relay (their selected candidate pairs, from getStats), and the
// reference runner's tokens as the oracle. Then a wrong secret: the request
// fails, and the volunteer page and the server's log name TURN and ICE.
import { randomBytes } from 'node:crypto';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IceOptions } from '../signal-server/ice-config.js';
import { startTurnServer, type TurnServer } from '../testing/turn-server.js';
import { type E2eSwarm, startE2eSwarm } from './harness.js';

const PROMPT = 'It is a truth universally acknowledged, that a single man';
const TOKENS = 12;
/** Longer than the volunteer's connect timeout (20 s): a wrong secret must fail well within it. */
const FAILURE_TIMEOUT_MS = 25_000;
const SECRET = randomBytes(16).toString('hex');

let turn: TurnServer;
beforeAll(async () => {
  turn = await startTurnServer(SECRET);
});
afterAll(() => turn?.close());

const iceWith = (secret: string): IceOptions => ({
  iceServers: [{ urls: [turn.url] }],
  turnSecret: secret,
  turnTtlS: 3600,
  transportPolicy: 'relay',
});

/** Each open data channel of a volunteer tab with its selected candidate pair. */
async function channels(page: Page) {
  return page.evaluate(async () => (await window.webswarmIceStats?.()) ?? []);
}

describe('a mesh relayed through coturn (ICE_TRANSPORT_POLICY=relay)', () => {
  const STAGES = 3;
  let e: E2eSwarm;
  const log: string[] = [];
  beforeAll(async () => {
    e = await startE2eSwarm({
      volunteers: STAGES,
      stages: STAGES,
      redundancy: 1,
      ice: iceWith(SECRET),
      logSink: { write: (l: string) => log.push(l) },
    });
  });
  afterAll(() => e?.close());

  it('gives the reference runner’s tokens with every data channel through the TURN relay', async () => {
    const expected = await e.expected(PROMPT, TOKENS);
    const t0 = performance.now();
    const { status, json } = await e.complete({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0 });
    process.stderr.write(`relayed: ${TOKENS} tokens in ${(performance.now() - t0).toFixed(0)} ms, channels opened included\n`);
    expect(status, JSON.stringify(json.error)).toBe(200);
    expect(json.webswarm.tokens).toEqual(expected);
    // Stage k's volunteer has a channel to stage k+1's, and the last stage's to stage 0's (the mesh loop):
    // each seen from both ends.
    const seen = (await Promise.all(e.swarm.pages.map(channels))).flat();
    process.stderr.write(`selected candidate pairs: ${JSON.stringify(seen)}\n`);
    expect(seen).toHaveLength(2 * STAGES);
    for (const c of seen) expect(c.pair, `channel to ${c.peer}`).toMatchObject({ local: 'relay', remote: 'relay' });
    // The server never wrote the secret to its log (signal-server/ice-feed.test.ts checks the passwords too).
    expect(log.length).toBeGreaterThan(0);
    expect(log.join('')).not.toContain(SECRET);
  });
});

describe('a wrong TURN secret', () => {
  let e: E2eSwarm;
  const log: string[] = [];
  beforeAll(async () => {
    // The volunteers still load their stages and answer their challenges (over Socket.IO): only data channels need TURN.
    e = await startE2eSwarm({
      volunteers: 2,
      stages: 2,
      redundancy: 1,
      ice: iceWith(`not-${SECRET}`),
      logSink: { write: (l: string) => log.push(l) },
    });
  });
  afterAll(() => e?.close());

  it('fails the request within the connect timeout, naming TURN and ICE on the volunteer page and in the server log', async () => {
    const t0 = performance.now();
    const { status, json } = await e.complete({ prompt: PROMPT, max_tokens: 4, temperature: 0 });
    const tookMs = performance.now() - t0;
    process.stderr.write(`wrong secret: HTTP ${status} ${JSON.stringify(json.error)} after ${tookMs.toFixed(0)} ms\n`);
    expect(status).not.toBe(200);
    expect(json.error?.code).toMatch(/^ERR_/); // a named error, not a hang
    expect(tookMs).toBeLessThan(FAILURE_TIMEOUT_MS);
    const errors = await Promise.all(e.swarm.pages.map((p) => p.evaluate(() => window.webswarmVolunteer?.lastError ?? null)));
    process.stderr.write(`volunteer errors: ${JSON.stringify(errors)}\n`);
    for (const err of errors) expect(err).toMatch(/ICE \(relay only\).*TURN .* answered 401 .*TURN credentials refused/);
    const failed = log.filter((l) => /failed step 0 of session \d+: ERR_NOT_LINKED .*TURN credentials refused/.test(l));
    expect(failed.length, log.join('').slice(-3000)).toBeGreaterThan(0);
  });
});
