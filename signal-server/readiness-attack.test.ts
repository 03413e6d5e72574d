// Readiness attacked from outside: a real server on port 0 serving the tiny
// fixture, Node volunteers that speak Socket.IO and compute with onnxruntime.
// A volunteer counts as ready on a stage only once it answered a challenge of
// that stage: a move (re-balancing) must not let the answer to a challenge of
// the stage it left make it ready on the one it moved to.
import { describe, expect, it } from 'vitest';
import type { StageChallenge } from '../shared/protocol/messages.js';
import { httpSwarm } from './testing/http-swarm.js';
import type { NodeVolunteer } from './testing/node-volunteer.js';

const { start, volunteer } = httpSwarm('readiness-attack');

const READY_MS = 90_000;
const TEST_MS = 240_000;

describe('readiness under attack over Socket.IO', () => {
  it(
    "hostile: a volunteer holds its answer to stage 0's challenge until it is moved to stage 1; that answer does not make it ready on stage 1, a challenge of stage 1 does",
    async () => {
      const { server, url } = await start(2, 2);
      const coordinator = server.coordinator;
      if (coordinator === null) throw new Error('no coordinator');
      // Honest: stages 0, 1, 0, 1 (fewest clients, lowest index on ties); all ready.
      const honest: NodeVolunteer[] = [];
      for (let i = 0; i < 4; i++) {
        // One after another: the order of joins decides the stages.
        const v = volunteer(url, `127.0.0.${40 + i}`);
        honest.push(v);
        await expect.poll(() => v.stage, { timeout: READY_MS }).not.toBeNull();
      }
      await expect
        .poll(() => honest.every((v) => v.ready && v.id !== null && coordinator.registry.get(v.id)?.ready), { timeout: READY_MS })
        .toBe(true);
      expect(honest.map((v) => v.stage)).toEqual([0, 1, 0, 1]);
      // The attacker joins last: stage 0 (3 clients there then), and holds its answer to stage 0's challenge.
      let release: () => void = () => {};
      const released = new Promise<void>((r) => {
        release = r;
      });
      let held = false;
      const attacker = volunteer(url, '127.0.0.99', {
        holdProof: async () => {
          held = true;
          await released;
        },
      });
      const challenged: number[] = [];
      attacker.socket.on('volunteer:challenge', (m: StageChallenge) => challenged.push(m.stage));
      await expect.poll(() => held, { timeout: READY_MS }).toBe(true);
      expect(attacker.stage).toBe(0);
      expect(challenged).toEqual([0]);
      // Stage 1 falls short (an honest volunteer of it leaves): the most recent of stage 0, the attacker, moves there.
      const leaving = honest[3];
      if (leaving === undefined) throw new Error('no volunteer');
      await leaving.close();
      const id = attacker.id as string;
      await expect.poll(() => coordinator.registry.get(id)?.stage, { timeout: READY_MS }).toBe(1);
      expect(coordinator.registry.get(id)?.ready).toBe(false);
      // Now the answer to stage 0's challenge: right for stage 0, and no proof of stage 1.
      release();
      // Ready on stage 1 only after a challenge of stage 1 (it loads stage 1 honestly, and says ready for it).
      await expect.poll(() => coordinator.registry.get(id)?.ready, { timeout: READY_MS }).toBe(true);
      expect(coordinator.registry.get(id)?.stage).toBe(1);
      expect(challenged).toEqual([0, 1]);
    },
    TEST_MS,
  );
});
