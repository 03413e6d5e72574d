// Challenges attacked from outside: a real server on port 0 serving the tiny
// fixture, raw socket.io clients that speak the volunteer protocol. Every
// `volunteer:ready` made the server compute a challenge (a forward pass of
// the stages up to the one tested, on its one runner, queued before honest
// joiners' own), and a client that says hello and ready, takes its challenge
// and reconnects could ask for as many as it liked: 16 sockets of one
// address got 2 473 in 8 s (austen-2m) before each client had a budget.
import { describe, expect, it } from 'vitest';
import type { WireError } from '../shared/protocol/errors.js';
import type { StageAssignment, StageChallenge } from '../shared/protocol/messages.js';
import { PROTOCOL_VERSION } from '../shared/protocol/version.js';
import { DEFAULT_CHALLENGE_BUDGET } from './coordinator/readiness.js';
import { httpSwarm, WAIT_MS } from './testing/http-swarm.js';
import type { NodeVolunteer } from './testing/node-volunteer.js';
import { type Client, connectClient, silentStranger } from './testing/socket-client.js';

const { start, joinAll } = httpSwarm('challenge-flood');

const ATTACK_MS = 4_000;
const SOCKETS = 16;
const TEST_MS = 90_000;

/** A raw volunteer from `address`: says hello, then ready for the stage it is assigned, and reports each challenge. */
function readyVolunteer(url: string, address: string, key: string, onChallenge: (c: Client, m: StageChallenge) => void): Client {
  const c = connectClient(url, { protocol: PROTOCOL_VERSION, role: 'volunteer' }, address);
  c.on('volunteer:assign', (a: StageAssignment) =>
    c.emit('volunteer:ready', {
      modelId: a.modelId,
      stage: a.stage,
      stepMs: 1,
      ...(a.partition === undefined ? {} : { partition: a.partition }),
    }),
  );
  c.on('volunteer:challenge', (m: StageChallenge) => onChallenge(c, m));
  c.on('connect', () => c.emit('volunteer:hello', { backend: 'wasm', adapter: null, fault: null, clientKey: key }));
  return c;
}

describe('challenges a client can make the server compute', () => {
  it(
    `hostile: ${SOCKETS} sockets of one address that say ready, take their challenge and reconnect for ${ATTACK_MS / 1000} s get at most the budget; honest volunteers still become ready`,
    async () => {
      // Its hellos are not what is counted here (DEFAULT_HELLO_BUDGET would refuse most of them first).
      const { url } = await start(2, 2, { helloBudget: { burst: 1_000_000, perMinute: 1_000_000 } });
      let challenges = 0;
      let stop = false;
      const loop = async (i: number) => {
        for (let round = 0; !stop && round < 10_000; round++) {
          await new Promise<void>((resolve) => {
            const c = readyVolunteer(url, '127.0.0.77', `attacker-${i}-${round}`, (s) => {
              challenges += 1;
              s.disconnect();
              resolve();
            });
            // Deferred (over the budget): give up on this one and come again with a fresh socket.
            const timer = setTimeout(() => {
              c.disconnect();
              resolve();
            }, 1_000);
            // Cut off by the server (a refusal): come again as well.
            c.on('disconnect', () => {
              clearTimeout(timer);
              resolve();
            });
          });
        }
      };
      const loops = Array.from({ length: SOCKETS }, (_, i) => loop(i));
      await new Promise((r) => setTimeout(r, ATTACK_MS));
      stop = true;
      await Promise.all(loops);
      // The burst, and what the bucket refills within the attack (16 a minute: one in 4 s), plus one for a slow machine.
      const bound = DEFAULT_CHALLENGE_BUDGET.burst + Math.ceil((DEFAULT_CHALLENGE_BUDGET.perMinute * ATTACK_MS) / 60_000) + 1;
      expect(challenges).toBeLessThanOrEqual(bound);
      // Its budget is spent (on a loaded machine partly by sockets that gave up before theirs was made):
      // one more of its sockets that waits is not challenged for now.
      const patient: StageChallenge[] = [];
      const last = readyVolunteer(url, '127.0.0.77', 'attacker-patient', (_c, m) => patient.push(m));
      await new Promise((r) => setTimeout(r, 2_000));
      expect(patient).toEqual([]);
      last.disconnect();
      // Honest volunteers of other addresses are challenged and ready as always.
      const honest = await joinAll(url, 4, 40);
      expect(honest.every((v) => v.ready)).toBe(true);
    },
    TEST_MS,
  );

  it(
    'a ready over the budget is answered when the bucket refills, not refused; a proof for a challenge not yet sent is refused',
    async () => {
      // Two at once, then one a second.
      const { server, url } = await start(2, 2, { challengeBudget: { burst: 2, perMinute: 60 } });
      const coordinator = server.coordinator;
      if (coordinator === null) throw new Error('no coordinator');
      const at: number[] = [];
      const ids: number[] = [];
      const t0 = performance.now();
      const clients: Client[] = [];
      const errors: WireError[] = [];
      for (let i = 0; i < 3; i++) {
        const c = readyVolunteer(url, '127.0.0.78', `patient-${i}-key`, (_c, m) => {
          at[i] = performance.now() - t0;
          ids.push(m.challengeId);
        });
        c.on('server:error', (e: WireError) => errors.push(e));
        clients.push(c);
        await expect.poll(() => coordinator.registry.size, { timeout: WAIT_MS }).toBe(i + 1);
      }
      await expect.poll(() => ids.length, { timeout: WAIT_MS }).toBe(2);
      const third = clients[2] as Client;
      // The third's challenge is deferred; ids are counted up, so guess it: no proof counts before it is sent.
      const top = Math.max(...ids);
      for (let id = top + 1; id <= top + 3; id++) third.emit('volunteer:proof', { challengeId: id, digest: [0] });
      await expect.poll(() => errors.filter((e) => e.code === 'ERR_BAD_MESSAGE').length, { timeout: WAIT_MS }).toBe(3);
      expect(errors[0]?.message).toMatch(/is not open for you/);
      expect(coordinator.registry.all().filter((v) => v.ready)).toHaveLength(0);
      // Then it comes, about a second after the first two (generous bounds for a loaded machine).
      await expect.poll(() => at[2], { timeout: WAIT_MS }).toBeDefined();
      expect((at[2] as number) - Math.max(at[0] as number, at[1] as number)).toBeGreaterThan(200);
      for (const c of clients) c.disconnect();
    },
    TEST_MS,
  );

  it(
    "a volunteer that proved itself and is moved is challenged on its new stage at once, its client's budget spent or not",
    async () => {
      // One challenge per client, and the next in about 100 minutes: only the exemption lets the moved one be ready.
      const { server, url } = await start(2, 2, { challengeBudget: { burst: 1, perMinute: 0.01 } });
      const coordinator = server.coordinator;
      if (coordinator === null) throw new Error('no coordinator');
      const all = await joinAll(url, 5, 50);
      expect(all.map((v) => v.stage)).toEqual([0, 1, 0, 1, 0]);
      // Stage 1 falls short: the latest of stage 0 moves there and must prove stage 1.
      await (all[3] as NodeVolunteer).close();
      const moved = all[4] as NodeVolunteer;
      await expect.poll(() => coordinator.registry.get(moved.id as string)?.stage, { timeout: WAIT_MS }).toBe(1);
      await expect.poll(() => coordinator.registry.get(moved.id as string)?.ready, { timeout: WAIT_MS }).toBe(true);
      expect(coordinator.registry.replicasPerStage()).toEqual([2, 2]);
    },
    TEST_MS,
  );

  it(
    'the answer to a challenge a move withdrew while it was computed is dropped quietly; a proof of a challenge never sent is still refused',
    async () => {
      const { server, url } = await start(2, 2);
      const coordinator = server.coordinator;
      if (coordinator === null) throw new Error('no coordinator');
      // Two that say hello only (stages 0 and 1), then one that says ready on stage 0 and holds its challenge's answer.
      const first = silentStranger(url, '127.0.0.81', 'withdrawn-first');
      await expect.poll(() => coordinator.registry.size, { timeout: WAIT_MS }).toBe(1);
      const second = silentStranger(url, '127.0.0.82', 'withdrawn-second');
      await expect.poll(() => coordinator.registry.size, { timeout: WAIT_MS }).toBe(2);
      // It says ready for its first assignment only, and keeps its answer.
      const challenges: StageChallenge[] = [];
      const errors: WireError[] = [];
      const assigned: StageAssignment[] = [];
      const held = connectClient(url, { protocol: PROTOCOL_VERSION, role: 'volunteer' }, '127.0.0.83');
      held.on('volunteer:assign', (a: StageAssignment) => {
        assigned.push(a);
        if (assigned.length === 1)
          held.emit('volunteer:ready', {
            modelId: a.modelId,
            stage: a.stage,
            stepMs: 1,
            ...(a.partition === undefined ? {} : { partition: a.partition }),
          });
      });
      held.on('volunteer:challenge', (m: StageChallenge) => challenges.push(m));
      held.on('server:error', (e: WireError) => errors.push(e));
      held.on('connect', () => held.emit('volunteer:hello', { backend: 'wasm', adapter: null, fault: null, clientKey: 'withdrawn-held' }));
      await expect.poll(() => challenges.length, { timeout: WAIT_MS }).toBe(1);
      expect(assigned.map((a) => a.stage)).toEqual([0]);
      // Stage 1's one leaves: the latest of stage 0 (the held one) moves there, its challenge withdrawn.
      second.disconnect();
      await expect.poll(() => assigned.map((a) => a.stage), { timeout: WAIT_MS }).toEqual([0, 1]);
      // Its answer to the withdrawn challenge crosses the move: no error. Then a made-up id: refused.
      held.emit('volunteer:proof', { challengeId: challenges[0]?.challengeId ?? 0, digest: [0] });
      await new Promise((r) => setTimeout(r, 500));
      expect(errors).toEqual([]);
      held.emit('volunteer:proof', { challengeId: (challenges[0]?.challengeId ?? 0) + 100, digest: [0] });
      await expect.poll(() => errors.map((e) => e.code), { timeout: WAIT_MS }).toEqual(['ERR_BAD_MESSAGE']);
      for (const c of [first, held]) c.disconnect();
    },
    TEST_MS,
  );
});
