// Attacks on the exemption of a refusal as full (ERR_REPLICA_FULL): its own
// server judges it by the sessions it sent the volunteer and did not close, so
// a session it stops holding without a session:close must not stay counted.
// A real server on port 0, real-protocol Node volunteers; the liar speaks the protocol.
import { describe, expect, it } from 'vitest';
import { MAX_SESSIONS_PER_REPLICA } from '../shared/swarm/replica-core.js';
import { httpSwarm } from './testing/http-swarm.js';
import type { NodeVolunteer } from './testing/node-volunteer.js';

const swarm = httpSwarm('full-refusal-attacks');

/** Waits until `test` holds (sync or not). */
async function until(what: string, test: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  for (const deadline = Date.now() + ms; !(await test()); ) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Makes `v` refuse every session as full, whatever it holds. */
function lieFull(v: NodeVolunteer): void {
  v.socket.removeAllListeners('session:open');
  v.socket.on('session:open', ({ sessionId }) =>
    v.socket.emit('step:failed', { sessionId, step: 0, code: 'ERR_REPLICA_FULL', message: 'this replica keeps 16 sessions open already' }),
  );
}

describe('refusals as full: attacks', () => {
  it(`a volunteer moved to another stage while in ${MAX_SESSIONS_PER_REPLICA} sessions holds none after, and its refusals as full are strikes`, async () => {
    const { url, server } = await swarm.start(2, 1, { routeWaitMs: 1_000, joinTimeoutMs: 2_000, stepTimeoutMs: 1_500 });
    let release = () => {};
    const held = new Promise<void>((r) => {
      release = r;
    });
    // The spare of stage 0: there first, ready only once the sessions run (so that they go to the attacker).
    const spare = swarm.volunteer(url, '127.0.0.2', { holdProof: () => held });
    await until('the spare has stage 0', () => spare.stage === 0);
    const last = swarm.volunteer(url, '127.0.0.3');
    await until('stage 1 is taken', () => last.stage === 1);
    // The attacker: the most recently joined of stage 0, so the one moved when stage 1 empties.
    const attacker = swarm.volunteer(url, '127.0.0.4', { fault: { delayMs: 400, output: (_s, d) => d } });
    await until('the attacker is ready on stage 0', async () => attacker.stage === 0 && (await swarm.readyCount(url)) === 2);
    const first = Array.from({ length: MAX_SESSIONS_PER_REPLICA }, () => swarm.complete(url, 24).catch(() => null));
    await until('it is in every session', () => attacker.sessionsOpened >= MAX_SESSIONS_PER_REPLICA);
    release();
    await until('the spare is ready', async () => (await swarm.readyCount(url)) === 3);
    // Stage 1 empties: the attacker moves there, and the spare takes its place in its 16 sessions.
    await last.close();
    await until('the attacker is ready on stage 1', async () => attacker.stage === 1 && (await swarm.readyCount(url)) === 2);
    await Promise.all(first);
    lieFull(attacker);
    for (let i = 0; i < 3 && !attacker.errors.some((e) => e.code === 'ERR_EVICTED'); i++)
      expect((await swarm.complete(url)).status).toBe(503);
    // Before: its server still counted the 16 sessions it was replaced in (no session:close went to it), judged
    // every lie "its due", and it was never evicted while each request it was asked for waited out its route wait.
    await until('it is evicted', () => attacker.errors.some((e) => e.code === 'ERR_EVICTED'));
    expect(attacker.errors.at(-1)?.message).toMatch(/refused it as full, holding 0 sessions/);
    expect(server.coordinator?.volunteers().map((v) => v.id)).toEqual([spare.id]);
  }, 60_000);
});
