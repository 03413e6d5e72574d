// What the bus tells while a connection is down is lost (Redis's pub/sub delivers at most once): real servers on
// port 0 joined by a real redis-server on loopback, node volunteers (real socket.io clients computing with
// onnxruntime) and requests over the HTTP API. A hook on one process's publications cuts the others' subscribing
// connections (CLIENT KILL TYPE pubsub) just before the message is sent, so the loss does not hang on timing (a
// red-team pass lost them with plain cuts and restarts, 2 and 3 times in 3).
// - Before, a ban told in a cut never reached the other process: the liar's tab there kept its seat, and its key
//   connected there freely. A ban is read again from Redis at every resync now.
// - Before, bans were lost with a Redis that came back empty: a process started after it took the liar's key for
//   clean. A process whose connection comes back writes the bans it knows again where Redis holds fewer.
// - Before, a re-partition plan told in a cut split the cluster for good: the leader served the cut, the other the
//   configured partition, and after ELSEWHERE_LIMIT_MS each dropped the other's volunteers (requests there: 503).
//   The partition record is read again at every resync now.
// - Before, a verdict on a volunteer of another process was only told to its process: lost, it counted nowhere. The
//   process that ran the vote counts it into the client's record in Redis now.
// - Before, a volunteer's join lost so was a no-show: an honest volunteer was struck for each, and evicted and banned
//   at the third. A no-show across a lost connection (of the process that ran the session, or of the one that
//   forwarded the join) is not counted now.
// - Before, a volunteer whose `gone` was lost stayed listed, routed to and waited for, until the receiver's settling
//   was over. A process sent a message for a volunteer not connected to it says it gone again now.
// - Before, a lost unlink left two volunteers free to signal each other through their server for as long as both
//   stayed. Each process tells the others the links its sessions hold with their volunteers at every resync now.
import { createClient } from 'redis';
import { beforeAll, describe, expect, it } from 'vitest';
import type { FaultBehaviour } from '../../shared/swarm/faults.js';
import type { SignalServer } from '../server.js';
import {
  type CLUSTER_TIMINGS,
  type ClusterShape,
  clusterOf,
  clusterTestFile,
  complete,
  joinCluster,
  joinVolunteers,
  partitionOf,
  procOf,
  referenceTokens,
  startCluster,
  until,
} from '../testing/cluster-servers.js';
import { NodeVolunteer, type NodeVolunteerOptions } from '../testing/node-volunteer.js';
import { serverLog } from '../testing/server-log.js';

const MODEL = 'fixtures/models/tiny-untied';
const PROMPT = 'It is a truth universally acknowledged';
const TOKENS = 4;
/** tiny-untied's layers: cut into one stage, they are 0-3. */
const ONE_STAGE = '0-3';

const f = clusterTestFile('lost-messages');
let expected: number[] = [];
beforeAll(async () => {
  [expected = []] = await referenceTokens(MODEL, 2, f.cache, PROMPT, TOKENS);
});

type Publish = (channel: string, m: { t: string }) => void;

/**
 * Cuts every subscribing connection just before `server` publishes a message of type `t` (then sends it, lost to
 * the others; with `drop`, not at all: a subscriber that came back at once under load still never hears it);
 * returns how many were cut so. The hook replaces the process's publication (a test's fault).
 */
async function cutBefore(
  server: SignalServer,
  t: string,
  which: (m: { t: string }) => boolean = () => true,
  drop = false,
): Promise<{ cuts: () => number; close: () => Promise<void> }> {
  const raw = createClient({ url: f.redisUrl });
  await raw.connect();
  const link = (clusterOf(server) as unknown as { redis: { publish: Publish } }).redis;
  const publish = link.publish.bind(link);
  const pending: Promise<unknown>[] = [];
  link.publish = (channel, m) => {
    if (m.t !== t || !which(m)) return publish(channel, m);
    pending.push(raw.sendCommand(['CLIENT', 'KILL', 'TYPE', 'pubsub']).then(() => (drop ? undefined : publish(channel, m))));
  };
  return {
    cuts: () => pending.length,
    close: async () => {
      link.publish = publish;
      await Promise.all(pending);
      raw.destroy();
    },
  };
}

/** As cutBefore, for the reports of `event` that `server` forwards to the process that coordinates the session. */
function cutBeforeReport(server: SignalServer, event: string) {
  return cutBefore(server, 'report', (m) => (m as { event?: string }).event === event);
}

/** Every output shifted by 3: a lie each step. */
const LIAR: FaultBehaviour = { delayMs: 0, output: (_step, d) => d.map((x) => x + 3) };

/**
 * Two servers a and b of a new cluster serving one stage (r = 1), and one volunteer on b (with `options`) that a
 * lists ready: a's requests run on it. `seen`: whether a lists it ready.
 */
async function volunteerOnB(clientKey: string, options: NodeVolunteerOptions, timings?: Partial<typeof CLUSTER_TIMINGS>) {
  const log = serverLog('info');
  const c = await startCluster(2, f.redisUrl, {
    model: MODEL,
    stages: 1,
    redundancy: 1,
    routeWaitMs: 3_000,
    cache: f.cache,
    logger: log.logger,
    ...(timings === undefined ? {} : { timings }),
  });
  f.servers.push(...c.servers);
  const [a, b] = c.servers as [SignalServer, SignalServer];
  const v = new NodeVolunteer(b.address().url, { clientKey, ...options });
  f.volunteers.push(v);
  const seen = () => a.coordinator?.volunteers().some((x) => x.id === v.id && x.ready) === true;
  await until('a sees it ready', seen, 60_000);
  return { a, b, v, log, seen };
}

const answered = (v: NodeVolunteer) => v.id !== null || v.errors.length > 0;

describe('what the bus told while a connection was down', () => {
  it("a ban told in a cut reaches the other process: the liar's tab there is cut off, and its key refused there", async () => {
    const shape = { model: MODEL, stages: 1, redundancy: 1, cache: f.cache };
    const c = await startCluster(2, f.redisUrl, shape);
    f.servers.push(...c.servers);
    const [a, b] = c.servers as [SignalServer, SignalServer];
    // A tab of the client on b, seated before the ban.
    const tab = new NodeVolunteer(b.address().url, { clientKey: 'lost-ban-client', localAddress: '127.0.0.171' });
    f.volunteers.push(tab);
    await until('the tab is seated on b', () => tab.id !== null);
    const hook = await cutBefore(a, 'ban');
    try {
      clusterOf(a).bans.ban('key:lost-ban-client');
      expect(hook.cuts()).toBe(1);
      await until('b bans the key', () => clusterOf(b).bans.banned('key:lost-ban-client'), 10_000);
      await until('the tab on b is cut off', () => tab.errors.some((e) => e.code === 'ERR_BANNED'), 10_000);
      const again = new NodeVolunteer(b.address().url, { clientKey: 'lost-ban-client', localAddress: '127.0.0.172' });
      f.volunteers.push(again);
      await until('its next connection is answered', () => answered(again));
      expect(again.errors.map((e) => e.code)).toContain('ERR_BANNED');
    } finally {
      await hook.close();
    }
  });

  it('a ban outlives a Redis that came back empty: a process started after it refuses the key', async () => {
    const log = serverLog('info');
    const shape = { model: MODEL, stages: 1, redundancy: 1, cache: f.cache };
    const c = await startCluster(1, f.redisUrl, { ...shape, logger: log.logger });
    f.servers.push(...c.servers);
    const a = c.servers[0] as SignalServer;
    clusterOf(a).bans.ban('key:restart-ban-client');
    await f.stopRedis();
    await f.startRedis();
    await until('a is back', () => log.lines.some((l) => l.includes('connected again after')));
    const raw = createClient({ url: f.redisUrl });
    await raw.connect();
    try {
      const bans = `${c.prefix}:bans-until`;
      const deadline = Date.now() + 10_000;
      while ((await raw.zScore(bans, 'key:restart-ban-client')) === null && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 100));
      expect(await raw.zScore(bans, 'key:restart-ban-client'), 'the ban is in Redis again').not.toBeNull();
    } finally {
      raw.destroy();
    }
    const later = await joinCluster(c.prefix, 1, f.redisUrl, shape);
    f.servers.push(later);
    expect(clusterOf(later).bans.banned('key:restart-ban-client')).toBe(true);
    const liar = new NodeVolunteer(later.address().url, { clientKey: 'restart-ban-client', localAddress: '127.0.0.173' });
    f.volunteers.push(liar);
    await until('the liar is answered', () => answered(liar));
    expect(liar.errors.map((e) => e.code)).toContain('ERR_BANNED');
  });

  it('an honest volunteer whose joins are lost in cuts is never struck: it serves on, and answers with the reference', async () => {
    // a's requests open their sessions on b's volunteer, and b forwards its joins to a.
    const { a, b, v, log, seen } = await volunteerOnB('lost-join-client', { localAddress: '127.0.0.175' });
    // Each join is lost: the subscribers are cut as b forwards it (three times: before, the third evicted it and
    // banned its key on both processes).
    const hook = await cutBeforeReport(b, 'session:joined');
    try {
      for (let i = 0; i < 3; i++) {
        await until('a sees it ready', seen, 30_000);
        await complete(a, PROMPT, TOKENS);
      }
      expect(hook.cuts()).toBe(3);
    } finally {
      await hook.close();
    }
    const strikes = log.lines.filter((l) => l.includes(`volunteer ${v.id} did not join`));
    expect(strikes).toEqual([]);
    expect(
      log.lines.filter((l) => l.includes(`volunteer ${v.id}'s no-show`) && l.includes('is not counted')).length,
    ).toBeGreaterThanOrEqual(1);
    expect(v.errors.map((e) => e.code)).toEqual([]);
    expect(clusterOf(b).bans.banned('key:lost-join-client')).toBe(false);
    await until('a sees it ready', seen, 30_000);
    const r = await complete(a, PROMPT, TOKENS);
    expect(r.code).toBeUndefined();
    expect(r.tokens).toEqual(expected);
  }, 180_000);

  it('a volunteer that never joins is excused only the session a cut crossed: its next three no-shows evict it and ban its key', async () => {
    // A hostile volunteer on b: it takes a's sessions and never says it joined.
    const { a, b, v, log, seen } = await volunteerOnB('lost-silent-client', { localAddress: '127.0.0.185', joins: false });
    // The first session's open crosses a cut of the subscribers: its no-show is not counted.
    const hook = await cutBefore(a, 'send', (m) => (m as { event?: string }).event === 'session:open');
    try {
      await complete(a, PROMPT, TOKENS);
      expect(hook.cuts()).toBe(1);
    } finally {
      await hook.close();
    }
    await until('the excuse is said', () =>
      log.lines.some((l) => l.includes(`volunteer ${v.id}'s no-show`) && l.includes('is not counted')),
    );
    // No loss since: each session it misses is a strike; the third evicts it.
    for (let i = 0; i < 3 && !v.errors.some((e) => e.code === 'ERR_EVICTED'); i++) {
      await until('a sees it ready', seen, 30_000);
      await complete(a, PROMPT, TOKENS);
    }
    await until('it is evicted', () => v.errors.some((e) => e.code === 'ERR_EVICTED'));
    const strikes = log.lines.filter((l) => l.includes(`volunteer ${v.id} did not join`));
    expect(strikes).toHaveLength(3);
    expect(strikes[2]).toMatch(/\(3 of 3 no-shows/);
    await until('its key is banned on both', () => [a, b].every((s) => clusterOf(s).bans.banned('key:lost-silent-client')));
  }, 180_000);

  it("a session's close lost in a cut is ended all the same: a volunteer that holds one session at a time serves the next requests on both processes", async () => {
    const { a, b } = await volunteerOnB('lost-close-client', { localAddress: '127.0.0.176', sessions: 1 });
    // a's request runs on b's volunteer; the session's close, relayed through b, is lost.
    const hook = await cutBefore(a, 'send', (m) => (m as { event?: string }).event === 'session:close');
    try {
      const first = await complete(a, PROMPT, TOKENS);
      expect(first.tokens).toEqual(expected);
      await until('the close was cut', () => hook.cuts() === 1);
    } finally {
      await hook.close();
    }
    // Before: b counted the volunteer in that session for good (and the volunteer held it open): every later
    // request on either process was refused (ERR_BUSY).
    for (const s of [a, b, a]) {
      const r = await complete(s, PROMPT, TOKENS);
      expect(r.code).toBeUndefined();
      expect(r.tokens).toEqual(expected);
    }
  }, 120_000);

  it('a volunteer whose gone is lost in a cut is forgotten at the first message sent to it, not after the settling', async () => {
    // Settling (2 × deadAfterMs + reconnectMaxMs) of 20 s: before, a listed a volunteer that left b for that long
    // after a cut, routed its requests to it and waited for its join.
    const { a, b, v } = await volunteerOnB('lost-gone-client', { localAddress: '127.0.0.186' }, { deadAfterMs: 10_000 });
    const listed = () => a.coordinator?.volunteers().some((x) => x.id === v.id) === true;
    const hook = await cutBefore(b, 'gone', () => true, true);
    try {
      await v.close();
      await until('the gone was cut', () => hook.cuts() === 1);
    } finally {
      await hook.close();
    }
    const linkOf = (s: SignalServer) => (clusterOf(s) as unknown as { redis: { down: boolean } }).redis;
    await until('both connections are back', () => !linkOf(a).down && !linkOf(b).down);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(listed()).toBe(true);
    // a's request opens its session on v, through b: b says it gone again, and a forgets it.
    const started = performance.now();
    const first = complete(a, PROMPT, TOKENS);
    await until('a forgets it', () => !listed(), 8_000);
    expect(performance.now() - started).toBeLessThan(8_000);
    const r1 = await first;
    expect(r1.tokens === undefined ? r1.code : r1.tokens).toBeDefined();
    // A volunteer that joins b then serves a's requests with the reference's tokens.
    const w = new NodeVolunteer(b.address().url, { clientKey: 'lost-gone-client-2', localAddress: '127.0.0.187' });
    f.volunteers.push(w);
    await until('a sees the new one ready', () => a.coordinator?.volunteers().some((x) => x.id === w.id && x.ready) === true, 60_000);
    const r2 = await complete(a, PROMPT, TOKENS);
    expect(r2.code).toBeUndefined();
    expect(r2.tokens).toEqual(expected);
  }, 120_000);

  it("a session's unlink lost in a cut is made good: its two volunteers may signal each other no more", async () => {
    // a's sessions run on two volunteers of b, one a stage: each links them for signalling, through b.
    const shape = { model: MODEL, stages: 2, redundancy: 1, cache: f.cache };
    const c = await startCluster(2, f.redisUrl, shape);
    f.servers.push(...c.servers);
    const [a, b] = c.servers as [SignalServer, SignalServer];
    const [v1, v2] = (await joinVolunteers(f, [b, b], [a, b], 'lost-unlink-client', 188)) as [NodeVolunteer, NodeVolunteer];
    const hook = await cutBefore(a, 'unlink');
    try {
      const r = await complete(a, PROMPT, TOKENS);
      expect(r.tokens).toEqual(expected);
      await until('the unlink was cut', () => hook.cuts() >= 1);
    } finally {
      await hook.close();
    }
    const linked = () => b.coordinator?.links.linked(v1.id ?? '', v2.id ?? '') === true;
    // Before: b held the pair linked for as long as both stayed, and relayed whatever one signalled the other.
    await until('b unlinks them', () => !linked(), 10_000);
    const probes: unknown[] = [];
    v2.socket.on('signal', (m: { from: string; data: unknown }) => {
      if (m.from === v1.id) probes.push(m.data);
    });
    v1.socket.emit('signal', { to: v2.id ?? '', data: { probe: 1 } });
    await until('the signal is refused', () => v1.errors.some((e) => e.code === 'ERR_NOT_LINKED'));
    expect(probes).toEqual([]);
    // And the next session links them again: served with the reference's tokens.
    const next = await complete(a, PROMPT, TOKENS);
    expect(next.tokens).toEqual(expected);
  }, 120_000);

  it("a liar's lie judged on another process counts into its client's record though the verdict is lost in a cut", async () => {
    const c = await startCluster(2, f.redisUrl, { model: MODEL, stages: 1, redundancy: 3, cache: f.cache });
    f.servers.push(...c.servers);
    const [a, b] = c.servers as [SignalServer, SignalServer];
    // Two honest volunteers on a, a liar (every output shifted) on b; a runs the vote.
    for (const [i, key] of ['lost-audit-honest-1', 'lost-audit-honest-2'].entries()) {
      const v = new NodeVolunteer(a.address().url, { clientKey: key, localAddress: `127.0.0.${177 + i}` });
      f.volunteers.push(v);
    }
    const liar = new NodeVolunteer(b.address().url, { clientKey: 'lost-audit-liar', localAddress: '127.0.0.179', fault: LIAR });
    f.volunteers.push(liar);
    await until('a sees the three ready', () => (a.coordinator?.volunteers().filter((v) => v.ready).length ?? 0) === 3, 60_000);
    const hook = await cutBefore(a, 'audit');
    try {
      const r = await complete(a, PROMPT, TOKENS);
      expect(r.tokens).toEqual(expected);
      expect(hook.cuts()).toBeGreaterThan(0);
    } finally {
      await hook.close();
    }
    const raw = createClient({ url: f.redisUrl });
    await raw.connect();
    try {
      const record = async () => Number((await raw.hGet(`${c.prefix}:records:lost-audit-liar`, 'disagreed')) ?? 0);
      const deadline = Date.now() + 10_000;
      while ((await record()) === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      // Before: 0 (only told to b, in a cut).
      expect(await record()).toBeGreaterThan(0);
    } finally {
      raw.destroy();
    }
  }, 120_000);

  it('a plan made after Redis lost its plan counter is numbered past the plans served (before, from 1: ignored as old)', async () => {
    const c = await startCluster(2, f.redisUrl, { model: MODEL, stages: 1, redundancy: 1, cache: f.cache });
    f.servers.push(...c.servers);
    const [a, b] = c.servers as [SignalServer, SignalServer];
    const lastPlan = (s: SignalServer) => (clusterOf(s) as unknown as { lastPlan: number }).lastPlan;
    // The partition served (one stage of all layers), planned again: each plan is one more for every process.
    const plan = () => clusterOf(a).publishPlan([{ start: 0, end: 3 }], new Map());
    plan();
    await until('b serves the first plan', () => lastPlan(b) === 1);
    plan();
    await until('b serves the second plan', () => lastPlan(b) === 2);
    const raw = createClient({ url: f.redisUrl });
    await raw.connect();
    try {
      // The counter lost (as with a Redis that came back empty, before any heartbeat raised it again).
      await raw.del(`${c.prefix}:partition-seq`);
    } finally {
      raw.destroy();
    }
    plan();
    await until('b serves the third plan', () => lastPlan(b) === 3);
    expect(lastPlan(a)).toBe(3);
  });

  it("a plan a follower reads from the partition record before the bus's (told late) is served with the leader's placements", async () => {
    const shape = { model: MODEL, stages: 2, redundancy: 1, cache: f.cache, repartition: { holdMs: 600_000 } };
    const c = await startCluster(2, f.redisUrl, shape);
    f.servers.push(...c.servers);
    const [a, b] = c.servers as [SignalServer, SignalServer];
    const vs = await joinVolunteers(f, [b, b], [a, b], 'record-placed', 180, 90_000);
    const ranges = (partitionOf(a) as string).split(',').map((r) => {
      const [start = 0, end = 0] = r.split('-').map(Number);
      return { start, end };
    });
    const stageOnB = (v: NodeVolunteer) => b.coordinator?.registry.get(v.id as string)?.stage;
    const [v0, v1] = vs as [NodeVolunteer, NodeVolunteer];
    // The leader's plan swaps the two volunteers' stages; its bus message comes 2 s late (a busy event loop), after
    // b's resync read the record.
    const want = new Map([
      [v0.id as string, stageOnB(v1) as number],
      [v1.id as string, stageOnB(v0) as number],
    ]);
    const link = (clusterOf(a) as unknown as { redis: { publish: Publish } }).redis;
    const publish = link.publish.bind(link);
    link.publish = (channel, m) => {
      if (m.t === 'plan') setTimeout(() => publish(channel, m), 2_000);
      else publish(channel, m);
    };
    try {
      clusterOf(a).publishPlan(ranges, want);
      // Before: b adopted the record's plan without placements, ignored the bus's of the same number, and kept them.
      await until('b places them as the leader planned', () => vs.every((v) => stageOnB(v) === want.get(v.id as string)), 10_000);
    } finally {
      link.publish = publish;
    }
  });

  it('a re-partition plan told in a cut reaches the other process: both serve the cut and answer with the reference', async () => {
    const shape: ClusterShape = {
      model: MODEL,
      stages: 2,
      redundancy: 2,
      routeWaitMs: 20_000,
      cache: f.cache,
      repartition: { holdMs: 3_000 },
      elsewhereLimitMs: 5_000,
    };
    const c = await startCluster(2, f.redisUrl, shape);
    f.servers.push(...c.servers);
    const [a, b] = c.servers as [SignalServer, SignalServer];
    // a leads (the lower number): it plans the cut, and its plan is told in a cut.
    expect(procOf(a)).toBeLessThan(procOf(b));
    const honest = await joinVolunteers(f, [a, b, a, b], [a, b], 'lost-plan', 174, 90_000);
    const hook = await cutBefore(a, 'plan');
    try {
      // Stage 1's volunteer of b leaves: one of r = 2 there, the leader cuts the model into one stage.
      (honest[3] as NodeVolunteer).close();
      await until('a serves the cut', () => partitionOf(a) === ONE_STAGE, 60_000);
      expect(hook.cuts()).toBeGreaterThanOrEqual(1);
      // Before: b stayed on the configured partition for good.
      await until('b serves the cut', () => partitionOf(b) === ONE_STAGE, 60_000);
    } finally {
      await hook.close();
    }
    for (const s of [a, b]) {
      const r = await complete(s, PROMPT, TOKENS);
      expect(r.code).toBeUndefined();
      expect(r.tokens).toEqual(expected);
    }
  }, 240_000);
});
