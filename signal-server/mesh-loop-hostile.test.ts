// The mesh loop attacked from inside a route, over Socket.IO: a real server on
// port 0 and real-protocol Node volunteers computing on onnxruntime, one of
// them hostile with what any route member can send (its own step:digest
// events). The requester must get the reference runner's tokens, and no honest
// volunteer may be replaced or blamed for what the hostile one did.
import { describe, expect, it } from 'vitest';
import type { StepDigest } from '../shared/protocol/messages.js';
import { MESH_AHEAD } from '../shared/swarm/mesh-loop.js';
import { httpSwarm, WAIT_MS } from './testing/http-swarm.js';
import type { NodeVolunteer } from './testing/node-volunteer.js';

const { start, volunteer, readyCount, complete } = httpSwarm('meshhostile');

/** Volunteers from distinct addresses, each waited for until it has its stage. */
async function volunteers(url: string, n: number, base: number, options: (i: number) => Parameters<typeof volunteer>[2] = () => ({})) {
  const all: NodeVolunteer[] = [];
  for (let i = 0; i < n; i++) {
    const v = volunteer(url, `127.0.0.${base + i}`, options(i));
    all.push(v);
    await expect.poll(() => v.stage, { timeout: WAIT_MS }).not.toBeNull();
  }
  await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(n);
  return all;
}

describe('the mesh loop against a hostile route member', () => {
  it('r = 3: a replica flooding reports of the steps to come (held while the loop runs ahead) cannot crowd out the honest ones', async () => {
    const { url, expected } = await start(3, 3, { stepTimeoutMs: 8_000 });
    let hostile: NodeVolunteer | null = null;
    // With each real report, many copies of a made-up one for every step within the loop's reach ahead:
    // more than the coordinator keeps of all replicas' early reports together.
    const flood = (m: StepDigest): StepDigest => {
      for (let ahead = 1; ahead <= MESH_AHEAD + 1; ahead++)
        for (let i = 0; i < 50; i++)
          hostile?.socket.emit('step:digest', { ...m, step: m.step + ahead, digest: m.digest.map((x) => x + 1) });
      return m;
    };
    const all = await volunteers(url, 9, 200, (i) => (i === 1 ? { tamper: flood } : {}));
    hostile = all[1] as NodeVolunteer;
    expect(hostile.stage).toBe(1);
    const r = await complete(url);
    expect(r.body.error).toBeUndefined();
    expect(r.status).toBe(200);
    expect(r.body.webswarm?.tokens).toEqual(expected);
    // Every step had the honest majority of every stage: their reports were counted, none of them replaced.
    expect(r.body.webswarm?.votes.every((t) => t.votes.every((v) => v.agreed >= 2))).toBe(true);
    const honest = all.filter((v) => v !== hostile);
    // Nor told off (relay refusals of frames to the evicted hostile, still in flight, are no blame).
    expect(honest.flatMap((v) => v.errors.map((e) => e.code)).filter((c) => c !== 'ERR_NOT_LINKED')).toEqual([]);
    // The hostile one's made-up reports disagree with its stage: its record shows it.
    expect(hostile.errors.map((e) => e.code)).toContain('ERR_EVICTED');
  }, 60_000);
});
