// Hostile clients against live re-partition (REPARTITION), over the real
// protocol: a real server on port 0, honest Node volunteers computing with
// onnxruntime from distinct 127.0.0.x addresses, and a stranger's raw
// Socket.IO client that says hello and nothing more. Requests go over the
// HTTP API; tokens are compared with the reference runner's.
import { describe, expect, it } from 'vitest';
import { GREEDY } from '../shared/model/sampling.js';
import { MAX_REPLAYS, REPARTITION_HOLD_MS } from './coordinator/repartition.js';
import { ensureStages } from './models/model-folder.js';
import { ReferenceRunner } from './reference/reference-runner.js';
import { httpSwarm, MODEL, PROMPT } from './testing/http-swarm.js';
import type { NodeVolunteer } from './testing/node-volunteer.js';
import { silentStranger } from './testing/socket-client.js';

const { start, volunteer, readyCount, complete, stageCache } = httpSwarm('repartition-attack');

/** How long a test waits for volunteers to load and prove their stages: generous, for 2 cores shared with other test runs. */
const READY_MS = 90_000;
const TEST_MS = 300_000;

/**
 * 4 honest volunteers (from 127.0.0.`first`…) on 2 stages × r = 2, no hold; one leaves: 3 clients cannot keep
 * 2 stages, so the swarm shrinks to one stage, and its 3 volunteers prove it.
 */
async function shrunkSwarm(first: number, loadMs?: number) {
  const { server, url, expected } = await start(2, 2, {
    repartition: { stageCache: stageCache(), holdMs: 0 },
    ...(loadMs === undefined ? {} : { loadDeadlineMs: loadMs }),
  });
  const coordinator = server.coordinator;
  if (coordinator === null) throw new Error('no coordinator');
  const vs: NodeVolunteer[] = Array.from({ length: 4 }, (_, i) => volunteer(url, `127.0.0.${first + i}`));
  await expect.poll(() => readyCount(url), { timeout: READY_MS }).toBe(4);
  await (vs[0] as NodeVolunteer).close();
  await expect.poll(() => coordinator.repartitions, { timeout: READY_MS, interval: 20 }).toBe(1);
  // Taken at the switch, before its volunteers (reloading) prove the new stage.
  const plansAtSwitch = coordinator.plans;
  await expect.poll(() => readyCount(url), { timeout: READY_MS }).toBe(3);
  expect(coordinator.modelInfo.stages).toBe(1);
  return { coordinator, url, expected, plansAtSwitch, vs };
}

describe('re-partition under attack', () => {
  it(
    'a stranger whose hello is all it sends does not switch a shrunk swarm back to the configured partition (where its stage would lack r ready replicas)',
    async () => {
      // No hold: what keeps the partition here is that the stranger never proved a stage.
      const { coordinator, url, expected } = await shrunkSwarm(60);
      const stranger = silentStranger(url, '127.0.0.77');
      try {
        await expect.poll(() => coordinator.registry.all().length, { timeout: READY_MS }).toBe(4);
        // Long enough for the operator's stage files (cached already) to be found and a switch to be made.
        await new Promise((r) => setTimeout(r, 3_000));
        const r = await complete(url);
        expect(r.body.error).toBeUndefined();
        expect(r.status).toBe(200);
        expect(r.body.webswarm?.tokens).toEqual(expected);
        expect(coordinator.repartitions).toBe(1);
        expect(coordinator.modelInfo.stages).toBe(1);
      } finally {
        stranger.disconnect();
      }
    },
    TEST_MS,
  );

  it(
    'a client that leaves and comes back at once buys no switch back: the shrunk partition serves, and goes back after the hold with a client that did not leave',
    async () => {
      const { server, url, expected } = await start(2, 2, { repartition: { stageCache: stageCache() } });
      const coordinator = server.coordinator;
      if (coordinator === null) throw new Error('no coordinator');
      Array.from({ length: 3 }, (_, i) => volunteer(url, `127.0.0.${70 + i}`));
      const attacker = volunteer(url, '127.0.0.88');
      await expect.poll(() => readyCount(url), { timeout: READY_MS }).toBe(4);
      // Its departure leaves a stage short: the swarm shrinks to one stage, everyone is challenged again.
      await attacker.close();
      await expect.poll(() => coordinator.repartitions, { timeout: READY_MS, interval: 100 }).toBe(1);
      const shrunk = performance.now();
      // Back at once, computing honestly: with it the configured partition would serve again, but a client that
      // proved a stage and left counts for no switch back for SWITCH_BACK_DISTRUST_MS (before, one client leaving and
      // coming back made two switches a hold, each re-challenging everyone and replaying every request).
      volunteer(url, '127.0.0.88');
      await expect.poll(() => readyCount(url), { timeout: READY_MS }).toBe(4);
      expect(performance.now() - shrunk).toBeLessThan(REPARTITION_HOLD_MS);
      expect(coordinator.repartitions).toBe(1);
      const r = await complete(url);
      expect(r.status).toBe(200);
      expect(r.body.webswarm?.tokens).toEqual(expected);
      // Another client joins: the swarm goes back, but not before the hold is over.
      volunteer(url, '127.0.0.89');
      await expect.poll(() => coordinator.repartitions, { timeout: REPARTITION_HOLD_MS + READY_MS, interval: 100 }).toBe(2);
      expect(performance.now() - shrunk).toBeGreaterThanOrEqual(REPARTITION_HOLD_MS - 1_000);
      expect(coordinator.modelInfo.stages).toBe(2);
      await expect.poll(() => readyCount(url), { timeout: READY_MS }).toBe(5);
      const again = await complete(url);
      expect(again.status).toBe(200);
      expect(again.body.webswarm?.tokens).toEqual(expected);
    },
    TEST_MS,
  );

  it(
    'a stranger squatting a seat (hello, then nothing) does not stop a short stage from being re-partitioned: it is no replica until it proves one',
    async () => {
      const { server, url, expected } = await start(2, 2, { repartition: { stageCache: stageCache(), holdMs: 0 } });
      const coordinator = server.coordinator;
      if (coordinator === null) throw new Error('no coordinator');
      const vs: NodeVolunteer[] = Array.from({ length: 4 }, (_, i) => volunteer(url, `127.0.0.${80 + i}`));
      await expect.poll(() => readyCount(url), { timeout: READY_MS }).toBe(4);
      const stranger = silentStranger(url, '127.0.0.78');
      try {
        await expect.poll(() => coordinator.registry.all().length, { timeout: READY_MS }).toBe(5);
        const seat = coordinator.registry.all().find((v) => !vs.some((h) => h.id === v.id))?.stage;
        // An honest volunteer of the stranger's stage leaves: by count its stage still has 2 clients, but 1 of them computes.
        await (vs.find((v) => v.stage === seat) as NodeVolunteer).close();
        const r = await complete(url);
        expect(r.body.error).toBeUndefined();
        expect(r.status).toBe(200);
        expect(r.body.webswarm?.tokens).toEqual(expected);
        expect(coordinator.repartitions).toBe(1);
      } finally {
        stranger.disconnect();
      }
    },
    TEST_MS,
  );

  it(
    'strangers that say hello and leave in a loop make the server plan nothing, nor do proofs while too few clients are ready to go back: planning takes seconds for a large swarm',
    async () => {
      const { coordinator, url, expected, plansAtSwitch } = await shrunkSwarm(100);
      // Three proofs of the new stage, too few clients to go back: nothing planned for them either.
      await new Promise((r) => setTimeout(r, 1_500));
      expect(coordinator.plans).toBe(plansAtSwitch);
      const plans = coordinator.plans;
      for (let i = 0; i < 10; i++) {
        const stranger = silentStranger(url, `127.0.0.${110 + i}`);
        await expect.poll(() => coordinator.registry.all().length, { timeout: READY_MS }).toBe(4);
        stranger.disconnect();
        await expect.poll(() => coordinator.registry.all().length, { timeout: READY_MS }).toBe(3);
      }
      expect(coordinator.plans).toBe(plans);
      const r = await complete(url);
      expect(r.status).toBe(200);
      expect(r.body.webswarm?.tokens).toEqual(expected);
    },
    TEST_MS,
  );

  it(
    'a volunteer that proved a stage and then never loads the one it is given is counted only until its load deadline: the planner cuts anew and the swarm serves',
    async () => {
      const LOAD_MS = 4_000;
      const { coordinator, url, expected, vs } = await shrunkSwarm(130, LOAD_MS);
      // One of the three proved the one-stage partition honestly; from now on it ignores every assignment.
      const squatter = vs[1] as NodeVolunteer;
      squatter.socket.off('volunteer:assign');
      // A fourth client: 2 stages × r = 2 serve again, and the swarm switches back, the squatter on one of them.
      volunteer(url, '127.0.0.139');
      await expect.poll(() => coordinator.repartitions, { timeout: READY_MS, interval: 50 }).toBe(2);
      expect(coordinator.modelInfo.stages).toBe(2);
      // Its stage has one ready replica of r = 2 until the deadline; then the planner counts 3 clients and cuts one stage.
      // Before, it was counted for as long as its socket stayed open, and every request was refused (no route).
      await expect.poll(() => coordinator.repartitions, { timeout: READY_MS, interval: 50 }).toBe(3);
      expect(coordinator.modelInfo.stages).toBe(1);
      await expect.poll(() => readyCount(url), { timeout: READY_MS }).toBe(3);
      const r = await complete(url);
      expect(r.status).toBe(200);
      expect(r.body.webswarm?.tokens).toEqual(expected);
      // Not evicted (an honest tab may load slowly), and not counted again until it proves a stage.
      expect(coordinator.registry.get(squatter.id as string)?.ready).toBe(false);
      await new Promise((res) => setTimeout(res, LOAD_MS + 1_000));
      expect(coordinator.repartitions).toBe(3);
    },
    TEST_MS,
  );

  it(
    'a client of several addresses leaving and coming back switches the partition twice a hold: a long request is replayed every time and answers the reference, since it moves on between replays',
    async () => {
      const HOLD_MS = 4_000;
      const MAX_TOKENS = 300;
      const { server, url } = await start(2, 2, { stepTimeoutMs: 20_000, repartition: { stageCache: stageCache(), holdMs: HOLD_MS } });
      const coordinator = server.coordinator;
      if (coordinator === null) throw new Error('no coordinator');
      const runner = await ReferenceRunner.fromStageDir((await ensureStages(MODEL, { stages: 2 }, stageCache())).dir);
      const expected = (await runner.generateIds(runner.tokenizer.encode(PROMPT), MAX_TOKENS, GREEDY)).tokens;
      await runner.close();
      // Honest volunteers that take 60 ms a step: the request runs past several holds.
      const slow = { fault: { output: (_s: number, d: Float32Array) => d, delayMs: 60 } };
      for (let i = 0; i < 3; i++) volunteer(url, `127.0.0.${200 + i}`, slow);
      let attacker = volunteer(url, '127.0.0.210', slow);
      await expect.poll(() => readyCount(url), { timeout: READY_MS }).toBe(4);
      let done = false;
      const request = complete(url, MAX_TOKENS).finally(() => {
        done = true;
      });
      /** The attacker leaves once the request runs again: 3 clients cannot keep 2 stages × r = 2, a shrink at once. */
      const leave = async () => {
        await expect.poll(() => done || coordinator.activeSessions > 0, { timeout: READY_MS, interval: 50 }).toBe(true);
        await new Promise((r) => setTimeout(r, 500));
        const before = coordinator.repartitions;
        await attacker.close();
        await expect.poll(() => done || coordinator.repartitions === before + 1, { timeout: READY_MS, interval: 50 }).toBe(true);
      };
      // Twice: leave, come back and prove, and the switch back once the hold is over; then leave for good. 5 switches,
      // each replaying the request. (The Node volunteers relay their frames through signalling, which bounds a frame at
      // 16 KiB: on 2 stages a replay's prefill of many tokens does not pass between them, and that replay makes no
      // progress until the next switch; on 1 stage none is needed. Tabs use data channels.)
      for (let round = 0; round < 2 && !done; round++) {
        await leave();
        const before = coordinator.repartitions;
        // From another address each time: one that left counts for no switch back a while (SWITCH_BACK_DISTRUST_MS).
        attacker = volunteer(url, `127.0.0.${211 + round}`, slow);
        await expect.poll(() => done || coordinator.repartitions === before + 1, { timeout: READY_MS, interval: 50 }).toBe(true);
      }
      await leave();
      const r = await request;
      // Before, its fourth replay failed it (ERR_NO_ROUTE, "could not be replayed"), every token lost.
      expect(coordinator.replays).toBeGreaterThan(MAX_REPLAYS);
      expect(r.body.error).toBeUndefined();
      expect(r.status).toBe(200);
      expect(r.body.webswarm?.tokens).toEqual(expected);
    },
    TEST_MS,
  );
});
