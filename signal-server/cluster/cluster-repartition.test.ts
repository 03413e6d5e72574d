// Live re-partition over the processes of a cluster (REPARTITION with REDIS_URL): real servers on port 0, a real
// redis-server, Node volunteers that compute with onnxruntime and speak Socket.IO, tokens compared with the
// reference runner's. The lowest-numbered process plans for the whole cluster over every process's volunteers,
// publishes its plan, and each process builds the cut from its own stage cache and serves it; a process that starts
// later adopts the cut from Redis. Before, the servers of a cluster kept the partition they started with: a departure
// that left a stage short of r, with no spare anywhere, refused every request (503) until a volunteer came back.
import { beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../log.js';
import type { SignalServer } from '../server.js';
import {
  type ClusterShape,
  clusterTestFile,
  complete,
  joinCluster,
  joinVolunteers,
  partitionOf,
  procOf,
  readyCount,
  referenceTokens,
  SWITCH_RACES,
  startCluster,
  until,
  volunteerCount,
} from '../testing/cluster-servers.js';
import { NodeVolunteer } from '../testing/node-volunteer.js';

const MODEL = 'fixtures/models/tiny-untied';
/** tiny-untied's layers: cut into one stage, they are 0-3. */
const ONE_STAGE = '0-3';
const PROMPT = 'It is a truth universally acknowledged';
const TOKENS = 6;
const HOLD_MS = 3_000;
/** How long a process's volunteers may be on another partition than another process's (ELSEWHERE_LIMIT_MS, shortened). */
const ELSEWHERE_MS = 5_000;
/** Volunteers load and prove their stages: generous, for 2 cores shared with other test files. */
const READY_MS = 90_000;
const f = clusterTestFile('cluster-repartition');
let expected: number[] = [];

beforeAll(async () => {
  [expected = []] = await referenceTokens(MODEL, 2, f.cache, PROMPT, TOKENS);
});

const ready = readyCount;
const all = volunteerCount;

async function expectReference(s: SignalServer): Promise<void> {
  const r = await complete(s, PROMPT, TOKENS);
  expect(r.code, JSON.stringify(r)).toBeUndefined();
  expect(r.status).toBe(200);
  expect(r.tokens).toEqual(expected);
}

describe('re-partition over a cluster', () => {
  it('a departure on one process leaves a stage short: the leader cuts the model anew for every process, one that starts later serves the cut too, and a new volunteer brings the configured partition back everywhere', async () => {
    const lines: string[] = [];
    const logger = createLogger('info', { write: (chunk: string) => lines.push(...chunk.split('\n').filter((l) => l.length > 0)) });
    const shape: ClusterShape = {
      model: MODEL,
      stages: 2,
      redundancy: 2,
      routeWaitMs: 20_000,
      cache: f.cache,
      repartition: { holdMs: HOLD_MS },
      logger,
    };
    const c = await startCluster(2, f.redisUrl, shape);
    f.servers.push(...c.servers);
    const [a, b] = c.servers as [SignalServer, SignalServer];
    const configured = partitionOf(a) as string;
    expect(configured).toBe('0-2,2-3');
    expect(procOf(a)).toBeLessThan(procOf(b));
    // Four volunteers, on a, b, a, b: stages 0 1 0 1.
    const honest = await joinVolunteers(f, [a, b, a, b], [a, b], 'cluster-cut', 140, READY_MS);
    expect(honest.map((v) => v.stage)).toEqual([0, 1, 0, 1]);
    const configuredKey = honest[0]?.partition;

    // Stage 1's volunteer of b leaves during a request on b (the process that does not lead): one of r = 2 there, and
    // none to move (stage 0 would be short instead). The request is replayed on the cut and answers the reference.
    (honest[3] as NodeVolunteer).leaveAfter(2);
    await expectReference(b);
    expect(b.coordinator?.replays).toBe(1);
    const stayed = honest.slice(0, 3);
    await until('every process serves one stage of all layers', () => partitionOf(a) === ONE_STAGE && partitionOf(b) === ONE_STAGE, 60_000);
    await until('both see the three ready on it', () => ready(a) === 3 && ready(b) === 3, READY_MS);
    const cut = stayed[0]?.partition;
    expect(cut).not.toBe(configuredKey);
    for (const v of stayed) expect([v.stage, v.partition]).toEqual([0, cut]);
    // The leader (the lower number) planned it; the other built the same cut from its own stage cache and served it.
    expect(a.coordinator?.repartitions).toBe(1);
    expect(b.coordinator?.repartitions).toBe(1);
    const said = lines.map((l) => (JSON.parse(l) as { msg?: string }).msg ?? '');
    expect(said.filter((m) => m.startsWith('re-partition: stages short'))).toHaveLength(1);
    expect(
      said.filter((m) => m === `re-partition: the cluster's leader serves layers ${ONE_STAGE}; building layers ${ONE_STAGE}`),
    ).toHaveLength(1);
    // Requests on either process: routes over the volunteers of both, the reference's tokens.
    await expectReference(a);
    await expectReference(b);

    // A third process starts: it adopts the cut from Redis, and mirrors the others' volunteers on it.
    const third = await joinCluster(c.prefix, 2, f.redisUrl, shape);
    f.servers.push(third);
    await until('the third process serves the cut', () => partitionOf(third) === ONE_STAGE, 60_000);
    await until('it sees the three ready', () => ready(third) === 3, 30_000);
    await expectReference(third);

    // A new volunteer joins the third: four clients are ready, enough for 2 stages × r = 2. After the hold, the
    // leader switches the whole cluster back to the configured partition.
    const fresh = new NodeVolunteer(third.address().url, { clientKey: 'cluster-cut-fresh', localAddress: '127.0.0.150' });
    f.volunteers.push(fresh);
    const servers = [a, b, third];
    await until('every process serves the configured partition again', () => servers.every((s) => partitionOf(s) === configured), 90_000);
    await until('every process sees the four ready', () => servers.every((s) => ready(s) === 4), READY_MS);
    const four = [...stayed, fresh];
    for (const v of four) expect(v.partition).toBe(configuredKey);
    expect(four.filter((v) => v.stage === 0)).toHaveLength(2);
    expect(four.filter((v) => v.stage === 1)).toHaveLength(2);
    for (const s of servers) await expectReference(s);
    // Never refused nor evicted (their only errors: races of a switch, SWITCH_RACES).
    for (const v of four) expect(v.errors.filter((e) => !SWITCH_RACES.has(e.code))).toEqual([]);
  }, 300_000);

  it('a process that cannot serve the cut (REPARTITION off there) is waited for ELSEWHERE_LIMIT_MS at most: then each side drops the volunteers of the other, and the leader serves the cut with its own', async () => {
    const lines: string[] = [];
    const logger = createLogger('info', { write: (chunk: string) => lines.push(...chunk.split('\n').filter((l) => l.length > 0)) });
    const c = await startCluster(2, f.redisUrl, {
      model: MODEL,
      stages: 2,
      redundancy: 2,
      routeWaitMs: 20_000,
      cache: f.cache,
      repartition: { holdMs: 60_000 },
      repartitionEach: [true, false],
      elsewhereLimitMs: ELSEWHERE_MS,
      logger,
    });
    f.servers.push(...c.servers);
    const [a, b] = c.servers as [SignalServer, SignalServer];
    const vs = await joinVolunteers(f, [a, b, a, b], [a, b], 'cluster-stuck', 160, READY_MS);
    expect(vs.map((v) => v.stage)).toEqual([0, 1, 0, 1]);
    await (vs[3] as NodeVolunteer).close();
    await until('the leader serves the cut', () => partitionOf(a) === ONE_STAGE, 60_000);
    const switched = performance.now();
    await until('its two are ready on it', () => ready(a) === 2, READY_MS);
    // b said why it does not follow, and serves the configured partition still; each mirrors the other's volunteer(s)
    // as on another partition, for the limit.
    const said = () => lines.map((l) => (JSON.parse(l) as { msg?: string }).msg ?? '');
    expect(said().some((m) => m.includes(`the cluster's leader serves layers ${ONE_STAGE}, and this process cannot build them`))).toBe(
      true,
    );
    expect(partitionOf(b)).toBe('0-2,2-3');
    await until('each drops the other side', () => all(a) === 2 && all(b) === 1, ELSEWHERE_MS + 20_000);
    expect(performance.now() - switched).toBeGreaterThan(ELSEWHERE_MS - 1_500);
    await expectReference(a);
  }, 300_000);
});
