// Spares brought into a running session (a replica left, a stage retried) are
// held to join it as the route's first replicas are: one that refuses it, or
// never joins it, is a no-show (a strike: three among its last 20 sessions
// evict it). Before, only the first replicas were, and a spare could be drawn
// for repair after repair and take part in none without a mark against it.
// A replica that joins its sessions and then computes nothing is a no-show
// too, taken out of each session for a spare once it stayed unheard for its
// stage's limit (SilentMembers). A real server on port 0, real-protocol Node
// volunteers; the spare attackers compute honestly in the sessions they are
// opened on from the start, and answer only a session:open that brings them
// into a running one their way.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { SessionOpen } from '../shared/protocol/messages.js';
import { createLogger, type Logger } from './log.js';
import { httpSwarm, TOKENS, WAIT_MS } from './testing/http-swarm.js';
import type { NodeVolunteer } from './testing/node-volunteer.js';

const swarm = httpSwarm('spare-attacks');
/** Long enough a generation (slow honest replicas: 200 ms a step) for a replica to leave in the middle of it. */
const LONG = 24;
const STEP_DELAY_MS = 200;
/** Far below the generation's ~5 s: a newcomer that has not joined by then is judged before it ends. */
const JOIN_TIMEOUT_MS = 1_000;

/** The server's log lines, as the tests read them, and the logger that writes them. */
function serverLog(): { lines: string[]; logger: Logger } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n'));
      done();
    },
  });
  return { lines, logger: createLogger('info', sink) };
}

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

describe('a member that joins its sessions and then computes nothing', () => {
  /** Tokens a generation: at STEP_DELAY_MS a step, well past SILENT_FLOOR_MS. */
  const LONGER = 40;

  it('is a no-show in each, taken out for a spare (the answer is the reference), and three evict it', async () => {
    const { lines, logger } = serverLog();
    const { url, expected } = await swarm.start(1, 3, { random: () => 0, logger });
    // Ready first, it is in every route (random 0: the first three ready volunteers). It joins each session it is
    // opened on, over the real protocol, and drops every step's input: it never computes, and never reports.
    const silent = swarm.volunteer(url, '127.0.0.9');
    silent.socket.off('step:input');
    await expect.poll(() => swarm.readyCount(url), { timeout: WAIT_MS }).toBe(1);
    // Slow honest replicas (200 ms a step): a generation lasts about 8 s, past the 5 s floor of the silence limit.
    const honest = await swarm.joinAll(url, 3, 2, () => ({ fault: { delayMs: STEP_DELAY_MS, output: (_s, d) => d } }));
    await expect.poll(() => swarm.readyCount(url), { timeout: WAIT_MS }).toBe(4);
    const spare = honest[2] as NodeVolunteer;
    for (let k = 1; k <= 3; k++) {
      const stepsBefore = spare.steps;
      const r = await swarm.complete(url, LONGER);
      expect(r.status).toBe(200);
      expect(r.body.webswarm?.tokens?.slice(0, TOKENS)).toEqual(expected);
      expect(r.body.webswarm?.tokens).toHaveLength(LONGER);
      const strikes = lines.filter((l) => l.includes(`volunteer ${silent.id} joined session`));
      expect(strikes, lines.filter((l) => l.includes(String(silent.id))).join('\n')).toHaveLength(k);
      expect(strikes[k - 1]).toMatch(new RegExp(`then sent no results while its stage decided steps \\(${k} of 3 no-shows`));
      // Taken out midway: the spare took its place and computed (its replay, then the steps after it).
      expect(lines.some((l) => new RegExp(`replica ${silent.id} of stage 0 sent no results; ${spare.id} takes its place`).test(l))).toBe(
        true,
      );
      expect(spare.steps).toBeGreaterThan(stepsBefore);
    }
    // Three no-shows among its last 20 sessions: evicted, told why.
    await expect.poll(() => silent.errors.map((e) => e.code), { timeout: WAIT_MS }).toContain('ERR_EVICTED');
    expect(silent.errors.find((e) => e.code === 'ERR_EVICTED')?.message).toMatch(/joined without sending results/);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics.split('\n').filter((l) => l.startsWith('webswarm_no_shows_total{'))).toEqual([
      'webswarm_no_shows_total{why="silent"} 3',
    ]);
  }, 120_000);

  it('is a no-show too when it answers each step with noise as its logits (outvoted, and no result: audited nowhere)', async () => {
    const { lines, logger } = serverLog();
    const { url, expected } = await swarm.start(1, 3, { random: () => 0, logger });
    // In every route (random 0). It drops each step's input and answers it with noise of the vocabulary's size
    // (tiny-untied: 2048 float32) as its logits: no digest, no compute.
    const noisy = swarm.volunteer(url, '127.0.0.9');
    noisy.socket.off('step:input');
    let inputs = 0;
    noisy.socket.on('step:input', (m: { sessionId: number; step: number }) => {
      inputs += 1;
      const noise = new Float32Array(2048).map((_, i) => (i * 7919) % 13);
      noisy.socket.emit('step:logits', { sessionId: m.sessionId, step: m.step, logits: noise.buffer, resets: 0 });
    });
    await expect.poll(() => swarm.readyCount(url), { timeout: WAIT_MS }).toBe(1);
    const honest = await swarm.joinAll(url, 3, 2, () => ({ fault: { delayMs: STEP_DELAY_MS, output: (_s, d) => d } }));
    await expect.poll(() => swarm.readyCount(url), { timeout: WAIT_MS }).toBe(4);
    const r = await swarm.complete(url, LONGER);
    expect(r.status).toBe(200);
    expect(r.body.webswarm?.tokens?.slice(0, TOKENS)).toEqual(expected);
    expect(r.body.webswarm?.tokens).toHaveLength(LONGER);
    // It was in the route and sent its noise (none of it refused at the boundary: it is well formed).
    expect(inputs).toBeGreaterThan(0);
    expect(noisy.errors).toEqual([]);
    // Struck as the silent member is, and taken out for the spare.
    const strikes = lines.filter((l) => l.includes(`volunteer ${noisy.id} joined session`));
    expect(strikes, lines.filter((l) => l.includes(String(noisy.id))).join('\n')).toHaveLength(1);
    expect(lines.some((l) => l.includes(`replica ${noisy.id} of stage 0 sent no results; ${honest[2]?.id} takes its place`))).toBe(true);
  }, 60_000);

  it('taken out with no spare, is not counted as staying when an honest replica leaves after it (the server takes the stage at once)', async () => {
    // A silent member taken out with no spare ready is still connected: SessionRunner.failOver must not count it
    // among the replicas that stay, or, when an honest replica of its stage leaves later, one live replica would
    // be counted as two: no fallback, and the stage would wait out a step timeout.
    const STEP_TIMEOUT_MS = 20_000;
    const { lines, logger } = serverLog();
    const { url, expected } = await swarm.start(1, 3, { random: () => 0, logger, fallback: 'stage', stepTimeoutMs: STEP_TIMEOUT_MS });
    const silent = swarm.volunteer(url, '127.0.0.9');
    silent.socket.off('step:input');
    await expect.poll(() => swarm.readyCount(url), { timeout: WAIT_MS }).toBe(1);
    // Two honest replicas, no spare: the route is silent + both.
    const honest = await swarm.joinAll(url, 2, 2, () => ({ fault: { delayMs: STEP_DELAY_MS, output: (_s, d) => d } }));
    await expect.poll(() => swarm.readyCount(url), { timeout: WAIT_MS }).toBe(3);
    // The silent member is out after ~5 s (step ~25); an honest one leaves at step 35 (~7 s).
    (honest[1] as NodeVolunteer).leaveAfter(35);
    const r = await swarm.complete(url, LONGER);
    expect(r.status).toBe(200);
    expect(r.body.webswarm?.tokens?.slice(0, TOKENS)).toEqual(expected);
    const mine = lines.filter((l) => l.includes(String(silent.id)) || l.includes(String(honest[1]?.id)) || l.includes('fallback'));
    expect(
      lines.some((l) => l.includes(`${silent.id} of stage 0 sent no results`)),
      mine.join('\n'),
    ).toBe(true);
    // The server took the stage when the honest replica left (one live replica stays), not after a step timeout.
    expect(
      lines.some((l) => new RegExp(`replica ${honest[1]?.id} left and no spare is ready; the server computes stage 0`).test(l)),
      mine.join('\n'),
    ).toBe(true);
    expect(r.ms).toBeLessThan(STEP_TIMEOUT_MS);
  }, 90_000);
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
