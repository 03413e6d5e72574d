// One client, one seat, over the processes of a cluster: node volunteers that
// compute with the real replica on onnxruntime, one client's sockets spread
// over processes (its client key on two, its address on two), against real
// servers joined by a real redis-server. A stage's majority must stay one of
// distinct clients, whichever process a socket is connected to.
import { beforeAll, describe, expect, it } from 'vitest';
import type { SignalServer } from '../server.js';
import { complete as ask, clusterTestFile, referenceTokens, startCluster, until } from '../testing/cluster-servers.js';
import { NodeVolunteer } from '../testing/node-volunteer.js';

const MODEL = 'fixtures/models/tiny-untied';
const PROMPT = 'It is a truth universally acknowledged';
const TOKENS = 6;
/** A generation long enough for a replica to leave and come back through another process in its middle. */
const LONG = 24;

let expected: number[];
let expectedLong: number[];
const f = clusterTestFile('cluster-seats');
const { servers, volunteers } = f;

beforeAll(async () => {
  [expected = [], expectedLong = []] = await referenceTokens(MODEL, 1, f.cache, PROMPT, TOKENS, LONG);
});

describe('one client, one seat, over the processes of a cluster', () => {
  it("never seats one client's sockets on two processes as two replicas of a stage", async () => {
    const c = await startCluster(3, f.redisUrl, { model: MODEL, stages: 1, redundancy: 3, routeWaitMs: 2_000, cache: f.cache });
    servers.push(...c.servers);
    const [a, b, third] = c.servers as [SignalServer, SignalServer, SignalServer];
    const join = (server: SignalServer, clientKey: string, localAddress: string) => {
      const v = new NodeVolunteer(server.address().url, { clientKey, localAddress });
      volunteers.push(v);
      return v;
    };
    // Three sockets, two clients: 'seat-key-1' on a and b, and 127.0.0.61 on a and on the third process.
    const one = join(a, 'seat-key-1', '127.0.0.61');
    const sameKey = join(b, 'seat-key-1', '127.0.0.62');
    const sameAddress = join(third, 'seat-key-3', '127.0.0.61');
    const ready = (s: SignalServer) => s.coordinator?.volunteers().filter((v) => v.ready).length ?? 0;
    await until('every process sees the three ready', () => c.servers.every((s) => ready(s) === 3));
    // Three ready replicas of the stage, but no three distinct clients among them: refused on every process.
    for (const s of c.servers) expect((await ask(s, PROMPT, TOKENS)).code).toBe('ERR_NO_ROUTE');
    // A third client: now a route holds one socket of each client.
    const other = join(b, 'seat-key-4', '127.0.0.64');
    await until('every process sees the four ready', () => c.servers.every((s) => ready(s) === 4));
    const keysOf = new Map([
      [one.id, ['key:seat-key-1', 'addr:127.0.0.61']],
      [sameKey.id, ['key:seat-key-1', 'addr:127.0.0.62']],
      [sameAddress.id, ['key:seat-key-3', 'addr:127.0.0.61']],
      [other.id, ['key:seat-key-4', 'addr:127.0.0.64']],
    ]);
    for (const s of c.servers) {
      const r = await ask(s, PROMPT, TOKENS);
      expect(r.code).toBeUndefined();
      expect(r.tokens).toEqual(expected);
      const seated = (r.route ?? []).flat().flatMap((id) => keysOf.get(id) ?? [`unknown ${id}`]);
      expect(seated).toHaveLength(6);
      expect(new Set(seated).size).toBe(6);
      expect((r.route ?? []).flat()).toContain(other.id);
    }
    expect(third.coordinator).not.toBeNull();
  });

  it('keeps one seat for a client that leaves one process mid-generation and comes back through another', async () => {
    const c = await startCluster(3, f.redisUrl, { model: MODEL, stages: 1, redundancy: 3, routeWaitMs: 5_000, cache: f.cache });
    servers.push(...c.servers);
    const [a, b, third] = c.servers as [SignalServer, SignalServer, SignalServer];
    // 50 ms a step: the generation outlasts the move.
    const slow = { fault: { delayMs: 50, output: (_s: number, d: Float32Array) => d } };
    const join = (server: SignalServer, clientKey: string, localAddress: string) => {
      const v = new NodeVolunteer(server.address().url, { clientKey, localAddress, ...slow });
      volunteers.push(v);
      return v;
    };
    const mover = join(a, 'mover-key-1', '127.0.0.71');
    join(b, 'honest-key-2', '127.0.0.72');
    join(third, 'honest-key-3', '127.0.0.73');
    const ready = (s: SignalServer) => s.coordinator?.volunteers().filter((v) => v.ready).length ?? 0;
    await until('the third process sees the three ready', () => ready(third) === 3);
    // The mover is in the route (the only three); it leaves a after 5 steps, and its client comes back through b at once.
    const before = mover.id;
    mover.leaveAfter(5);
    const asked = ask(third, PROMPT, LONG);
    join(third, 'spare-key-4', '127.0.0.74');
    await until('the mover left', () => !mover.socket.connected);
    expect(mover.steps).toBeGreaterThanOrEqual(5);
    const back = join(b, 'mover-key-1', '127.0.0.71');
    const r = await asked;
    expect(r.code).toBeUndefined();
    expect(r.tokens).toEqual(expectedLong);
    const route = (r.route ?? []).flat();
    expect(route).toHaveLength(3);
    expect(route.includes(before as string) && route.includes(back.id as string)).toBe(false);
    // Its new socket is challenged on b, then counted on every process.
    await until('every process sees it again, ready once challenged', () => c.servers.every((s) => ready(s) === 4));
  });
});
