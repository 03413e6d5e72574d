// A volunteer's session limit (StageReady.sessions: a stage with graph
// capture holds a row of KV cache a session, web/compute/capture-plan.ts):
// the coordinator routes it no more sessions at once than its ready says,
// refuses a ready whose count is not one, and still counts a refusal "as
// full" below the limit it gave as a no-show. A real server on port 0,
// real-protocol Node volunteers (its own ready is the claim under test).
import { describe, expect, it } from 'vitest';
import { MAX_SESSIONS_PER_REPLICA } from '../shared/swarm/replica-core.js';
import { httpSwarm, WAIT_MS } from './testing/http-swarm.js';

const swarm = httpSwarm('session-limit');
/** A step's output held this long: sessions overlap when requests do. */
const SLOW = { delayMs: 60, output: (_s: number, d: Float32Array) => d };

describe('a session limit in the ready', () => {
  it('routes a volunteer that holds one session at a time one session at a time; without the limit the same requests overlap', async () => {
    for (const sessions of [1, undefined]) {
      const { url, expected } = await swarm.start(1, 1, { routeWaitMs: 20_000 });
      const [v] = await swarm.joinAll(url, 1, 2, () => ({ fault: SLOW, ...(sessions === undefined ? {} : { sessions }) }));
      const results = await Promise.all([swarm.complete(url), swarm.complete(url), swarm.complete(url)]);
      for (const r of results) {
        expect(r.status, JSON.stringify(r.body.error)).toBe(200);
        expect(r.body.webswarm?.tokens).toEqual(expected);
      }
      // With the limit, the second and third waited for a route: never sent to it, never refused as full (before the
      // limit reached the route picker, it refused them, and they waited for a route again); without, they ran at once.
      if (sessions === 1) expect([v?.mostOpen, v?.fullRefusals]).toEqual([1, 0]);
      else expect(v?.mostOpen).toBeGreaterThan(1);
      expect(v?.errors).toEqual([]);
      await v?.close();
    }
  }, 90_000);

  it('refuses a ready whose session count is not an integer in 1..16, by name, and leaves the volunteer unready', async () => {
    const { url, expected } = await swarm.start(1, 1);
    const bad = [0, MAX_SESSIONS_PER_REPLICA + 1, 2.5, -1, '3', null, Number.MAX_SAFE_INTEGER];
    const liars = bad.map((sessions, i) => swarm.volunteer(url, `127.0.0.${10 + i}`, { sessions }));
    for (const v of liars)
      await expect
        .poll(() => v.errors.map((e) => `${e.code} ${e.message}`), { timeout: WAIT_MS })
        .toContainEqual(expect.stringMatching(/^ERR_BAD_MESSAGE ready: sessions must be an integer in \[1, 16\]/));
    expect(await swarm.readyCount(url)).toBe(0);
    // The server is none the worse: an honest volunteer joins and serves.
    await swarm.joinAll(url, 1, 30, () => ({ sessions: 2 }));
    const r = await swarm.complete(url);
    expect(r.status).toBe(200);
    expect(r.body.webswarm?.tokens).toEqual(expected);
  }, 60_000);

  it('a ready volunteer that lowers its limit just before it refuses a session as full, and raises it after, is a no-show each time and evicted', async () => {
    // Found by a review of the first version: the limit was taken from any ready, and a refusal judged against the
    // limit when it came, so this volunteer refused 36 sessions over 6 requests and was never evicted.
    const { url, server } = await swarm.start(1, 1, { routeWaitMs: 500, joinTimeoutMs: 1_500, stepTimeoutMs: 5_000 });
    const [liar] = await swarm.joinAll(url, 1, 50, () => ({ sessions: 2, fault: { delayMs: 150, output: (_s, d) => d } }));
    if (liar === undefined) throw new Error('no volunteer');
    const modelId = server.coordinator?.modelInfo.modelId ?? '';
    const honest = liar.socket.listeners('session:open');
    liar.socket.removeAllListeners('session:open');
    liar.socket.on('session:open', (m) => {
      // Its first session it serves; the second it refuses, saying 1 session just before and 2 just after.
      if (liar.openNow.size === 0) for (const f of honest) f(m);
      else {
        liar.socket.emit('volunteer:ready', { modelId, stage: 0, stepMs: 1, sessions: 1 });
        liar.socket.emit('step:failed', { sessionId: m.sessionId, step: 0, code: 'ERR_REPLICA_FULL', message: 'full' });
        liar.socket.emit('volunteer:ready', { modelId, stage: 0, stepMs: 1, sessions: 2 });
      }
    });
    for (let i = 0; i < 6 && !liar.errors.some((e) => e.code === 'ERR_EVICTED'); i++) {
      const first = swarm.complete(url);
      await expect.poll(() => liar.openNow.size, { timeout: WAIT_MS }).toBe(1);
      await swarm.complete(url);
      await first;
    }
    await expect.poll(() => liar.errors.some((e) => e.code === 'ERR_EVICTED'), { timeout: WAIT_MS }).toBe(true);
    expect(liar.errors.at(-1)?.message).toMatch(/refused it as full, holding 1 sessions/);
  }, 90_000);

  it('a volunteer that says it holds 4 sessions but refuses its first as full is a no-show each time, and evicted', async () => {
    const { url, server } = await swarm.start(1, 1, { routeWaitMs: 1_000, joinTimeoutMs: 2_000, stepTimeoutMs: 1_500 });
    const [liar] = await swarm.joinAll(url, 1, 40, () => ({ sessions: 4 }));
    if (liar === undefined) throw new Error('no volunteer');
    liar.socket.removeAllListeners('session:open');
    liar.socket.on('session:open', ({ sessionId }) =>
      liar.socket.emit('step:failed', {
        sessionId,
        step: 0,
        code: 'ERR_REPLICA_FULL',
        message: 'this replica keeps 4 sessions open already',
      }),
    );
    for (let i = 0; i < 4 && !liar.errors.some((e) => e.code === 'ERR_EVICTED'); i++) expect((await swarm.complete(url)).status).toBe(503);
    await expect.poll(() => liar.errors.some((e) => e.code === 'ERR_EVICTED'), { timeout: WAIT_MS }).toBe(true);
    expect(liar.errors.at(-1)?.message).toMatch(/refused it as full, holding 0 sessions/);
    expect(server.coordinator?.volunteers()).toEqual([]);
  }, 60_000);
});
