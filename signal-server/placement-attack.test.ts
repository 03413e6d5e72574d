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
}

/** A volunteer that says hello from `address` with `clientKey` and only records what it is told. */
function raw(url: string, address: string, clientKey: string): Raw {
  const socket: Socket<ServerToClientEvents, ClientToServerEvents> = io(url, {
    auth: { protocol: PROTOCOL_VERSION, role: 'volunteer' },
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
    localAddress: address,
  } as Parameters<typeof io>[1]);
  const v: Raw = { socket, stage: null, id: null };
  socket.on('volunteer:welcome', (m: { volunteerId: string }) => {
    v.id = m.volunteerId;
  });
  socket.on('volunteer:assign', (m: StageAssignment) => {
    v.stage = m.stage;
  });
  socket.on('connect', () => socket.emit('volunteer:hello', { backend: 'wasm', adapter: null, fault: null, clientKey }));
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
});
