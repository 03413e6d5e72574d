// A replica that refuses a session as full (ERR_REPLICA_FULL): honest when it
// holds the sessions a replica keeps, which happens with several servers (each
// counts another's sessions a publication late), and then neither a no-show
// nor the end of the request; a lie when it holds fewer, and then a strike as
// before. Real servers on port 0 (joined by a real redis-server), real-protocol
// Node volunteers computing with onnxruntime; the liar speaks the protocol.
import { beforeAll, describe, expect, it } from 'vitest';
import type { StepFailure } from '../../shared/protocol/messages.js';
import { MAX_SESSIONS_PER_REPLICA } from '../../shared/swarm/replica-core.js';
import type { SignalServer } from '../server.js';
import { CLUSTER_TIMINGS, clusterTestFile, complete, referenceTokens, startCluster, until } from '../testing/cluster-servers.js';
import { httpSwarm } from '../testing/http-swarm.js';
import { NodeVolunteer } from '../testing/node-volunteer.js';
import type { Cluster } from './cluster.js';

const MODEL = 'fixtures/models/tiny-untied';
const PROMPT = 'It is a truth universally acknowledged';
const TOKENS = 8;
/** Requests said to each of two servers at once: together more than one replica keeps. */
const BURST = 12;

let expected: number[];
const f = clusterTestFile('full-refusals');
const { servers, volunteers } = f;
const one = httpSwarm('full-refusals-one');

beforeAll(async () => {
  [expected = []] = await referenceTokens(MODEL, 1, f.cache, PROMPT, TOKENS);
});

/** Counts the refusals as full that `v` sends. */
function countFull(v: NodeVolunteer): { n: number } {
  const counted = { n: 0 };
  v.socket.onAnyOutgoing((event: string, m: unknown) => {
    if (event === 'step:failed' && (m as StepFailure).code === 'ERR_REPLICA_FULL') counted.n += 1;
  });
  return counted;
}

/** Makes `v` refuse every session as full, whatever it holds (over the real protocol, after it is ready). */
function lieFull(v: NodeVolunteer): void {
  v.socket.removeAllListeners('session:open');
  v.socket.on('session:open', ({ sessionId }) =>
    v.socket.emit('step:failed', { sessionId, step: 0, code: 'ERR_REPLICA_FULL', message: 'this replica keeps 16 sessions open already' }),
  );
}

describe('refusals as full', () => {
  it(`an honest replica asked by two servers at once for ${2 * BURST} sessions (it keeps ${MAX_SESSIONS_PER_REPLICA}) refuses the rest, is not evicted, and every request is served`, async () => {
    const c = await startCluster(2, f.redisUrl, { model: MODEL, stages: 1, redundancy: 1, cache: f.cache, routeWaitMs: 20_000 });
    servers.push(...c.servers);
    const [a, b] = c.servers as [SignalServer, SignalServer];
    // Slowed (100 ms a step) so that its sessions stay open while the others are asked.
    const v = new NodeVolunteer(b.address().url, { clientKey: 'full-honest-replica', fault: { delayMs: 100, output: (_s, d) => d } });
    volunteers.push(v);
    await until('a sees it ready', () => a.coordinator?.volunteers().filter((x) => x.ready).length === 1);
    const refusals = countFull(v);
    const asked = [a, b].flatMap((s) => Array.from({ length: BURST }, () => complete(s, PROMPT, TOKENS)));
    const results = await Promise.all(asked);
    // Before: a and b each saw room for 12 and asked; 8 refused as full were 8 no-shows, the replica was evicted
    // at its third, and all 24 requests failed (ERR_NO_QUORUM, ERR_NO_ROUTE).
    expect(refusals.n).toBeGreaterThan(0);
    expect(results.map((r) => r.code ?? r.status)).toEqual(results.map(() => 200));
    for (const r of results) expect(r.tokens).toEqual(expected);
    expect(v.errors).toEqual([]);
    expect(b.coordinator?.volunteers().map((x) => x.id)).toEqual([v.id]);
    // Its server counted each refusal its due, none a no-show.
    const metrics = await (await fetch(`${b.address().url}/metrics`)).text();
    expect(metrics).toMatch(new RegExp(`^webswarm_full_refusals_total\\{judged="due"\\} ${refusals.n}$`, 'm'));
    expect(metrics).not.toMatch(/judged="no_show"/);
  });

  it('a replica that refused as full counts as full at the coordinating server for a few publications, then as its server publishes it', async () => {
    // Re-read in full only once a minute: what ends the mark is the mark's own time, not the re-read.
    const c = await startCluster(2, f.redisUrl, { model: MODEL, stages: 1, redundancy: 1, cache: f.cache, timings: { resyncMs: 60_000 } });
    servers.push(...c.servers);
    const [a, b] = c.servers as [SignalServer, SignalServer];
    const v = new NodeVolunteer(b.address().url, { clientKey: 'full-marked-replica' });
    volunteers.push(v);
    await until('a sees it ready', () => a.coordinator?.volunteers().filter((x) => x.ready).length === 1);
    const cluster = a.coordinator?.cluster as Cluster;
    const id = v.id as string;
    expect(cluster.sessionsOf(id, 0)).toBe(0);
    // A session of a's it refused as full (one that came and went on b between two publications leaves b's count as it was).
    const t0 = Date.now();
    cluster.noShow(id, 1, 'full');
    expect(cluster.sessionsOf(id, 0)).toBe(MAX_SESSIONS_PER_REPLICA);
    // Before: full here until b published a change or the re-read, a minute later.
    await until('it counts as its server published it again', () => cluster.sessionsOf(id, 0) === 0, 5_000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(5 * CLUSTER_TIMINGS.publishMs);
    expect((await complete(a, PROMPT, TOKENS)).tokens).toEqual(expected);
  });

  it('a replica of one server that says it is full while it holds no session is a no-show, and three evict it', async () => {
    const { url, server } = await one.start(1, 1, { routeWaitMs: 3_000 });
    const [liar] = await one.joinAll(url, 1, 2);
    lieFull(liar as NodeVolunteer);
    const r = await one.complete(url);
    expect(r.status).toBe(503);
    await until('it is evicted', () => (liar as NodeVolunteer).errors.some((e) => e.code === 'ERR_EVICTED'));
    expect((liar as NodeVolunteer).errors[0]?.message).toMatch(/last: did not join session \d+ \(refused it as full, holding 0 sessions\)/);
    expect(server.coordinator?.volunteers()).toEqual([]);
    expect(await (await fetch(`${url}/metrics`)).text()).toMatch(/^webswarm_full_refusals_total\{judged="no_show"\} [3-9]$/m);
  });

  it("a replica that says so to another server's sessions is judged by its own server the same way", async () => {
    const c = await startCluster(2, f.redisUrl, { model: MODEL, stages: 1, redundancy: 1, cache: f.cache, routeWaitMs: 3_000 });
    servers.push(...c.servers);
    const [a, b] = c.servers as [SignalServer, SignalServer];
    const liar = new NodeVolunteer(b.address().url, { clientKey: 'full-lying-replica' });
    volunteers.push(liar);
    await until('a sees it ready', () => a.coordinator?.volunteers().filter((x) => x.ready).length === 1);
    lieFull(liar);
    // a asks it, hears "full", and tells b, which saw every session opened on it: none.
    for (let i = 0; i < 3 && !liar.errors.some((e) => e.code === 'ERR_EVICTED'); i++)
      expect((await complete(a, PROMPT, TOKENS)).status).toBe(503);
    await until('b evicts it', () => liar.errors.some((e) => e.code === 'ERR_EVICTED'));
    expect(liar.errors[0]?.message).toMatch(/\(refused it as full, holding 0 sessions\)/);
  });
});
