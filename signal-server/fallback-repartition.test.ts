// The fallback across a live re-partition, over the real protocol: a real
// server on port 0, Node volunteers over Socket.IO, a request the server's
// fallback computes a stage of when a departure makes the swarm switch
// partition. The request answers the reference's tokens (replayed on the new
// partition if the switch comes first), and the old partition's fallback
// runner (real onnxruntime sessions in a thread) is released, once, when no session uses
// it; the in-process test (coordinator/fallback-handover.test.ts) holds a
// session across the switch deterministically.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ThreadExecutor } from './reference/thread-executor.js';
import { httpSwarm } from './testing/http-swarm.js';
import type { NodeVolunteer } from './testing/node-volunteer.js';

const { start, volunteer, readyCount, complete, stageCache } = httpSwarm('fallback-repartition');

const READY_MS = 90_000;
const TEST_MS = 300_000;

afterEach(() => vi.restoreAllMocks());

describe('fallback and re-partition over Socket.IO', () => {
  it(
    "a request the fallback computes a stage of answers the reference's tokens across the switch; the old fallback runner is then released, once",
    async () => {
      // Observed, not replaced: every runner made of the whole model (3 stage files), and every release.
      const create = vi.spyOn(ThreadExecutor, 'create');
      const release = vi.spyOn(ThreadExecutor.prototype, 'release');
      const { server, url, expected } = await start(3, 2, {
        stepTimeoutMs: 20_000,
        fallback: 'stage',
        repartition: { stageCache: stageCache() },
      });
      const coordinator = server.coordinator;
      if (coordinator === null) throw new Error('no coordinator');
      // Five volunteers for 3 stages × r = 2: one stage short, so the server computes it from the first step.
      const vs: NodeVolunteer[] = [];
      for (let i = 0; i < 5; i++) {
        const v = volunteer(url, `127.0.0.${20 + i}`);
        vs.push(v);
        await expect.poll(() => v.stage, { timeout: READY_MS }).not.toBeNull();
      }
      await expect.poll(() => readyCount(url), { timeout: READY_MS }).toBe(5);
      // One of a full stage leaves after 2 steps: the swarm is cut anew (4 volunteers: fewer stages) mid-request.
      const counts = [0, 1, 2].map((s) => vs.filter((v) => v.stage === s).length);
      const leaving = vs.find((v) => counts[v.stage as number] === 2) as NodeVolunteer;
      leaving.leaveAfter(2);
      const r = await complete(url);
      expect(r.body.error).toBeUndefined();
      expect(r.status).toBe(200);
      expect(r.body.webswarm?.tokens).toEqual(expected);
      // The fallback keeps the request going, so it may end before the new partition's files are built (then the
      // old runner is idle at the switch) or be replayed on the new partition (then it goes when the session ends).
      await expect.poll(() => coordinator.repartitions, { timeout: READY_MS }).toBe(1);
      expect([0, 1]).toContain(coordinator.replays);
      // The old partition's fallback runner: made of its 3 stage files, and released once the replayed session ended.
      const wholeModel = create.mock.results
        .map((x, i) => ({ bytes: create.mock.calls[i]?.[0].length, value: x.value as Promise<ThreadExecutor> }))
        .filter((x) => x.bytes === 3);
      const runners = await Promise.all(wholeModel.map((x) => x.value));
      await expect
        .poll(() => release.mock.contexts.filter((c) => runners.includes(c as ThreadExecutor)).length, { timeout: 10_000 })
        .toBe(1);
      // Nothing else of the whole model was released: the challenge oracles and the new partition's runner live on.
      expect(coordinator.fallbackSessions).toBe(0);
      const again = await complete(url);
      expect(again.status).toBe(200);
      expect(again.body.webswarm?.tokens).toEqual(expected);
      expect(release.mock.contexts.filter((c) => runners.includes(c as ThreadExecutor)).length).toBe(1);
    },
    TEST_MS,
  );
});
