// A replica that leaves a session before joining it is a no-show, over the real protocol: a real server on port 0,
// Node volunteers that compute with onnxruntime and speak Socket.IO (distinct clients on distinct 127.0.0.x
// addresses, each with its client key), requests over the HTTP API, the reference runner's tokens the oracle.
// Before, only a connection that stayed was judged for a session it did not join: a hostile client let every
// session it was given wait for it, closed its connection before the join grace ran out, and came back with its
// key, its record clean of misses, as often as it liked.
import { describe, expect, it } from 'vitest';
import type { FaultBehaviour } from '../shared/swarm/faults.js';
import { MAX_NO_SHOWS } from './coordinator/session-runner.js';
import { httpSwarm, TOKENS, WAIT_MS } from './testing/http-swarm.js';
import type { NodeVolunteer } from './testing/node-volunteer.js';
import { serverLog } from './testing/server-log.js';

const { start, volunteer, readyCount, complete } = httpSwarm('leave-unjoined');

/** How long the hostile client lets a session wait for it before it closes its connection (under JOIN_GRACE_MS). */
const STAY_MS = 1_200;

describe('a replica that leaves a session it was given before joining it', () => {
  it(`is a no-show: a client that does so and comes back with its key is banned at its ${MAX_NO_SHOWS}rd`, async () => {
    const { lines, logger } = serverLog();
    const { url, expected } = await start(1, 3, { logger });
    for (const i of [60, 61, 62]) volunteer(url, `127.0.0.${i}`);
    const KEY = 'leaves-unjoined-0001';
    const messages = () => lines.filter((l) => l.length > 0).map((l) => (JSON.parse(l) as { msg?: string }).msg ?? '');
    const connections: NodeVolunteer[] = [];
    /** A connection of the key that takes each session it is given, never joins it, and closes STAY_MS later. */
    const connect = () => {
      const v: NodeVolunteer = volunteer(url, '127.0.0.63', {
        clientKey: KEY,
        joins: () => {
          setTimeout(() => void v.close(), STAY_MS);
          return false;
        },
      });
      connections.push(v);
      return v;
    };
    const strikes = () => messages().filter((m) => connections.some((v) => m.startsWith(`volunteer ${v.id} did not join`)));
    let left = 0;
    for (let request = 0; request < 24 && left < MAX_NO_SHOWS; request++) {
      const now = connections.at(-1);
      if (now === undefined || now.sessionsOpened > 0) {
        // Gone (or going) after its session: back with its key, and ready again.
        if (now !== undefined) {
          left += 1;
          await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(3);
          if (left === MAX_NO_SHOWS) break;
        }
        connect();
        await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(4);
      }
      // Every answer is the reference runner's: a spare took its place each time.
      const r = await complete(url, 2);
      expect(r.body.webswarm?.tokens).toEqual(expected.slice(0, 2));
    }
    expect(left).toBe(MAX_NO_SHOWS);
    // Each departure was a strike, counted into the record its key left with; the third evicted it and banned
    // the key (before: 0 strikes, and a fourth connection of the key took sessions again).
    expect(strikes().length).toBe(MAX_NO_SHOWS);
    expect(messages().some((m) => m.includes(`(${MAX_NO_SHOWS} of ${MAX_NO_SHOWS} no-shows`))).toBe(true);
    const again = connect();
    await expect.poll(() => again.errors.map((e) => e.code), { timeout: WAIT_MS }).toContain('ERR_BANNED');
  });

  it('is one no-show a departure, however many sessions waited for it: an honest tab closed in a burst is not evicted', async () => {
    const { lines, logger } = serverLog();
    const { url, expected } = await start(1, 3, { logger });
    const messages = () => lines.filter((l) => l.length > 0).map((l) => (JSON.parse(l) as { msg?: string }).msg ?? '');
    for (const i of [80, 81]) volunteer(url, `127.0.0.${i}`);
    const KEY = 'closed-in-a-burst-0003';
    // The only third replica: in every route. Its user closes it as the third of a burst of requests opens on it.
    const tab: NodeVolunteer = volunteer(url, '127.0.0.82', {
      clientKey: KEY,
      joins: (_m, n) => {
        if (n === 2) void tab.close();
        return false;
      },
    });
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(3);
    const results = await Promise.all([0, 1, 2].map(() => complete(url, TOKENS)));
    // The two that stay are a majority of each route: the reference runner's tokens.
    for (const r of results) expect(r.body.webswarm?.tokens).toEqual(expected);
    expect(tab.sessionsOpened).toBe(3);
    const struck = messages().filter((m) => m.startsWith(`volunteer ${tab.id} did not join`));
    // One strike (before this rule, one a session waiting: three, and the key evicted and banned).
    expect(struck).toHaveLength(1);
    const back = volunteer(url, '127.0.0.82', { clientKey: KEY });
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(3);
    expect(back.errors).toEqual([]);
    expect(messages().find((m) => m.startsWith(`volunteer ${back.id} resumes its record`))).toMatch(
      /, 1 of its last 20 sessions missed\)$/,
    );
  });

  it('is a no-show as a spare brought into a running session: the strike goes with its key', async () => {
    const { lines, logger } = serverLog();
    const { url, expected } = await start(1, 3, { logger });
    const messages = () => lines.filter((l) => l.length > 0).map((l) => (JSON.parse(l) as { msg?: string }).msg ?? '');
    // Honest, and slow enough a step that a spare comes in while the session runs.
    const SLOW: FaultBehaviour = { delayMs: 1_000, output: (_step, d) => d };
    const honest = [70, 71, 72].map((i) => volunteer(url, `127.0.0.${i}`, { fault: SLOW }));
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(3);
    const request = complete(url, TOKENS);
    await expect.poll(() => honest.every((v) => v.sessionsOpened > 0), { timeout: WAIT_MS }).toBe(true);
    const KEY = 'spare-leaves-0002';
    const spare: NodeVolunteer = volunteer(url, '127.0.0.73', {
      clientKey: KEY,
      joins: () => {
        setTimeout(() => void spare.close(), STAY_MS);
        return false;
      },
    });
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(4);
    // An honest replica leaves: the spare takes its place, lets the session wait for it, and leaves unjoined.
    await (honest[2] as NodeVolunteer).close();
    await expect.poll(() => spare.sessionsOpened, { timeout: WAIT_MS }).toBe(1);
    await expect
      .poll(() => messages().some((m) => m.startsWith(`volunteer ${spare.id} did not join session`)), { timeout: WAIT_MS })
      .toBe(true);
    // The two that stay are a majority: the reference runner's tokens.
    expect((await request).body.webswarm?.tokens).toEqual(expected);
    // Back with its key: its record holds the miss (before: none, the departure not counted; its replay's reports
    // agree, and count).
    const back = volunteer(url, '127.0.0.73', { clientKey: KEY });
    await expect
      .poll(() => messages().find((m) => m.startsWith(`volunteer ${back.id} resumes its record`)), { timeout: WAIT_MS })
      .toMatch(/\(\d+ agreed, 0 disagreed, 1 of its last 20 sessions missed\)$/);
  });

  it('is a no-show when it is evicted unbanned (a spot check left unanswered) as a session waits for it', async () => {
    const { lines, logger } = serverLog();
    const CHALLENGE_MS = 3_000;
    const { url, expected } = await start(1, 3, { logger, spotCheckRate: 1, challengeTimeoutMs: CHALLENGE_MS });
    const messages = () => lines.filter((l) => l.length > 0).map((l) => (JSON.parse(l) as { msg?: string }).msg ?? '');
    for (const i of [100, 101]) volunteer(url, `127.0.0.${i}`);
    const KEY = 'challenge-exit-0004';
    // Joins its first session only; once proven, it answers no challenge (a red-team pass's way out).
    const h: NodeVolunteer = volunteer(url, '127.0.0.102', { clientKey: KEY, joins: (_m, n) => n === 0 });
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(3);
    h.socket.removeAllListeners('volunteer:challenge');
    expect((await complete(url, 2)).body.webswarm?.tokens).toEqual(expected.slice(0, 2));
    // The spot check after that session is pending: a session opened 1.2 s before its timeout waits for it.
    await new Promise((r) => setTimeout(r, CHALLENGE_MS - 1_200));
    expect((await complete(url, 2)).body.webswarm?.tokens).toEqual(expected.slice(0, 2));
    expect(h.sessionsOpened).toBe(2);
    expect(messages().some((m) => m.startsWith(`volunteer ${h.id} evicted (ERR_CHALLENGE_FAILED)`))).toBe(true);
    // Before: no strike, and back with its key it resumed 0 missed.
    expect(messages().filter((m) => m.startsWith(`volunteer ${h.id} did not join`))).toHaveLength(1);
    const back = volunteer(url, '127.0.0.102', { clientKey: KEY });
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(3);
    expect(messages().find((m) => m.startsWith(`volunteer ${back.id} resumes its record`))).toMatch(
      /, 1 of its last 20 sessions missed\)$/,
    );
  }, 60_000);
});
