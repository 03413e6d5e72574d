// Processes of one cluster that speak different cluster protocols (a rolling
// upgrade): each leaves the other out by name, rather than mirroring its
// volunteers and dropping its messages as malformed. Real servers on port 0,
// a real redis-server, real-protocol Node volunteers.
import { describe, expect, it } from 'vitest';
import { createLogger, type Logger } from '../log.js';
import type { SignalServer } from '../server.js';
import { type ClusterShape, clusterTestFile, complete, procOf, startCluster, until } from '../testing/cluster-servers.js';
import { NodeVolunteer } from '../testing/node-volunteer.js';
import { CLUSTER_PROTOCOL } from './cluster.js';

const MODEL = 'fixtures/models/tiny-untied';
const f = clusterTestFile('cluster-protocol');
const { servers, volunteers } = f;

/** A logger whose lines are kept, for what the servers say of each other. */
function logLines() {
  const lines: string[] = [];
  return { lines, logger: createLogger('info', { write: (l: string) => void lines.push(l) }) };
}

/** Two processes of one cluster that differ in `shape`'s way; nobody dies here (a starved heartbeat must not take one for dead). */
function twoMisconfigured(shape: Pick<ClusterShape, 'stages' | 'stagesEach' | 'contextEach'>, logger: Logger) {
  return startCluster(2, f.redisUrl, {
    model: MODEL,
    redundancy: 1,
    cache: f.cache,
    routeWaitMs: 1_000,
    logger,
    timings: { deadAfterMs: 15_000 },
    ...shape,
  });
}

describe('processes of another cluster protocol', () => {
  it('are left out, said once in the log: their volunteers are not routed to, and a request waits for its own', async () => {
    const { lines, logger } = logLines();
    const c = await startCluster(3, f.redisUrl, {
      model: MODEL,
      stages: 1,
      redundancy: 1,
      cache: f.cache,
      routeWaitMs: 1_000,
      protocols: [CLUSTER_PROTOCOL, CLUSTER_PROTOCOL - 1, CLUSTER_PROTOCOL],
      logger,
      // No process dies here: a heartbeat starved under load must not take one for dead, which would (rightly) ask its
      // protocol again and say the line a third time.
      timings: { deadAfterMs: 15_000 },
    });
    servers.push(...c.servers);
    const [a, old, b] = c.servers as [SignalServer, SignalServer, SignalServer];
    const v = new NodeVolunteer(old.address().url, { clientKey: 'old-process-volunteer' });
    volunteers.push(v);
    await until('the old process has it ready', () => old.coordinator?.volunteers().filter((x) => x.ready).length === 1);
    // a knows b, and says once that it leaves the old process out.
    await until('a leaves it out', () =>
      lines.some((l) => l.includes(`process ${procOf(old)} speaks cluster protocol ${CLUSTER_PROTOCOL - 1}`)),
    );
    const w = new NodeVolunteer(b.address().url, { clientKey: 'new-process-volunteer' });
    volunteers.push(w);
    await until('a sees b’s volunteer ready', () => a.coordinator?.volunteers().some((x) => x.id === w.id && x.ready) === true);
    // Several heartbeats later: the old process's volunteer is still not a's, and the line was said once by a and once by b.
    await new Promise((r) => setTimeout(r, 1_000));
    expect(a.coordinator?.volunteers().map((x) => x.id)).toEqual([w.id]);
    expect(lines.filter((l) => l.includes(`process ${procOf(old)} speaks cluster protocol`)).length).toBe(2);
    // Warnings (40): the cluster is split, and LOG_LEVEL=warn does not hide it (before, info lines).
    for (const l of lines.filter((x) => x.includes('speaks cluster protocol'))) expect((JSON.parse(l) as { level: number }).level).toBe(40);
    // Served by b's volunteer, never by the old process's.
    for (let i = 0; i < 4; i++) {
      const r = await complete(a, 'It is a truth', 4);
      expect(r.status).toBe(200);
      expect(r.route).toEqual([[w.id]]);
    }
  });

  it('a live process another took for dead says its protocol again, and its volunteers are mirrored again', async () => {
    const { lines, logger } = logLines();
    const c = await startCluster(2, f.redisUrl, { model: MODEL, stages: 1, redundancy: 1, cache: f.cache, logger });
    servers.push(...c.servers);
    const [a, b] = c.servers as [SignalServer, SignalServer];
    const v = new NodeVolunteer(a.address().url, { clientKey: 'taken-for-dead-volunteer' });
    volunteers.push(v);
    const bSees = () => b.coordinator?.volunteers().some((x) => x.id === v.id && x.ready) === true;
    await until('b sees a’s volunteer ready', bSees);
    // b takes a for dead, as its heartbeat check does when a's heartbeat key lapsed (a stall longer than
    // deadAfterMs, a lost connection; a need not notice): it drops a's volunteers, and removes a from the
    // process set, its volunteers' hash and its protocol. (Called directly: a lapse on cue is a race.)
    const cluster = b.coordinator?.cluster as unknown as { dead(p: number, why: string): void };
    cluster.dead(procOf(a), 'its heartbeat stopped');
    expect(bSees()).toBe(false);
    // a says its protocol and publishes its volunteers again; b takes it back, not as a process of another protocol.
    await until('b sees a’s volunteer again', bSees, 10_000);
    expect(lines.filter((l) => l.includes('speaks cluster protocol'))).toEqual([]);
    expect(lines.some((l) => l.includes(`process ${procOf(a)}'s heartbeat lapsed; publishing its volunteers again`))).toBe(true);
    // And a request on b is served by it.
    const r = await complete(b, 'It is a truth', 4);
    expect(r.status).toBe(200);
    expect(r.route).toEqual([[v.id]]);
  });

  it('another partition of the model (STAGES differs) is left out by name, so no request mixes stages of both (before: a wrong answer, HTTP 200)', async () => {
    const { lines, logger } = logLines();
    const c = await twoMisconfigured({ stages: 3, stagesEach: [3, 2] }, logger);
    servers.push(...c.servers);
    const [a, b] = c.servers as [SignalServer, SignalServer];
    for (let i = 0; i < 3; i++) volunteers.push(new NodeVolunteer(a.address().url, { clientKey: `three-stage-volunteer-${i}` }));
    await until('a has its three ready', () => a.coordinator?.volunteers().filter((x) => x.ready).length === 3);
    await until('both say why they leave the other out', () => lines.filter((l) => l.includes('serves other settings')).length >= 2);
    expect(lines.find((l) => l.includes(`process ${procOf(a)} serves other settings`))).toContain(
      'STAGES, REDUNDANCY, WEIGHTS, GRAPH and CONTEXT',
    );
    // b uses none of a's volunteers: its stage 0 (layers 0–1) would have run on a's stage 0 (layer 0) before.
    await new Promise((r) => setTimeout(r, 500));
    expect(b.coordinator?.volunteers()).toEqual([]);
    const onB = await complete(b, 'It is a truth', 4);
    expect(onB.status).toBe(503);
    const onA = await complete(a, 'It is a truth', 4);
    expect(onA.status).toBe(200);
    expect(onA.route).toHaveLength(3);
  });

  it('a process serving another CONTEXT is left out by name, though its plain stage files are the same bytes (before: it took the other’s volunteers, built for 48 positions, for a 60-token prompt)', async () => {
    const { lines, logger } = logLines();
    const c = await twoMisconfigured({ stages: 1, contextEach: [48, undefined] }, logger);
    servers.push(...c.servers);
    const [a, b] = c.servers as [SignalServer, SignalServer];
    // A plain graph holds no positions: the same files, so only the context tells the two apart.
    expect(a.coordinator?.swarmSettings).not.toBe(b.coordinator?.swarmSettings);
    volunteers.push(new NodeVolunteer(a.address().url, { clientKey: 'context-48-volunteer' }));
    await until('a has its volunteer ready', () => a.coordinator?.volunteers().filter((x) => x.ready).length === 1);
    await until('both say why they leave the other out', () => lines.filter((l) => l.includes('serves other settings')).length >= 2);
    expect(lines.find((l) => l.includes(`process ${procOf(a)} serves other settings`))).toMatch(/context\\?":48.*GRAPH and CONTEXT/);
    await new Promise((r) => setTimeout(r, 500));
    expect(b.coordinator?.volunteers()).toEqual([]);
    expect((await complete(b, 'It is a truth', 4)).status).toBe(503);
    expect((await complete(a, 'It is a truth', 4)).status).toBe(200);
  });
});
