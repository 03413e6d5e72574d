// Over the processes of a cluster (re-partitioning off, so only re-balancing makes a departure good), a
// volunteer given a stage holds a seat only until its load deadline, and its process publishes that it holds none:
// real servers on port 0, a real redis-server, Node volunteers that compute, a raw Socket.IO stranger, tokens
// compared with the reference runner's. Before, a stranger that said hello and nothing more was moved into the stage
// a departure left short and held it there, on every process, while an honest volunteer stood spare (a red-team find
// on one server; the same rule, published, here).
import { beforeAll, describe, expect, it } from 'vitest';
import type { SignalServer } from '../server.js';
import { clusterTestFile, complete, referenceTokens, startCluster, until } from '../testing/cluster-servers.js';
import { NodeVolunteer } from '../testing/node-volunteer.js';
import { silentStranger } from '../testing/socket-client.js';

const MODEL = 'fixtures/models/tiny-untied';
const PROMPT = 'It is a truth universally acknowledged';
const TOKENS = 6;
const LOAD_DEADLINE_MS = 3_000;
const f = clusterTestFile('cluster-stale-seat');
let expected: number[] = [];

beforeAll(async () => {
  [expected = []] = await referenceTokens(MODEL, 2, f.cache, PROMPT, TOKENS);
});

describe('a seat held past the load deadline, over a cluster', () => {
  it('hostile: a stranger on one process that never loads holds a short stage only until its deadline; then a spare of the other process moves', async () => {
    const c = await startCluster(2, f.redisUrl, {
      model: MODEL,
      stages: 2,
      redundancy: 2,
      routeWaitMs: 20_000,
      cache: f.cache,
      loadDeadlineMs: LOAD_DEADLINE_MS,
    });
    f.servers.push(...c.servers);
    const [a, b] = c.servers as [SignalServer, SignalServer];
    const ready = (s: SignalServer) => s.coordinator?.volunteers().filter((v) => v.ready).length ?? 0;
    const all = (s: SignalServer) => s.coordinator?.registry.all().length ?? 0;
    // Five honest volunteers, one after another, on a, b, a, b, a: stages 0 1 0 1 0.
    const honest: NodeVolunteer[] = [];
    for (const [i, s] of [a, b, a, b, a].entries()) {
      const v = new NodeVolunteer(s.address().url, { clientKey: `stale-seat-${i}`, localAddress: `127.0.0.${120 + i}` });
      f.volunteers.push(v);
      honest.push(v);
      await until(`both processes see volunteer ${i}`, () => all(a) === i + 1 && all(b) === i + 1);
    }
    await until('both processes see the five ready', () => ready(a) === 5 && ready(b) === 5, 90_000);
    expect(honest.map((v) => v.stage)).toEqual([0, 1, 0, 1, 0]);
    // The stranger, on b: stage 1 (fewer clients).
    const stranger = silentStranger(b.address().url, '127.0.0.130', 'stale-stranger');
    try {
      await until('both processes see the stranger', () => all(a) === 6 && all(b) === 6);
      // Stage 1's honest volunteer of b leaves: one ready there, and the stranger's seat until its deadline.
      await (honest[3] as NodeVolunteer).close();
      const t0 = performance.now();
      await until('both processes see it gone', () => all(a) === 5 && all(b) === 5);
      const r = await complete(a, PROMPT, TOKENS);
      expect(r.code, JSON.stringify(r)).toBeUndefined();
      expect(r.status).toBe(200);
      expect(r.tokens).toEqual(expected);
      expect(performance.now() - t0).toBeGreaterThan(LOAD_DEADLINE_MS - 1_000);
      // One of a's three on stage 0 moved (its process carried out the move both planned), and b published its stranger
      // as seatless.
      expect([0, 2, 4].filter((i) => honest[i]?.stage === 1)).toHaveLength(1);
      const strangerId = b.coordinator?.volunteers().find((v) => !honest.some((h) => h.id === v.id))?.id as string;
      expect(a.coordinator?.registry.get(strangerId)).toMatchObject({ remote: true, stale: true });
      expect(stranger.connected).toBe(true);
    } finally {
      stranger.disconnect();
    }
  }, 300_000);
});
