// Placement attacked from outside: raw socket.io clients on distinct loopback
// addresses (127.0.0.x: each a distinct client) against a real server on port
// 0 serving the tiny fixture. Nothing is computed: these attacks are on who
// holds which stage, which the registry decides at hello and at departures.
import { io, type Socket } from 'socket.io-client';
import { describe, expect, it } from 'vitest';
import type { ClientToServerEvents, ServerToClientEvents, StageAssignment } from '../shared/protocol/messages.js';
import { PROTOCOL_VERSION } from '../shared/protocol/version.js';
import { httpSwarm } from './testing/http-swarm.js';

const { start } = httpSwarm('placement-attack');

const WAIT_MS = 10_000;
const TEST_MS = 120_000;

interface Raw {
  readonly socket: Socket<ServerToClientEvents, ClientToServerEvents>;
  /** The stage of its latest assignment; null before the first. */
  stage: number | null;
  id: string | null;
  readonly errors: { code: string; message: string }[];
}

/** A volunteer that says hello from `address` with `clientKey` (and `capacity`, when given) and only records what it is told. */
function raw(url: string, address: string, clientKey: string, capacity?: unknown, backend = 'wasm'): Raw {
  const socket: Socket<ServerToClientEvents, ClientToServerEvents> = io(url, {
    auth: { protocol: PROTOCOL_VERSION, role: 'volunteer' },
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
    localAddress: address,
  } as Parameters<typeof io>[1]);
  const v: Raw = { socket, stage: null, id: null, errors: [] };
  socket.on('server:error', (e: { code: string; message: string }) => v.errors.push(e));
  socket.on('volunteer:welcome', (m: { volunteerId: string }) => {
    v.id = m.volunteerId;
  });
  socket.on('volunteer:assign', (m: StageAssignment) => {
    v.stage = m.stage;
  });
  const hello = { backend, adapter: null, fault: null, clientKey, ...(capacity === undefined ? {} : { capacity }) };
  socket.on('connect', () => (socket as unknown as { emit(e: string, m: unknown): void }).emit('volunteer:hello', hello));
  return v;
}

async function joined(v: Raw): Promise<Raw> {
  await expect.poll(() => v.stage, { timeout: WAIT_MS }).not.toBeNull();
  return v;
}

describe('placement under attack over Socket.IO', () => {
  it(
    "hostile: one client's sockets left alone on a stage after departures do not make it look full; an honest spare moves there",
    async () => {
      const { server, url } = await start(2, 2);
      const coordinator = server.coordinator;
      if (coordinator === null) throw new Error('no coordinator');
      const all: Raw[] = [];
      try {
        // Honest: 0 → stage 0, 1 → stage 1, 2 → stage 0, 3 → stage 1 (fewest clients, lowest index on ties).
        const honest: Raw[] = [];
        for (let i = 0; i < 4; i++) {
          const v = await joined(raw(url, `127.0.0.${40 + i}`, `honest-client-${i}`));
          all.push(v);
          honest.push(v);
        }
        expect(honest.map((v) => v.stage)).toEqual([0, 1, 0, 1]);
        // The attacker: three sockets of one client (one address, one key): stages 0, 1, then 0 again.
        const attacker: Raw[] = [];
        for (let i = 0; i < 3; i++) {
          const v = await joined(raw(url, '127.0.0.99', 'attacker-client'));
          all.push(v);
          attacker.push(v);
        }
        expect(attacker.map((v) => v.stage)).toEqual([0, 1, 0]);
        // The honest ones of stage 0 leave: the attacker's two sockets are all that is left there (one client).
        for (const v of honest.filter((h) => h.stage === 0)) v.socket.disconnect();
        await expect.poll(() => coordinator.registry.size, { timeout: WAIT_MS }).toBe(5);
        // Stage 1 has three clients (two honest): one honest spare must move to stage 0, which has one client.
        await expect.poll(() => coordinator.registry.clientsPerStage()[0], { timeout: WAIT_MS }).toBe(2);
        expect(coordinator.registry.clientsPerStage()[1]).toBeGreaterThanOrEqual(2);
        const stayed = honest.filter((h) => h.socket.connected);
        await expect.poll(() => stayed.filter((v) => v.stage === 0).length, { timeout: WAIT_MS }).toBe(1);
      } finally {
        for (const v of all) v.socket.disconnect();
      }
    },
    TEST_MS,
  );

  it(
    'hostile: malformed capacity claims are refused by name and registered nowhere; extreme ones are clamped; a refuse-and-retry loop leaves honest joins unhurt',
    async () => {
      const { server, url } = await start(3, 2);
      const coordinator = server.coordinator;
      if (coordinator === null) throw new Error('no coordinator');
      const all: Raw[] = [];
      try {
        // JSON carries no NaN or Infinity: they arrive as null (unknown); the rest must be refused with a reason naming the field.
        const malformed: unknown[] = [
          { deviceMemoryGiB: -1 },
          { deviceMemoryGiB: 0 },
          { deviceMemoryGiB: 1e308 },
          { deviceMemoryGiB: '8' },
          { maxBufferBytes: -1 },
          { maxBufferBytes: 2 ** 60 },
          { maxBufferBytes: 1.5 },
          { maxStorageBindingBytes: [1] },
          [8],
          'lots',
        ];
        for (const [i, capacity] of malformed.entries()) {
          const v = raw(url, `127.0.0.${100 + i}`, `malformed-${i}-client`, capacity, 'webgpu');
          all.push(v);
          await expect.poll(() => v.errors.length, { timeout: WAIT_MS }).toBeGreaterThan(0);
          expect(v.errors[0]?.code).toBe('ERR_BAD_MESSAGE');
          expect(v.errors[0]?.message).toMatch(/capacity/);
          expect(v.stage).toBeNull();
        }
        expect(coordinator.registry.size).toBe(0);
        // Extreme but well-formed: counted on for no more than the clamp, placed like anyone.
        const huge = await joined(
          raw(
            url,
            '127.0.0.120',
            'huge-claim-client',
            { deviceMemoryGiB: 4096, maxBufferBytes: 2 ** 53 - 1, maxStorageBindingBytes: 2 ** 53 - 1 },
            'webgpu',
          ),
        );
        all.push(huge);
        const record = coordinator.registry.get(huge.id as string);
        expect(record?.memoryBytes).toBe(64 * 2 ** 30);
        expect(record?.bufferLimitBytes).toBe(64 * 2 ** 30);
        // A claim that holds nothing, retried 30 times from one address: refused each time (ERR_CAPACITY), never registered,
        // and no slot of its address is left taken; an honest volunteer from that same address then joins.
        for (let i = 0; i < 30; i++) {
          const v = raw(
            url,
            '127.0.0.130',
            'pinhole-client',
            { deviceMemoryGiB: 8, maxBufferBytes: 1, maxStorageBindingBytes: 1 },
            'webgpu',
          );
          await expect.poll(() => v.errors.length, { timeout: WAIT_MS }).toBeGreaterThan(0);
          expect(v.errors[0]?.code).toBe('ERR_CAPACITY');
          v.socket.disconnect();
        }
        expect(coordinator.registry.size).toBe(1);
        const honest = await joined(raw(url, '127.0.0.130', 'honest-after-client'));
        all.push(honest);
        expect(coordinator.registry.size).toBe(2);
        expect(honest.errors).toEqual([]);
      } finally {
        for (const v of all) v.socket.disconnect();
      }
    },
    TEST_MS,
  );
});
