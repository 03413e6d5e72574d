// A session of one process disturbed by a volunteer of another: node
// volunteers computing on onnxruntime, spread over three real servers joined by
// a real redis-server. One that names every neighbour unreachable, one that
// never says it joined: the requests are answered with the reference tokens.
import { beforeAll, describe, expect, it } from 'vitest';
import type { SignalServer } from '../server.js';
import { clusterTestFile, complete, referenceTokens, startCluster, until } from '../testing/cluster-servers.js';
import { NodeVolunteer, type NodeVolunteerOptions } from '../testing/node-volunteer.js';

const MODEL = 'fixtures/models/tiny-untied';
const PROMPT = 'It is a truth universally acknowledged';
const TOKENS = 6;
const STAGES = 2;

let expected: number[];
const f = clusterTestFile('cluster-sessions');
const { servers, volunteers } = f;

beforeAll(async () => {
  [expected = []] = await referenceTokens(MODEL, STAGES, f.cache, PROMPT, TOKENS);
});

/** Three servers; volunteer i on server i % 3 (127.0.0.8i), each seen by all before the next joins; the first is `hostile`. */
async function rig(hostile: NodeVolunteerOptions, count = 3 * STAGES): Promise<{ s: SignalServer[]; all: NodeVolunteer[] }> {
  const c = await startCluster(3, f.redisUrl, { model: MODEL, stages: STAGES, redundancy: 3, routeWaitMs: 5_000, cache: f.cache });
  servers.push(...c.servers);
  const all: NodeVolunteer[] = [];
  for (let i = 0; i < count; i++) {
    const server = c.servers[(i + 1) % 3] as SignalServer;
    const v = new NodeVolunteer(server.address().url, {
      clientKey: `session-key-${i}`,
      localAddress: `127.0.0.8${i}`,
      ...(i === 0 ? hostile : {}),
    });
    volunteers.push(v);
    all.push(v);
    await until(`every process sees volunteer ${i}`, () => c.servers.every((x) => x.coordinator?.status().volunteers === i + 1));
  }
  const ready = (x: SignalServer) => x.coordinator?.volunteers().filter((v) => v.ready).length ?? 0;
  await until('every process sees them ready', () => c.servers.every((x) => ready(x) === count));
  return { s: c.servers, all };
}

describe("a volunteer of one process in another's sessions", () => {
  it('names every other volunteer unreachable: each process answers with the reference tokens, nobody is evicted', async () => {
    let all: NodeVolunteer[] = [];
    const rigged = await rig({ unreached: () => all.slice(1).map((v) => v.id as string) });
    all = rigged.all;
    for (const server of rigged.s) {
      const r = await complete(server, PROMPT, TOKENS);
      expect(r.code).toBeUndefined();
      expect(r.tokens).toEqual(expected);
    }
    expect(all.flatMap((v) => v.errors.map((e) => e.code))).toEqual([]);
    expect(all.every((v) => v.socket.connected)).toBe(true);
  });

  it('is evicted by its own process for three sessions it never joined, whichever processes coordinated them', async () => {
    const { s, all } = await rig({ joins: false });
    const silent = all[0] as NodeVolunteer;
    // Three a stage: it is in every route, and the other two of its stage are a majority. One session on each
    // process: one no-show on each, three on its record, kept by its own process (before: one on each, never evicted).
    for (const server of s) expect((await complete(server, PROMPT, TOKENS)).tokens).toEqual(expected);
    expect(silent.sessionsOpened).toBe(s.length);
    await until('its own process evicts it', () => silent.errors.some((e) => e.code === 'ERR_EVICTED'), 10_000).catch(() => {});
    expect(silent.errors.map((e) => e.code)).toEqual(['ERR_EVICTED']);
    await until('no process counts it', () => s.every((x) => x.coordinator?.status().volunteers === 3 * STAGES - 1));
  });
});
