// The reports a volunteer owes a session another process coordinates: free of
// its socket's event budget as they are on one server (report-allowance.ts),
// and no more than owed. A real fast replica (onnxruntime, the tiny model) on
// one process serving sixteen sessions of another, through a real redis-server.
import { describe, expect, it } from 'vitest';
import { MAX_SESSIONS_PER_REPLICA } from '../../shared/swarm/replica-core.js';
import type { SignalServer } from '../server.js';
import { complete as ask, clusterTestFile, procOf, startCluster, until, watchChannel } from '../testing/cluster-servers.js';
import { NodeVolunteer } from '../testing/node-volunteer.js';

const MODEL = 'fixtures/models/tiny-untied';
const TOKENS = 60;

const f = clusterTestFile('cluster-reports');
const { servers, volunteers } = f;

async function complete(s: SignalServer): Promise<string> {
  return (await ask(s, 'It is a truth', TOKENS)).code ?? 'ok';
}

describe("reports owed to another process's sessions", () => {
  it('lets a fast honest replica serve sixteen sessions of another process at once (its owed reports are not dropped)', async () => {
    const c = await startCluster(2, f.redisUrl, { model: MODEL, stages: 1, redundancy: 1, cache: f.cache });
    servers.push(...c.servers);
    const [a, b] = c.servers as [SignalServer, SignalServer];
    const v = new NodeVolunteer(b.address().url, { clientKey: 'fast-replica-1' });
    volunteers.push(v);
    await until('a sees it ready', () => a.coordinator?.volunteers().filter((x) => x.ready).length === 1);
    // Its digests and logits, a few thousand a second, are what a's sessions asked of it.
    const results = await Promise.all(Array.from({ length: MAX_SESSIONS_PER_REPLICA }, () => complete(a)));
    const dropped = (await (await fetch(`${b.address().url}/metrics`)).text()).match(/^webswarm_socket_events_dropped_total (\d+)/m)?.[1];
    expect({ results, dropped, errors: v.errors }).toEqual({ results: results.map(() => 'ok'), dropped: '0', errors: [] });
  });

  it("lets a replica whose other events spent its budget join another process's session at once", async () => {
    const c = await startCluster(2, f.redisUrl, { model: MODEL, stages: 1, redundancy: 1, cache: f.cache });
    servers.push(...c.servers);
    const [a, b] = c.servers as [SignalServer, SignalServer];
    let flooded = 0;
    const v: NodeVolunteer = new NodeVolunteer(b.address().url, {
      clientKey: 'busy-joiner-1',
      // Right before it joins: over its bucket (bursts of 400), short of a flood (200 dropped), signalling to nobody.
      joins: () => {
        for (; flooded < 500; flooded++) v.socket.emit('signal', { to: 'nobody', data: { sdp: 'x' } });
        return true;
      },
    });
    volunteers.push(v);
    await until('a sees it ready', () => a.coordinator?.volunteers().filter((x) => x.ready).length === 1);
    const t0 = performance.now();
    // Before: its join was dropped with the rest, and the request failed after the join wait (ERR_NO_ROUTE).
    expect(await complete(a)).toBe('ok');
    expect(performance.now() - t0).toBeLessThan(4_000);
    expect(flooded).toBe(500);
    const dropped = (await (await fetch(`${b.address().url}/metrics`)).text()).match(/^webswarm_socket_events_dropped_total (\d+)/m)?.[1];
    expect(Number(dropped)).toBeGreaterThan(0);
    expect(v.errors.map((e) => e.code)).not.toContain('ERR_RATE_LIMITED');
  });

  it("forwards a replica's junk dressed as owed reports no further than its socket's budget allows", async () => {
    const c = await startCluster(2, f.redisUrl, { model: MODEL, stages: 1, redundancy: 1, cache: f.cache });
    servers.push(...c.servers);
    const [a, b] = c.servers as [SignalServer, SignalServer];
    // An honest replica, slowed (100 ms a step) so that its session stays open while it floods.
    const v = new NodeVolunteer(b.address().url, { clientKey: 'junk-replica-1', fault: { delayMs: 100, output: (_s, d) => d } });
    volunteers.push(v);
    await until('a sees it ready', () => a.coordinator?.volunteers().filter((x) => x.ready).length === 1);
    const inbox = await watchChannel(f.redisUrl, `${c.prefix}:proc:${procOf(a)}`);
    const sent = { repeats: 0, beyond: 0 };
    v.socket.once('session:open', ({ sessionId }) => {
      const digest = (step: number) => ({ sessionId, step, stage: 0, digest: [1], input: [1], received: [], resets: 0, computeMs: 1 });
      // The same step again and again (one is owed), then steps no session of this model has.
      for (let i = 0; i < 600; i++, sent.repeats++) v.socket.emit('step:digest', digest(3));
      for (let i = 0; i < 600; i++, sent.beyond++) v.socket.emit('step:digest', digest((a.coordinator?.maxPositions ?? 0) + 100 + i));
    });
    const result = await complete(a);
    await until('it is cut off for flooding', () => v.errors.some((e) => e.code === 'ERR_RATE_LIMITED'), 10_000).catch(() => {});
    const reports = inbox.counts.get('report') ?? 0;
    await inbox.stop();
    // Its budget (a burst of 400, 200 a second) and the few reports it owed before it was cut off: of 1 200 sent,
    // about 400 reach a (408 in a run; 1 200 if every report of a session it is in went free).
    expect(sent).toEqual({ repeats: 600, beyond: 600 });
    expect(reports).toBeLessThan(500);
    expect(v.errors.map((e) => e.code)).toContain('ERR_RATE_LIMITED');
    // Its only replica cut off: the request fails, named.
    expect(['ERR_STEP_TIMEOUT', 'ERR_NO_QUORUM']).toContain(result);
  });
});
