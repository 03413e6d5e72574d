// Stages sized to the volunteer, over the real protocol: a real server on
// port 0, Node volunteers that speak Socket.IO and compute with onnxruntime,
// requests over the HTTP API, tokens against the reference runner. The tiny
// fixture in 3 stages, f32: the embedding (stage 0) and the head (stage 2) are
// 393 216-byte buffers, every layer's past keys at 512 positions 49 152 bytes.
import { describe, expect, it } from 'vitest';
import { faultBehaviour } from '../shared/swarm/faults.js';
import { httpSwarm } from './testing/http-swarm.js';
import type { NodeVolunteer } from './testing/node-volunteer.js';

const { start, volunteer, readyCount, joinAll, complete } = httpSwarm('capacity-placement');

const READY_MS = 90_000;
const TEST_MS = 300_000;
/** A WebGPU adapter that binds the middle stage's buffers (49 152 bytes) but not the embedding or the head. */
const MIDDLE_ONLY = { deviceMemoryGiB: 8, maxBufferBytes: 100_000, maxStorageBindingBytes: 100_000 };

describe('placement by capacity over Socket.IO', () => {
  it(
    'a WebGPU volunteer whose adapter binds no stage is refused with ERR_CAPACITY; one that binds the middle stage only is placed there and serves',
    async () => {
      const { server, url, expected } = await start(3, 2);
      const coordinator = server.coordinator;
      if (coordinator === null) throw new Error('no coordinator');
      await joinAll(url, 6, 40);
      const pinhole = volunteer(url, '127.0.0.50', {
        backend: 'webgpu',
        capacity: { deviceMemoryGiB: 8, maxBufferBytes: 40_000, maxStorageBindingBytes: 1 << 30 },
      });
      await expect.poll(() => pinhole.errors.length, { timeout: READY_MS }).toBeGreaterThan(0);
      expect(pinhole.errors[0]?.code).toBe('ERR_CAPACITY');
      expect(pinhole.errors[0]?.message).toContain('binds buffers of at most 40000 bytes');
      expect(pinhole.stage).toBeNull();
      expect(coordinator.registry.size).toBe(6);
      // Every stage has 2: by index it would go to stage 0; it can hold stage 1 only.
      const narrow = volunteer(url, '127.0.0.51', { backend: 'webgpu', capacity: MIDDLE_ONLY });
      await expect.poll(() => readyCount(url), { timeout: READY_MS }).toBe(7);
      expect(narrow.stage).toBe(1);
      // Unreported limits on WebGPU are WebGPU's guaranteed ones (128 MiB): every stage here fits, stage 0 is the emptiest.
      const plain = volunteer(url, '127.0.0.52', { backend: 'webgpu' });
      await expect.poll(() => readyCount(url), { timeout: READY_MS }).toBe(8);
      expect(plain.stage).toBe(0);
      const r = await complete(url);
      expect(r.status).toBe(200);
      expect(r.body.webswarm?.tokens).toEqual(expected);
    },
    TEST_MS,
  );

  it(
    "hostile: one client's sockets lie about capacity to crowd the middle stage and answer wrongly; no route has two of them in a stage, honest volunteers all serve, every request answers the reference",
    async () => {
      const { server, url, expected } = await start(3, 3);
      const coordinator = server.coordinator;
      if (coordinator === null) throw new Error('no coordinator');
      // Four sockets from one address (one client), each claiming an adapter that binds the middle stage only, all computing noise.
      const attacker: NodeVolunteer[] = Array.from({ length: 4 }, (_, i) =>
        volunteer(url, '127.0.0.99', { backend: 'webgpu', capacity: MIDDLE_ONLY, fault: faultBehaviour('noise', 7 + i) }),
      );
      await expect.poll(() => attacker.every((a) => a.stage !== null), { timeout: READY_MS }).toBe(true);
      // The lever exists (README says so): the claim puts all four on stage 1 ...
      for (const a of attacker) expect(a.stage).toBe(1);
      // ... where they count as one client: honest newcomers still come to stage 1 until it has r = 3 distinct clients.
      const honest: NodeVolunteer[] = [];
      for (let i = 0; i < 9; i++) {
        const v = volunteer(url, `127.0.0.${60 + i}`);
        honest.push(v);
        await expect.poll(() => v.stage, { timeout: READY_MS }).not.toBeNull();
      }
      const perStage = [0, 1, 2].map((s) => honest.filter((v) => v.stage === s).length);
      expect(perStage[1]).toBeGreaterThanOrEqual(2);
      for (const n of perStage) expect(n).toBeGreaterThanOrEqual(2);
      expect(coordinator.registry.clientsPerStage().every((c) => c >= 3)).toBe(true);
      await expect.poll(() => honest.every((v) => v.ready), { timeout: READY_MS }).toBe(true);
      const attackerIds = new Set(attacker.map((a) => a.id));
      for (let i = 0; i < 3; i++) {
        const r = await complete(url);
        expect(r.body.error).toBeUndefined();
        expect(r.status).toBe(200);
        expect(r.body.webswarm?.tokens).toEqual(expected);
        expect(r.body.webswarm?.verified).toBe(true);
        const route = (r.body as { webswarm?: { route?: string[][] } }).webswarm?.route ?? [];
        expect(route.length).toBe(3);
        // One replica of a stage per client: never two of its sockets, so never a majority of r = 3.
        for (const stage of route) expect(stage.filter((id) => attackerIds.has(id)).length).toBeLessThanOrEqual(1);
      }
      // Honest ones are never refused nor evicted (their only errors: signals to a peer whose session had ended).
      for (const v of honest) expect(v.errors.filter((e) => e.code !== 'ERR_NOT_LINKED')).toEqual([]);
      for (const v of honest) expect(coordinator.registry.get(v.id as string)).toBeDefined();
    },
    TEST_MS,
  );
});
