// A replica that joins its sessions and then computes nothing (drops its
// inputs, or answers them with noise) is a no-show, taken out of each session
// for a spare once it stayed unheard for its stage's limit (SilentMembers;
// three no-shows among its last 20 sessions evict it). A real server on port
// 0, real-protocol Node volunteers; the honest ones are slow (200 ms a step),
// so a generation outlasts the limit's 5 s floor. In sessions shorter than
// the floor, its silence adds up over them (SilentMembers.carry).
import { describe, expect, it } from 'vitest';
import type { StepInput } from '../shared/protocol/messages.js';
import { SILENT_FLOOR_MS } from './coordinator/silent-members.js';
import { httpSwarm, TOKENS, WAIT_MS } from './testing/http-swarm.js';
import type { NodeVolunteer } from './testing/node-volunteer.js';
import { serverLog } from './testing/server-log.js';

const swarm = httpSwarm('silent-attacks');
const STEP_DELAY_MS = 200;

/**
 * A server (1 stage, r = 3, routes drawn at random 0: the first three ready), a member ready first (so in every
 * route) whose step inputs `misbehave` takes over (by default it drops them: it never computes, never reports), and
 * `honestCount` honest replicas `delayMs` a step slow (of three, the third a spare).
 */
async function swarmWithMember(
  delayMs: number,
  misbehave: (v: NodeVolunteer) => void = (v) => v.socket.off('step:input'),
  honestCount = 3,
) {
  const { lines, logger } = serverLog();
  const { url, expected } = await swarm.start(1, 3, { random: () => 0, logger });
  const member = swarm.volunteer(url, '127.0.0.9');
  misbehave(member);
  await expect.poll(() => swarm.readyCount(url), { timeout: WAIT_MS }).toBe(1);
  const honest = await swarm.joinAll(url, honestCount, 2, () => ({ fault: { delayMs, output: (_s, d) => d } }));
  await expect.poll(() => swarm.readyCount(url), { timeout: WAIT_MS }).toBe(honestCount + 1);
  return { lines, url, expected, member, honest };
}

describe('a member that joins its sessions and then computes nothing', () => {
  /** Tokens a generation: at STEP_DELAY_MS a step, well past SILENT_FLOOR_MS. */
  const LONGER = 40;

  it('is a no-show in each, taken out for a spare (the answer is the reference), and three evict it', async () => {
    // Ready first, it is in every route. It joins each session it is opened on, over the real protocol, and drops
    // every step's input: it never computes, and never reports. Slow honest replicas (200 ms a step): a generation
    // lasts about 8 s, past the 5 s floor of the silence limit.
    const { lines, url, expected, member: silent, honest } = await swarmWithMember(STEP_DELAY_MS);
    const spare = honest[2] as NodeVolunteer;
    for (let k = 1; k <= 3; k++) {
      const stepsBefore = spare.steps;
      const r = await swarm.complete(url, LONGER);
      expect(r.status).toBe(200);
      expect(r.body.webswarm?.tokens?.slice(0, TOKENS)).toEqual(expected);
      expect(r.body.webswarm?.tokens).toHaveLength(LONGER);
      const strikes = lines.filter((l) => l.includes(`volunteer ${silent.id} joined session`));
      expect(strikes, lines.filter((l) => l.includes(String(silent.id))).join('\n')).toHaveLength(k);
      expect(strikes[k - 1]).toMatch(new RegExp(`then sent too few results while its stage decided steps \\(${k} of 3 no-shows`));
      // Taken out midway: the spare took its place and computed (its replay, then the steps after it).
      expect(
        lines.some((l) => new RegExp(`replica ${silent.id} of stage 0 sent too few results; ${spare.id} takes its place`).test(l)),
      ).toBe(true);
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
    expect(lines.some((l) => l.includes(`replica ${noisy.id} of stage 0 sent too few results; ${honest[2]?.id} takes its place`))).toBe(
      true,
    );
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

describe('a member silent in sessions each shorter than the limit', () => {
  /** Strike lines of `id` in the server's log. */
  const strikesOf = (lines: readonly string[], id: string | null) => lines.filter((l) => l.includes(`volunteer ${id} joined session`));

  /**
   * Sessions one after another until `id` has a strike (at most `most`): each answered with the reference, each
   * shorter than `maxMs` (the silence floor: so that no one session could judge it alone). Their times.
   */
  async function sessionsUntilStruck(
    url: string,
    tokens: number,
    expected: readonly number[],
    lines: readonly string[],
    id: string | null,
    most: number,
    maxMs = SILENT_FLOOR_MS,
  ): Promise<number[]> {
    const times: number[] = [];
    while (strikesOf(lines, id).length === 0 && times.length < most) {
      const r = await swarm.complete(url, tokens);
      expect(r.status).toBe(200);
      expect(r.body.webswarm?.tokens?.slice(0, TOKENS)).toEqual(expected);
      expect(r.ms).toBeLessThan(maxMs);
      times.push(r.ms);
    }
    return times;
  }

  it('is a no-show once its time unheard over them adds up to the limit', async () => {
    const { lines, url, expected, member: silent, honest } = await swarmWithMember(STEP_DELAY_MS);
    // 14 tokens at 200 ms a step: about 3 s a session, under the floor; past its grace (8 steps' pace, about 1.6 s,
    // which an honest replica up to 8 times slower may take to report), about 1.4 s a session adds up.
    const times = await sessionsUntilStruck(url, 14, expected, lines, silent.id, 10);
    const strikes = strikesOf(lines, silent.id);
    expect(strikes, lines.filter((l) => l.includes(String(silent.id))).join('\n')).toHaveLength(1);
    expect(strikes[0]).toMatch(/then sent too few results while its stage decided steps \(1 of 3 no-shows/);
    // Judged only once the sessions' time reached the floor: not in the first, and after at least the floor of them.
    expect(times.length).toBeGreaterThan(1);
    expect(times.reduce((a, t) => a + t, 0)).toBeGreaterThanOrEqual(SILENT_FLOOR_MS);
    // Judged unheard for the limit, over the sessions: at a step of the last (a spare then takes its place), or at its end.
    const judged = lines.map((l) => new RegExp(`${silent.id} of stage 0 sent no results for (\\d+) ms`).exec(l)).find((m) => m !== null);
    expect(Number(judged?.[1])).toBeGreaterThanOrEqual(SILENT_FLOOR_MS);
    // The honest replicas, heard at every step, are never struck.
    for (const h of honest) expect(strikesOf(lines, h.id)).toEqual([]);
  }, 90_000);

  it('is judged behind when it computes only the first steps of each (heard in each, under 1 in 8 of the steps)', async () => {
    // Over the real protocol: it computes a session's first step (its prompt) as an honest replica does, and drops
    // every later input the server sends (the mesh loop's tokens, which it sends itself, still run a step or two).
    // Faster honest replicas (50 ms a step): 32 tokens a session in about 2 s, heard at their first steps, unheard for
    // the rest, never for the floor at once; over sessions, under 1 in 8 of the steps reported.
    const {
      lines,
      url,
      expected,
      member: lazy,
      honest,
    } = await swarmWithMember(
      50,
      (v) => {
        const [compute] = v.socket.listeners('step:input');
        if (compute === undefined) throw new Error('the volunteer has no step:input handler');
        v.socket.off('step:input');
        v.socket.on('step:input', (m: StepInput) => {
          if (m.step === 0) compute(m);
        });
      },
      // No spare: once its first steps have earned it a record, a newcomer beside it would leave its stage's votes
      // waiting on it (a vote wins only with a strict majority of the established replicas, those still to answer
      // counted), and the server would take the stage (serveStalled); with three established, two decide.
      2,
    );
    const LONG = 32;
    const times = await sessionsUntilStruck(url, LONG, expected, lines, lazy.id, 12);
    const strikes = strikesOf(lines, lazy.id);
    expect(strikes, lines.filter((l) => l.includes(String(lazy.id))).join('\n')).toHaveLength(1);
    expect(lines.some((l) => new RegExp(`${lazy.id} of stage 0 reported \\d+ of the \\d+ steps its stage decided`).test(l))).toBe(true);
    // Heard in every session (it computed some steps of each), fewer than 1 in 8 of them.
    expect(lazy.steps).toBeGreaterThanOrEqual(times.length - 1);
    expect(lazy.steps * 8).toBeLessThan(times.length * LONG);
    for (const h of honest) expect(strikesOf(lines, h.id)).toEqual([]);
  }, 90_000);
});
