// Strikes against a volunteer of another process (several servers through a real redis-server, real Node
// volunteers over Socket.IO): a volunteer its own process moved to another stage is failed over in the other
// processes' sessions, not struck as silent; and only its own process judges its no-shows, over every process's
// sessions. Both were red-team finds: an honest volunteer was evicted and banned cluster-wide.
import { describe, expect, it } from 'vitest';
import type { SignalServer } from '../server.js';
import { clusterTestFile, complete, procOf, startCluster, until } from '../testing/cluster-servers.js';
import { NodeVolunteer } from '../testing/node-volunteer.js';
import { serverLog } from '../testing/server-log.js';
import { type Cluster, parseKeptSessions } from './cluster.js';
import { procOfSession } from './messages.js';

const MODEL = 'fixtures/models/tiny-untied';
const PROMPT = 'It is a truth universally acknowledged';
const f = clusterTestFile('cluster-strikes');

/** A server's cluster seam (its bans), which a server started with REDIS_URL has. */
function clusterOf(s: SignalServer): Cluster {
  const cluster = s.coordinator?.cluster;
  if (cluster === undefined || cluster === null) throw new Error('a server of the cluster has no cluster');
  return cluster as Cluster;
}
const { servers, volunteers } = f;

/** `n` processes of one stage at `redundancy`, their log kept (each test's own). */
async function oneStage(n: number, redundancy: number): Promise<{ log: ReturnType<typeof serverLog>; c: { servers: SignalServer[] } }> {
  const log = serverLog();
  const c = await startCluster(n, f.redisUrl, { model: MODEL, stages: 1, redundancy, cache: f.cache, logger: log.logger });
  servers.push(...c.servers);
  return { log, c };
}

describe('strikes against a volunteer of another process', () => {
  it('one moved to another stage by its own process is failed over in the other process’s sessions: no strike, no eviction', async () => {
    const log = serverLog();
    const c = await startCluster(2, f.redisUrl, {
      model: MODEL,
      stages: 2,
      redundancy: 3,
      routeWaitMs: 5_000,
      cache: f.cache,
      logger: log.logger,
    });
    servers.push(...c.servers);
    const [a, b] = c.servers as [SignalServer, SignalServer];
    // Slow enough that the sessions are still running when the departure moves a volunteer.
    const slow = { fault: { delayMs: 40, output: (_s: number, d: Float32Array) => d } };
    const all: NodeVolunteer[] = [];
    const join = async (name: string, i: number) => {
      const v = new NodeVolunteer(a.address().url, { clientKey: `strikes-${name}-${i}`, localAddress: `127.0.0.${110 + i}`, ...slow });
      volunteers.push(v);
      all.push(v);
      await until(`both see ${name} ${i}`, () => c.servers.every((s) => s.coordinator?.status().volunteers === all.length));
      return v;
    };
    // Emptiest stage first: 1 s0, 2 s1, 3 s0, 4 s1, 5 s0, the leaver s1 (3/3), 7 s0 (4/3).
    const honest: NodeVolunteer[] = [];
    for (let i = 1; i <= 5; i++) honest.push(await join('honest', i));
    const leaver = await join('leaver', 6);
    honest.push(await join('honest', 7));
    const assigned = new Set<NodeVolunteer>();
    for (const v of honest) v.socket.on('volunteer:assign', () => assigned.add(v));
    await until('b sees all 7 ready', () => b.coordinator?.volunteers().filter((v) => v.ready).length === 7, 60_000);
    expect(b.coordinator?.status().replicasPerStage).toEqual([4, 3]);
    // Sessions of b, on a's volunteers.
    const asked = Array.from({ length: 6 }, () => complete(b, PROMPT, 150));
    await until('the sessions run', () => leaver.steps >= 30, 60_000);
    // Stage 1 is short: a moves its newest stage-0 volunteer there, which drops its stage-0 sessions, b's too.
    leaver.socket.disconnect();
    await until('a moves a volunteer', () => assigned.size > 0, 10_000);
    const moved = [...assigned][0] as NodeVolunteer;
    const results = await Promise.all(asked);
    await new Promise((r) => setTimeout(r, 1_000));
    const bans = clusterOf(b).bans;
    expect({
      results: results.map((r) => r.code ?? 'ok'),
      evicted: moved.errors.map((e) => e.code).filter((code) => code === 'ERR_EVICTED' || code === 'ERR_BANNED'),
      connected: moved.socket.connected,
      banned: bans.banned('key:strikes-honest-7') || bans.banned(`key:${moved.id}`),
      strikes: log.lines.filter((l) => l.includes(`${moved.id}`) && /sent too few|no-shows/.test(l)).length,
    }).toEqual({ results: ['ok', 'ok', 'ok', 'ok', 'ok', 'ok'], evicted: [], connected: true, banned: false, strikes: 0 });
  }, 240_000);

  it('its no-shows are judged by its own process over every process’s sessions, not by one process on its own alone', async () => {
    const { log, c } = await oneStage(2, 1);
    const [a, b] = c.servers as [SignalServer, SignalServer];
    const bProc = procOf(b);
    // It misses b's sessions only: 3 misses among 23 sessions, 2 in any 20 (a's window), 3 of 3 in b's own.
    const v = new NodeVolunteer(a.address().url, {
      clientKey: 'strikes-window-1',
      localAddress: '127.0.0.131',
      joins: (m) => procOfSession(m.sessionId) !== bProc,
    });
    volunteers.push(v);
    await until('b sees it ready', () => b.coordinator?.volunteers().filter((x) => x.ready).length === 1, 60_000);
    const codes: string[] = [];
    const miss = async () => codes.push((await complete(b, 'It is', 1)).code ?? 'ok');
    const serve = async (n: number) => {
      for (let i = 0; i < n; i++) codes.push((await complete(a, 'It is', 1)).code ?? 'ok');
    };
    await miss();
    await serve(10);
    await miss();
    await serve(10);
    await miss();
    await new Promise((r) => setTimeout(r, 1_500));
    const counted = log.lines.filter((l) => l.includes(`volunteer ${v.id} did not join`)).map((l) => /\((\d) of 3 no-shows/.exec(l)?.[1]);
    const bans = clusterOf(a).bans;
    // Counted once each, by a: 1, 2, 2 (the first fell out of its last 20 sessions); b counts none of its own.
    expect(counted).toEqual(['1', '2', '2']);
    expect({
      served: codes.filter((x) => x === 'ok').length,
      errors: v.errors.map((e) => e.code),
      connected: v.socket.connected,
      banned: bans.banned('key:strikes-window-1'),
    }).toEqual({ served: 20, errors: [], connected: true, banned: false });
  }, 180_000);

  it('a connection closed two strikes short: its key, back on the other process, takes them up, and its next miss evicts it', async () => {
    const { log, c } = await oneStage(2, 1);
    const [a, b] = c.servers as [SignalServer, SignalServer];
    const KEY = 'strikes-kept-1';
    const connect = (s: SignalServer) => {
      const v = new NodeVolunteer(s.address().url, { clientKey: KEY, localAddress: '127.0.0.132', joins: false });
      volunteers.push(v);
      return v;
    };
    const counted = (v: NodeVolunteer) =>
      log.lines.filter((l) => l.includes(`volunteer ${v.id} did not join`)).map((l) => /\((\d) of 3 no-shows/.exec(l)?.[1]);
    const first = connect(a);
    await until('a sees it ready', () => a.coordinator?.volunteers().filter((x) => x.ready).length === 1, 60_000);
    await complete(a, 'It is', 1);
    await complete(b, 'It is', 1);
    await until('both strikes counted by a', () => counted(first).length === 2);
    expect(counted(first)).toEqual(['1', '2']);
    await first.close();
    await until('both see it gone', () => c.servers.every((s) => s.coordinator?.status().volunteers === 0));
    // Back with its key, on the other process.
    const again = connect(b);
    await until('b sees it ready', () => b.coordinator?.volunteers().filter((x) => x.ready).length === 1, 60_000);
    await until('b takes up its key’s sessions', () =>
      log.lines.some((l) => l.includes(`cluster: volunteer ${again.id} takes up its client's last sessions (2 of its last 20 missed)`)),
    );
    await complete(a, 'It is', 1);
    await until('its strike counted by b', () => counted(again).length === 1);
    // Before: a clean window on b, 1 of 3, and two more strikes for every connection it opened.
    expect(counted(again)).toEqual(['3']);
    await until('it is evicted', () => again.errors.some((e) => e.code === 'ERR_EVICTED'));
    await until('its key is banned on a', () => clusterOf(a).bans.banned(`key:${KEY}`));
  }, 180_000);

  it('a process that restarts keeps what its connected volunteers missed: one two strikes short, moved to the other process, is evicted at its next miss', async () => {
    const { log, c } = await oneStage(2, 1);
    const [a, b] = c.servers as [SignalServer, SignalServer];
    const KEY = 'strikes-restart-1';
    const v = new NodeVolunteer(b.address().url, {
      clientKey: KEY,
      localAddress: '127.0.0.134',
      joins: false,
      reconnect: () => a.address().url,
    });
    volunteers.push(v);
    await until('b sees it ready', () => b.coordinator?.volunteers().filter((x) => x.ready).length === 1, 60_000);
    const first = v.id;
    await complete(b, 'It is', 1);
    await complete(b, 'It is', 1);
    const counted = (id: string | null) =>
      log.lines.filter((l) => l.includes(`volunteer ${id} did not join`)).map((l) => /\((\d) of 3 no-shows/.exec(l)?.[1]);
    await until('both strikes counted by b', () => counted(first).length === 2);
    // b stops (a deploy, say) while it is connected; it connects again, to a.
    servers.splice(servers.indexOf(b), 1);
    await b.close();
    await until(
      'it is back, on a',
      () => v.id !== first && a.coordinator?.volunteers().some((x) => x.id === v.id && x.ready) === true,
      60_000,
    );
    await until('a takes up its key’s sessions', () =>
      log.lines.some((l) => l.includes(`cluster: volunteer ${v.id} takes up its client's last sessions (2 of its last 20 missed)`)),
    );
    await complete(a, 'It is', 1);
    // Before: b wrote nothing as it stopped (its connections ended after it had stopped writing), a clean window on a.
    await until('its strike counted by a', () => counted(v.id).length === 1);
    expect(counted(v.id)).toEqual(['3']);
    await until('its key is banned', () => clusterOf(a).bans.banned(`key:${KEY}`));
  }, 180_000);

  it.each([
    ['silent', false],
    ['after a "my inputs had no majority" failure (which b does not take for a refusal, and still waits)', true],
  ])(
    'one that leaves as another process’s session waits for it to join, %s: its own process strikes it',
    async (_how, noQuorum) => {
      const { log, c } = await oneStage(2, 1);
      const [a, b] = c.servers as [SignalServer, SignalServer];
      const KEY = `strikes-left-${noQuorum ? 2 : 1}`;
      // Never joins; given its third session (b's), it lets it wait a while and closes its connection.
      const first: NodeVolunteer = new NodeVolunteer(a.address().url, {
        clientKey: KEY,
        localAddress: '127.0.0.133',
        joins: (m, n) => {
          if (n !== 2) return false;
          // Before, any failure marked b's session answered at a: a red-team find.
          if (noQuorum)
            first.socket.emit('step:failed', { sessionId: m.sessionId, step: 0, code: 'ERR_NO_QUORUM', message: 'no majority' });
          setTimeout(() => void first.close(), 1_200);
          return false;
        },
      });
      volunteers.push(first);
      await until('a sees it ready', () => a.coordinator?.volunteers().filter((x) => x.ready).length === 1, 60_000);
      await complete(a, 'It is', 1);
      await complete(a, 'It is', 1);
      const struck = () => log.lines.filter((l) => l.includes(`volunteer ${first.id} did not join`));
      await until('two strikes counted by a', () => struck().length === 2);
      // b's session: it leaves before b's join timeout (with no other volunteer, the request fails: ERR_NO_ROUTE). Its own
      // process saw b's session opened on it and not answered: the third strike, evicted as it leaves, key banned.
      expect((await complete(b, 'It is', 1)).code).toBe('ERR_NO_ROUTE');
      await until('a strikes it a third time', () => struck().length === 3);
      expect(struck()[2]).toContain('(3 of 3 no-shows');
      await until('its key is banned on b', () => clusterOf(b).bans.banned(`key:${KEY}`));
      // Before: that miss was counted nowhere (b no longer held it, a held no such session).
    },
    180_000,
  );

  it('one judged a no-show in one of another process’s sessions, which then leaves as a second waits for it: struck for the second', async () => {
    const { log, c } = await oneStage(2, 3);
    const [a, b] = c.servers as [SignalServer, SignalServer];
    for (const i of [1, 2])
      volunteers.push(
        new NodeVolunteer(a.address().url, {
          clientKey: `strikes-judged-honest-${i}`,
          localAddress: `127.0.0.${180 + i}`,
          fault: { delayMs: 300, output: (_s, d) => d },
        }),
      );
    // Never joins; given its second session, it closes its connection 1.2 s later.
    const v: NodeVolunteer = new NodeVolunteer(a.address().url, {
      clientKey: 'strikes-judged-1',
      localAddress: '127.0.0.185',
      joins: (_m, n) => {
        if (n === 1) setTimeout(() => void v.close(), 1_200);
        return false;
      },
    });
    volunteers.push(v);
    await until('all see 3 ready', () => c.servers.every((s) => s.coordinator?.volunteers().filter((x) => x.ready).length === 3), 60_000);
    const struck = () => log.lines.filter((l) => l.includes(`volunteer ${v.id} did not join`));
    // b's long session X judges it a no-show (no spare: it stays in X's route), and goes on with the other two.
    const x = complete(b, 'It is', 60);
    await until('X struck it', () => struck().length === 1, 30_000);
    const y = complete(b, 'It is', 1);
    expect((await y).code).toBeUndefined();
    expect((await x).code).toBeUndefined();
    // Its departure is judged for Y, which waited for it (before, for X, judged already: no strike).
    await until('struck for Y', () => struck().length === 2);
  }, 180_000);

  it('an honest tab closed as a burst of requests of three processes opens on it: one strike, not three', async () => {
    const { log, c } = await oneStage(3, 3);
    const [a, b, d] = c.servers as [SignalServer, SignalServer, SignalServer];
    for (const i of [1, 2])
      volunteers.push(new NodeVolunteer(a.address().url, { clientKey: `strikes-burst-honest-${i}`, localAddress: `127.0.0.${150 + i}` }));
    const KEY = 'strikes-burst-1';
    // The only third replica: in every route. Its user closes it as the third request opens on it.
    const tab: NodeVolunteer = new NodeVolunteer(a.address().url, {
      clientKey: KEY,
      localAddress: '127.0.0.155',
      joins: (_m, n) => {
        if (n === 2) void tab.close();
        return false;
      },
    });
    volunteers.push(tab);
    await until('all see 3 ready', () => c.servers.every((s) => s.coordinator?.volunteers().filter((x) => x.ready).length === 3), 60_000);
    const results = await Promise.all([a, b, d].map((s) => complete(s, 'It is', 4)));
    expect(results.map((r) => r.code ?? 'ok')).toEqual(['ok', 'ok', 'ok']);
    await until('all see it gone', () => c.servers.every((s) => s.coordinator?.status().volunteers === 2));
    const back = new NodeVolunteer(b.address().url, { clientKey: KEY, localAddress: '127.0.0.155' });
    volunteers.push(back);
    await until('b sees it ready', () => b.coordinator?.volunteers().filter((x) => x.ready).length === 3, 60_000);
    await until('b takes up its key’s sessions', () => log.lines.some((l) => l.includes(`cluster: volunteer ${back.id} takes up`)));
    // Before (a miss written by each process whose session waited): 3 taken up, evicted and banned.
    expect(log.lines.find((l) => l.includes(`cluster: volunteer ${back.id} takes up`))).toContain('(1 of its last 20 missed)');
    expect(back.errors).toEqual([]);
    expect(clusterOf(a).bans.banned(`key:${KEY}`)).toBe(false);
  }, 240_000);

  it('misses of tabs of one key on two processes add up: the connection that takes up three is evicted at once', async () => {
    const { log, c } = await oneStage(2, 1);
    const [a, b] = c.servers as [SignalServer, SignalServer];
    const KEY = 'strikes-tabs-1';
    const tab = (s: SignalServer, address: string) => {
      const v = new NodeVolunteer(s.address().url, { clientKey: KEY, localAddress: address, joins: false });
      volunteers.push(v);
      return v;
    };
    const struck = (v: NodeVolunteer) => log.lines.filter((l) => l.includes(`volunteer ${v.id} did not join`)).length;
    // Tab one, on a, misses 2; tab two, on b (open before tab one left: it took up nothing), misses 1.
    const one = tab(a, '127.0.0.134');
    await until('a sees it ready', () => a.coordinator?.volunteers().filter((x) => x.ready).length === 1, 60_000);
    await complete(a, 'It is', 1);
    await complete(a, 'It is', 1);
    await until('two strikes', () => struck(one) === 2);
    const two = tab(b, '127.0.0.135');
    await until('b sees it ready', () => b.coordinator?.volunteers().filter((x) => x.ready).length === 2, 60_000);
    await one.close();
    await until('both see one gone', () => c.servers.every((s) => s.coordinator?.status().volunteers === 1));
    await complete(b, 'It is', 1);
    await until('its strike', () => struck(two) === 1);
    await two.close();
    await until('both see two gone', () => c.servers.every((s) => s.coordinator?.status().volunteers === 0));
    const three = tab(a, '127.0.0.136');
    await until(
      'a takes up three',
      () =>
        log.lines.some((l) => l.includes(`cluster: volunteer ${three.id} takes up its client's last sessions (3 of its last 20 missed)`)),
      60_000,
    );
    await until('it is evicted at once', () => three.errors.some((e) => e.code === 'ERR_EVICTED'));
    await until('its key is banned on b', () => clusterOf(b).bans.banned(`key:${KEY}`));
  }, 180_000);

  it('a tab of the key that took up its sessions and served none writes none back: it cannot age the key’s misses out', async () => {
    const { log, c } = await oneStage(2, 1);
    const [a, b] = c.servers as [SignalServer, SignalServer];
    const KEY = 'strikes-recycle-1';
    const struck = (v: NodeVolunteer) =>
      log.lines.filter((l) => l.includes(`volunteer ${v.id} did not join`)).map((l) => /\((\d) of 3 no-shows/.exec(l)?.[1]);
    const takesUp = (v: NodeVolunteer) => log.lines.find((l) => l.includes(`cluster: volunteer ${v.id} takes up`));
    const tab = (s: SignalServer, joins = true) => {
      const v = new NodeVolunteer(s.address().url, { clientKey: KEY, localAddress: '127.0.0.141', joins });
      volunteers.push(v);
      return v;
    };
    // Once: 20 sessions joined, then closed.
    const clean = tab(a);
    await until('ready', () => a.coordinator?.volunteers().filter((x) => x.ready).length === 1, 60_000);
    for (let i = 0; i < 20; i++) await complete(a, 'It is', 1);
    await clean.close();
    await until('gone', () => c.servers.every((s) => s.coordinator?.status().volunteers === 0));
    // A volunteer of another key (the spare), and a tab of the key on b that misses 2.
    volunteers.push(new NodeVolunteer(a.address().url, { clientKey: 'strikes-recycle-spare', localAddress: '127.0.0.142' }));
    const hostile = tab(b, false);
    await until('both ready', () => a.coordinator?.volunteers().filter((x) => x.ready).length === 2, 60_000);
    await until('it takes up', () => takesUp(hostile) !== undefined);
    for (let i = 0; i < 40 && struck(hostile).length < 2; i++) await complete(i % 2 === 0 ? a : b, 'It is', 1);
    expect(struck(hostile)).toEqual(['1', '2']);
    // A "recycler" tab opened now takes up the 20 joined sessions, serves none, and closes after the hostile tab.
    const recycler = tab(a);
    await until('the recycler takes up', () => takesUp(recycler) !== undefined);
    await hostile.close();
    await until('the hostile tab gone', () => c.servers.every((s) => s.coordinator?.status().volunteers === 2));
    await recycler.close();
    await until('the recycler gone', () => c.servers.every((s) => s.coordinator?.status().volunteers === 1));
    expect(recycler.sessionsOpened).toBe(0);
    // The next tab takes up the 2 misses, and its first miss evicts it (before: the recycler wrote the 20 joined sessions
    // back as the newest, the next tab took up 0, and was struck 1 of 3).
    const again = tab(a, false);
    await until('the next tab takes up', () => takesUp(again) !== undefined);
    expect(takesUp(again)).toContain('(2 of its last 20 missed)');
    for (let i = 0; i < 20 && struck(again).length < 1; i++) await complete(a, 'It is', 1);
    expect(struck(again)).toEqual(['3']);
    await until('it is evicted', () => again.errors.some((e) => e.code === 'ERR_EVICTED'));
  }, 240_000);

  it('reads the sessions kept under a key strictly: malformed entries are left out', () => {
    expect(
      parseKeptSessions(['12:1:1765000000000', '13:0:1765000000001', '14:2:1', '-1:1:1', '1e3:1:1', '15:1 :1', '15:1', '16:1:9']),
    ).toEqual([true, false, true]);
  });
});
