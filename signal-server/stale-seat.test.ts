// A volunteer given a stage holds a seat there only until its load deadline: real server on port 0, Node volunteers
// that compute with onnxruntime and speak Socket.IO, a raw Socket.IO stranger, requests over the HTTP API compared
// with the reference runner. A red-team pass found a stranger that said hello and nothing more moved into the stage
// a departure left short (the most recently joined moves first) and holding it there: 3 honest volunteers stood
// ready on the other stage, and every request was refused (no route) for as long as the stranger's socket stayed.
// With REPARTITION off, as with several servers (REDIS_URL), only re-balancing makes a departure good.
import { describe, expect, it } from 'vitest';
import { httpSwarm } from './testing/http-swarm.js';
import type { NodeVolunteer } from './testing/node-volunteer.js';
import { silentStranger } from './testing/socket-client.js';

const { start, volunteer, readyCount, complete } = httpSwarm('stale-seat');

const READY_MS = 90_000;
const LOAD_DEADLINE_MS = 3_000;

describe('a seat held past the load deadline', () => {
  it('hostile: a stranger that never loads is moved into a short stage and holds it only until its deadline; then an honest spare moves and the swarm answers the reference', async () => {
    const { server, url, expected } = await start(2, 2, { routeWaitMs: 20_000, loadDeadlineMs: LOAD_DEADLINE_MS });
    const coordinator = server.coordinator;
    if (coordinator === null) throw new Error('no coordinator');
    // Five honest volunteers, one after another: stages 0 1 0 1 0.
    const honest: NodeVolunteer[] = [];
    for (let i = 0; i < 5; i++) {
      honest.push(volunteer(url, `127.0.0.${60 + i}`));
      await expect.poll(() => coordinator.registry.all().length, { timeout: READY_MS }).toBe(i + 1);
    }
    await expect.poll(() => readyCount(url), { timeout: READY_MS }).toBe(5);
    expect(honest.map((v) => v.stage)).toEqual([0, 1, 0, 1, 0]);
    // The stranger takes stage 1 (fewer clients): 2 of r = 2 there, one of them never ready.
    const stranger = silentStranger(url, '127.0.0.70');
    try {
      await expect.poll(() => coordinator.registry.all().length, { timeout: READY_MS }).toBe(6);
      const strangerId = coordinator.registry.all().find((v) => !honest.some((h) => h.id === v.id))?.id as string;
      expect(coordinator.registry.get(strangerId)?.stage).toBe(1);
      // Stage 1's last honest volunteer leaves: 1 ready there. Until the stranger's deadline it holds the other seat;
      // then it holds none, an honest volunteer of stage 0 (3 there) moves, loads and proves stage 1.
      await (honest.at(-2) as NodeVolunteer).close();
      const t0 = performance.now();
      const r = await complete(url);
      expect(r.body.error).toBeUndefined();
      expect(r.status).toBe(200);
      expect(r.body.webswarm?.tokens).toEqual(expected);
      expect(performance.now() - t0).toBeGreaterThan(LOAD_DEADLINE_MS - 1_000);
      expect(coordinator.registry.get(strangerId)).toMatchObject({ ready: false, stale: true });
      // Not evicted: an honest tab may load slowly, and holds a seat again once it is ready.
      expect(stranger.connected).toBe(true);
      expect(coordinator.registry.replicasPerStage()).toEqual([2, 3]);
    } finally {
      stranger.disconnect();
    }
  }, 300_000);

  it('a volunteer whose ready came before the deadline is judged by its challenge’s timeout, not the deadline: its late, right answer makes it ready, never seatless', async () => {
    const { server, url } = await start(2, 2, { loadDeadlineMs: LOAD_DEADLINE_MS });
    const coordinator = server.coordinator;
    if (coordinator === null) throw new Error('no coordinator');
    // Its answer to the challenge waits past the load deadline (a long challenge queue, a slow tab), within the
    // challenge's own timeout (60 s). Before, it was un-vouched and lost its seat all the same (a red-team find).
    let answered = false;
    const slow = volunteer(url, '127.0.0.80', {
      holdProof: () =>
        new Promise<void>((resolve) =>
          setTimeout(() => {
            answered = true;
            resolve();
          }, LOAD_DEADLINE_MS + 1_500),
        ),
    });
    let seatless = false;
    const watch = setInterval(() => {
      if (slow.id !== null && coordinator.registry.get(slow.id)?.stale === true) seatless = true;
    }, 50);
    try {
      await expect.poll(() => answered, { timeout: READY_MS }).toBe(true);
      await expect.poll(() => coordinator.registry.get(slow.id as string)?.ready, { timeout: READY_MS }).toBe(true);
      expect(seatless).toBe(false);
    } finally {
      clearInterval(watch);
    }
  }, 300_000);
});
