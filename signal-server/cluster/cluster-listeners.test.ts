// A message from Redis that meets a bug in this process (a coordinator method that throws, standing in for one,
// as abuse.test.ts does for the sockets) is dropped, and the process goes on hearing the bus and its inbox: real
// servers on port 0, a real redis-server, raw Socket.IO volunteers. A red-team pass found one throw in a listener
// leaving node-redis's subscribing connection open but deaf for good: bans, joins and reports never arrived again,
// and the deaf process's no-show strikes got the other processes' honest volunteers evicted and banned.
import { createClient } from 'redis';
import { describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../../shared/protocol/version.js';
import type { SignalServer } from '../server.js';
import { clusterTestFile, procOf, startCluster, until } from '../testing/cluster-servers.js';
import { type Client, connectClient, next } from '../testing/socket-client.js';
import { encodeMessage } from './messages.js';

const MODEL = 'fixtures/models/tiny-untied';
const f = clusterTestFile('cluster-listeners');

describe("a cluster process's Redis listeners", () => {
  it('drop a message that meets a bug and go on hearing the bus and the inbox', async () => {
    const clients: Client[] = [];
    const redis = createClient({ url: f.redisUrl });
    await redis.connect();
    try {
      const { servers, prefix } = await startCluster(2, f.redisUrl, { model: MODEL, stages: 3, redundancy: 2, cache: f.cache });
      f.servers.push(...servers);
      const [a, b] = servers as [SignalServer, SignalServer];
      const hello = async (server: SignalServer, n: number): Promise<{ c: Client; id: string }> => {
        const c = connectClient(server.address().url, { protocol: PROTOCOL_VERSION, role: 'volunteer' }, `127.0.0.${200 + n}`);
        clients.push(c);
        const welcome = next<{ volunteerId: string }>(c, 'volunteer:welcome');
        c.emit('volunteer:hello', { backend: 'wasm', adapter: null, fault: null, clientKey: `listeners-${n}` });
        return { c, id: (await welcome).volunteerId };
      };
      const cb = b.coordinator as NonNullable<SignalServer['coordinator']>;
      const own = await hello(b, 0);
      // A bug, met once on the bus (mirroring a volunteer of a) and once in b's inbox (a spot check asked by a).
      let thrown = 0;
      const mirror = cb.mirror.bind(cb);
      cb.mirror = () => {
        thrown += 1;
        throw new Error('a bug in mirror (stand-in)');
      };
      const challengeAgain = cb.challengeAgain.bind(cb);
      cb.challengeAgain = () => {
        thrown += 1;
        throw new Error('a bug in challengeAgain (stand-in)');
      };
      const first = await hello(a, 1);
      await until('the bus message met the bug', () => thrown >= 1, 10_000);
      cb.mirror = mirror;
      const inbox = `${prefix}:proc:${procOf(b)}`;
      await redis.publish(inbox, encodeMessage({ t: 'challenge', proc: procOf(a), id: own.id }));
      await until('the inbox message met the bug', () => thrown >= 2, 10_000);
      cb.challengeAgain = challengeAgain;
      // Still hearing the bus: a's next volunteer, and the first again at a resync, are mirrored.
      const second = await hello(a, 2);
      await until('b mirrors what a publishes after the bug', () => cb.isRemote(second.id) && cb.isRemote(first.id), 10_000);
      // Still hearing its inbox: a's request to disconnect b's own volunteer is carried out.
      const gone = new Promise<void>((resolve) => own.c.once('disconnect', () => resolve()));
      await redis.publish(inbox, encodeMessage({ t: 'disconnect', proc: procOf(a), id: own.id }));
      await gone;
      expect(own.c.connected).toBe(false);
    } finally {
      for (const c of clients) c.disconnect();
      redis.destroy();
    }
  }, 60_000);
});
