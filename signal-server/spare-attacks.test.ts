// Spares brought into a running session (a replica left, a stage retried) are
// held to join it as the route's first replicas are: one that refuses it, or
// never joins it, is a no-show (a strike: three among its last 20 sessions
// evict it). Before, only the first replicas were, and a spare could be drawn
// for repair after repair and take part in none without a mark against it.
// A place left with no spare ready is taken by a spare that becomes ready
// later. A real server on port 0, real-protocol Node volunteers; the
// attackers compute honestly in the sessions they are opened on from the
// start, and answer only a session:open that brings them into a running one
// their way. (Members that compute nothing: silent-attacks.test.ts.)
import { describe, expect, it } from 'vitest';
import type { SessionOpen } from '../shared/protocol/messages.js';
import { httpSwarm, TOKENS, WAIT_MS } from './testing/http-swarm.js';
import type { NodeVolunteer } from './testing/node-volunteer.js';
import { serverLog } from './testing/server-log.js';

const swarm = httpSwarm('spare-attacks');
/** Long enough a generation (slow honest replicas: 200 ms a step) for a replica to leave in the middle of it. */
const LONG = 24;
const STEP_DELAY_MS = 200;
/** Far below the generation's ~5 s: a newcomer that has not joined by then is judged before it ends. */
const JOIN_TIMEOUT_MS = 1_000;

/** `v` answers a session:open that brings it into a running session (replayTo > 0) with `answer`; the others as before. */
function midSessionOpens(v: NodeVolunteer, answer: (m: SessionOpen) => void): void {
  const before = v.socket.listeners('session:open');
  v.socket.off('session:open');
  v.socket.on('session:open', (m) => {
    if (m.replayTo > 0) answer(m);
    else for (const take of before) take(m);
  });
}

const ATTACKS: [string, (v: NodeVolunteer) => (m: SessionOpen) => void, RegExp, string][] = [
  ['never answers it', () => () => {}, / did not join session \d+ \(1 of 3 no-shows/, 'absent'],
  [
    'refuses it as full, holding no session',
    (v) => (m) =>
      v.socket.emit('step:failed', {
        sessionId: m.sessionId,
        step: m.replayTo,
        code: 'ERR_REPLICA_FULL',
        message: 'this replica keeps 16 sessions open already',
      }),
    / did not join session \d+ \(refused it as full, holding 0 sessions\) \(1 of 3 no-shows/,
    'full',
  ],
];

describe('a spare brought into a running session', () => {
  it.each(ATTACKS)(
    'that %s is a no-show; the generation goes on with the reference tokens',
    async (_what, attack, said, why) => {
      const { lines, logger } = serverLog();
      // random 0: the route is the first three ready volunteers, and the spare the one after them.
      const { url, expected } = await swarm.start(1, 3, {
        random: () => 0,
        joinTimeoutMs: JOIN_TIMEOUT_MS,
        logger,
      });
      const honest = await swarm.joinAll(url, 3, 2, () => ({ fault: { delayMs: STEP_DELAY_MS, output: (_s, d) => d } }));
      const spare = swarm.volunteer(url, '127.0.0.9');
      const broughtIn: number[] = [];
      const answer = attack(spare);
      midSessionOpens(spare, (m) => {
        broughtIn.push(m.sessionId);
        answer(m);
      });
      await expect.poll(() => swarm.readyCount(url), { timeout: WAIT_MS }).toBe(4);

      const request = swarm.complete(url, LONG);
      const leaving = honest[2] as NodeVolunteer;
      await expect.poll(() => leaving.steps, { timeout: WAIT_MS }).toBeGreaterThan(2);
      await leaving.close();
      const r = await request;
      // The spare was brought into the running session in the leaver's place (and answered the attacker's way).
      expect(broughtIn).toHaveLength(1);
      expect(r.status).toBe(200);
      // The two honest replicas that stay are a majority of three: the generation is the reference runner's.
      expect(r.body.webswarm?.tokens?.slice(0, TOKENS)).toEqual(expected);
      expect(r.body.webswarm?.tokens).toHaveLength(LONG);
      const strikes = lines.filter((l) => l.includes(`volunteer ${spare.id} did not join`));
      expect(strikes, lines.filter((l) => l.includes(String(spare.id))).join('\n')).toHaveLength(1);
      expect(strikes[0]).toMatch(said);
      // Operators see it too: one strike, of its kind, and no other.
      const metrics = await (await fetch(`${url}/metrics`)).text();
      expect(metrics.split('\n').filter((l) => l.startsWith('webswarm_no_shows_total{'))).toEqual([
        `webswarm_no_shows_total{why="${why}"} 1`,
      ]);
    },
    60_000,
  );
});

describe('a spare the server then takes its stage from', () => {
  it('is not a no-show when it came less than NEWCOMER_GRACE_MS before (a slow page, still linking)', async () => {
    const { lines, logger } = serverLog();
    const { url, expected } = await swarm.start(2, 3, {
      random: () => 0,
      fallback: 'stage',
      joinTimeoutMs: JOIN_TIMEOUT_MS,
      logger,
    });
    // Slow honest replicas: the session lasts seconds after the server takes a stage over.
    const honest = await swarm.joinAll(url, 6, 2, () => ({ fault: { delayMs: STEP_DELAY_MS, output: (_s, d) => d } }));
    const spare = swarm.volunteer(url, '127.0.0.9');
    await expect.poll(() => spare.stage, { timeout: WAIT_MS }).not.toBeNull();
    const broughtIn: number[] = [];
    // An honest page that links its data channels in 600 ms (within the 1 s join timeout) before it joins.
    const open = spare.socket.listeners('session:open');
    midSessionOpens(spare, (m) => {
      broughtIn.push(m.sessionId);
      setTimeout(() => {
        for (const take of open) take(m);
      }, 600);
    });
    await expect.poll(() => swarm.readyCount(url), { timeout: WAIT_MS }).toBe(7);
    const mates = honest.filter((v) => v.stage === spare.stage);
    expect(mates).toHaveLength(3);

    const request = swarm.complete(url, LONG);
    const [first, second, third] = mates as [NodeVolunteer, NodeVolunteer, NodeVolunteer];
    await expect.poll(() => first.steps, { timeout: WAIT_MS }).toBeGreaterThan(2);
    // One leaves: the spare takes its place. The two others leave at once after it: no spare, the server takes the stage.
    await first.close();
    await expect.poll(() => broughtIn.length, { timeout: WAIT_MS }).toBe(1);
    await second.close();
    await third.close();
    const r = await request;
    expect(r.status).toBe(200);
    expect(r.body.webswarm?.tokens?.slice(0, TOKENS)).toEqual(expected);
    expect(
      lines.some((l) => l.includes('the server computes stage')),
      lines.join('\n'),
    ).toBe(true);
    // Taken out of the route a few ms after it came, before it could join: not judged.
    const strikes = lines.filter((l) => l.includes(`volunteer ${spare.id} did not join`));
    expect(strikes, lines.filter((l) => l.includes(String(spare.id))).join('\n')).toEqual([]);
  }, 60_000);
});

describe('a place left in a running session when no spare was ready', () => {
  it('is taken by a volunteer that becomes ready later in the generation, which replays it and takes part', async () => {
    const { lines, logger } = serverLog();
    const { url, expected } = await swarm.start(1, 3, { random: () => 0, logger });
    const honest = await swarm.joinAll(url, 3, 2, () => ({ fault: { delayMs: STEP_DELAY_MS, output: (_s, d) => d } }));
    await expect.poll(() => swarm.readyCount(url), { timeout: WAIT_MS }).toBe(3);
    const request = swarm.complete(url, 40);
    const leaving = honest[2] as NodeVolunteer;
    await expect.poll(() => leaving.steps, { timeout: WAIT_MS }).toBeGreaterThan(2);
    await leaving.close();
    await expect
      .poll(() => lines.some((l) => l.includes(`replica ${leaving.id} of stage 0 left; no spare, going on with 2 replicas`)), {
        timeout: WAIT_MS,
      })
      .toBe(true);
    // A volunteer arrives while the generation goes on: once ready, it is brought into the running session.
    const late = swarm.volunteer(url, '127.0.0.9');
    const open = late.socket.listeners('session:open');
    const broughtIn: number[] = [];
    midSessionOpens(late, (m) => {
      broughtIn.push(m.sessionId);
      for (const take of open) take(m);
    });
    const r = await request;
    expect(r.status).toBe(200);
    expect(r.body.webswarm?.tokens?.slice(0, TOKENS)).toEqual(expected);
    expect(r.body.webswarm?.tokens).toHaveLength(40);
    expect(broughtIn).toHaveLength(1);
    expect(lines.some((l) => l.includes(`replica ${leaving.id} of stage 0 left earlier; ${late.id} takes its place`))).toBe(true);
    expect(late.steps).toBeGreaterThan(0);
    // It came in time and took part: no strike against anyone.
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics.split('\n').filter((l) => l.startsWith('webswarm_no_shows_total{'))).toEqual([]);
  }, 60_000);
});
