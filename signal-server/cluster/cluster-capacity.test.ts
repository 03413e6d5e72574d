// Every process of a cluster plans the same re-balancing moves (in id order) and carries out those of its own
// volunteers: real servers on port 0, a real redis-server, raw Socket.IO volunteers that say what they can hold.
// A red-team pass found the processes planning different moves: a volunteer's capacity was not published, so the
// others took it for able to hold any stage. With a volunteer that binds only the middle stage's buffers on one
// process, that process skipped it and picked another process's volunteer, the other process picked it, nobody
// moved, and a stage short of r stayed short (every request refused) until somebody new joined.
import { describe, expect, it } from 'vitest';
import type { VolunteerCapacity } from '../../shared/protocol/messages.js';
import { PROTOCOL_VERSION } from '../../shared/protocol/version.js';
import type { SignalServer } from '../server.js';
import { clusterTestFile, startCluster, until } from '../testing/cluster-servers.js';
import { type Client, connectClient, next } from '../testing/socket-client.js';

const MODEL = 'fixtures/models/tiny-untied';
/** A WebGPU adapter that binds the middle stage's buffers (49 152 bytes) but not the embedding's or the head's. */
const MIDDLE_ONLY: VolunteerCapacity = { deviceMemoryGiB: 8, maxBufferBytes: 100_000, maxStorageBindingBytes: 100_000 };

const f = clusterTestFile('cluster-capacity');

interface Joined {
  readonly c: Client;
  readonly id: string;
  readonly stage: number;
}

describe('re-balancing across the processes of a cluster', () => {
  it.each(['a', 'b'] as const)(
    'a stage left short of r is made good when a volunteer that holds one stage only is on process %s',
    async (narrowOn) => {
      const clients: Client[] = [];
      let joined = 0;
      const c = await startCluster(2, f.redisUrl, {
        model: MODEL,
        stages: 3,
        redundancy: 2,
        routeWaitMs: 1_000,
        cache: f.cache,
        volunteerIds: () => `volunteer-${String(joined++).padStart(3, '0')}`,
      });
      f.servers.push(...c.servers);
      const [a, b] = c.servers as [SignalServer, SignalServer];
      const hello = async (server: SignalServer, address: string, key: string, capacity?: VolunteerCapacity): Promise<Joined> => {
        const client = connectClient(server.address().url, { protocol: PROTOCOL_VERSION, role: 'volunteer' }, address);
        clients.push(client);
        const welcome = next<{ volunteerId: string }>(client, 'volunteer:welcome');
        const assign = next<{ stage: number }>(client, 'volunteer:assign');
        client.emit('volunteer:hello', {
          backend: capacity === undefined ? 'wasm' : 'webgpu',
          adapter: null,
          fault: null,
          clientKey: key,
          ...(capacity === undefined ? {} : { capacity }),
        });
        return { c: client, id: (await welcome).volunteerId, stage: (await assign).stage };
      };
      const leave = (j: Joined) => {
        j.c.disconnect();
        clients.splice(clients.indexOf(j.c), 1);
      };
      const settle = () =>
        until(
          'both processes see every volunteer',
          () => [a, b].every((s) => s.coordinator?.status().volunteers === clients.length),
          10_000,
        );
      const perStage = () => [a, b].map((s) => s.coordinator?.registry.replicasPerStage().join('/'));
      try {
        const base = narrowOn === 'a' ? 100 : 140;
        // Placed by fewest clients, the lowest stage first: stage 0 {v0, v3}, stage 1 {v1, v4}, stage 2 {v2, v5}.
        const vs: Joined[] = [];
        for (const [i, s] of [a, b, a, a, b, a].entries()) {
          vs.push(await hello(s, `127.0.0.${base + i}`, `capacity-v${i}-${base}`));
          await settle();
        }
        expect(vs.map((v) => v.stage)).toEqual([0, 1, 2, 0, 1, 2]);
        // A third volunteer of stage 1 that can hold stage 1 only, its id after stage 1's two others' (every process
        // plans in id order, the last first): the ids are named in joining order.
        const narrow = await hello(narrowOn === 'a' ? a : b, `127.0.0.${base + 10}`, `capacity-n-${base}`, MIDDLE_ONLY);
        expect(narrow.stage).toBe(1);
        expect([narrow.id, (vs[1] as Joined).id, (vs[4] as Joined).id].sort().at(-1)).toBe(narrow.id);
        await settle();
        await until('both processes see stage 1 with three', () => perStage().every((p) => p === '2/3/2'), 10_000);
        // A replica of stage 0 leaves: one of stage 1's plain volunteers must move there, whichever process holds it.
        leave(vs[3] as Joined);
        await until('stage 0 made good on both processes', () => perStage().every((p) => p === '2/2/2'), 10_000);
        expect((narrowOn === 'a' ? a : b).coordinator?.registry.get(narrow.id)?.stage).toBe(1);
      } finally {
        for (const client of clients) client.disconnect();
      }
    },
    120_000,
  );
});
