// Live re-partition over the real protocol: a real server on port 0, Node
// volunteers that compute with onnxruntime and speak Socket.IO, requests over
// the HTTP API, tokens compared with the reference runner's. Volunteers leave
// during a generation until the partition must change.
import { describe, expect, it } from 'vitest';
import { GREEDY } from '../shared/model/sampling.js';
import { type ModelListing, parseModelListings } from '../shared/protocol/http.js';
import { fetchSwarmListing } from '../testing/swarm-listing.js';
import { createLogger } from './log.js';
import { ensureStages } from './models/model-folder.js';
import { ReferenceRunner } from './reference/reference-runner.js';
import { httpSwarm, MODEL, PROMPT, TOKENS } from './testing/http-swarm.js';
import type { NodeVolunteer } from './testing/node-volunteer.js';
import { expectScoredReplay } from './testing/scored-run.js';
import { connectClient, helloVolunteer } from './testing/socket-client.js';

const swarm = httpSwarm('repartition');
const { start, volunteer, readyCount, complete, stageCache } = swarm;

/** How long a test waits for volunteers to load and prove their stages: generous, for 2 cores shared with other test runs. */
const READY_MS = 90_000;
/** A whole test: the swarm starts, changes partition (and back) under that load. */
const TEST_MS = 300_000;

/** The stage of each ready volunteer, as GET /api/swarm lists them. */
async function readyStages(url: string): Promise<number[]> {
  return (await fetchSwarmListing(url)).list.filter((v) => v.ready).map((v) => v.stage);
}

/**
 * GET /api/models's one listing, its stageBytes checked against the tensors.json it serves: each checkpoint tensor is
 * downloaded by one stage's volunteers, a tied embedding by the first's and the last's.
 */
async function listedModel(url: string): Promise<ModelListing> {
  const listed = parseModelListings(await (await fetch(`${url}/api/models`)).json());
  if (!listed.ok) throw new Error(listed.reason);
  expect(listed.value).toHaveLength(1);
  const m = listed.value[0] as ModelListing;
  const index = (await (await fetch(`${url}${m.baseUrl}/tensors.json`)).json()) as { tensors: { name: string; sizeBytes: number }[] };
  const all = index.tensors.reduce((a, t) => a + t.sizeBytes, 0);
  const embed = index.tensors.find((t) => t.name === 'model.embed_tokens.weight')?.sizeBytes ?? 0;
  const tied = !index.tensors.some((t) => t.name === 'lm_head.weight');
  expect(m.stageBytes.reduce((a, b) => a + b, 0)).toBe(all + (tied && m.stages > 1 ? embed : 0));
  for (const b of m.stageBytes) expect(b).toBeGreaterThan(0);
  return m;
}

describe('re-partition over Socket.IO', () => {
  it(
    'a volunteer leaves mid-generation and 3 stages × r = 2 cannot be kept: fewer stages, the running request answers the reference, and so do new ones; a join brings the configured partition back',
    async () => {
      const lines: string[] = [];
      const logger = createLogger('info', { write: (chunk: string) => lines.push(...chunk.split('\n').filter((l) => l.length > 0)) });
      const { server, url, expected } = await start(3, 2, { stepTimeoutMs: 20_000, repartition: { stageCache: stageCache() }, logger });
      const coordinator = server.coordinator;
      if (coordinator === null) throw new Error('no coordinator');
      const vs: NodeVolunteer[] = Array.from({ length: 6 }, (_, i) => volunteer(url, `127.0.0.${20 + i}`));
      await expect.poll(() => readyCount(url), { timeout: READY_MS }).toBe(6);
      expect(vs.map((v) => v.partition)).toEqual(vs.map(() => 'r0-1_1-2_2-3'));
      const before = await listedModel(url);
      expect(before.stageBytes).toHaveLength(3);
      // Stage 1 drops to one of r = 2 after two steps: no majority, no spare, nobody to move (5 < 3 × 2).
      const leaving = vs.find((v) => v.stage === 1) as NodeVolunteer;
      leaving.leaveAfter(2);
      const r = await complete(url);
      expect(r.body.error).toBeUndefined();
      expect(r.status).toBe(200);
      expect(r.body.webswarm?.tokens).toEqual(expected);
      expect(coordinator.repartitions).toBe(1);
      expect(coordinator.replays).toBe(1);
      expect(await (await fetch(`${url}/metrics`)).text()).toMatch(/^webswarm_replays_total 1$/m);
      // The log says the request is replayed, not (before) that it "could not be replayed" while replaying it.
      const replayed = lines.map((l) => (JSON.parse(l) as { msg?: string }).msg ?? '').filter((m) => m.startsWith('replaying a request'));
      expect(replayed).toHaveLength(1);
      expect(replayed[0]).toMatch(
        /^replaying a request after \d+ tokens \(.+\) on the new partition \(replay 1; 1 of at most 3 in a row without a new token\)$/,
      );
      expect(replayed[0]).not.toMatch(/could not be replayed/);
      // 5 volunteers hold at most 2 stages of r = 2; the planner cuts 2 unless the measured speeds make one faster.
      const stages = coordinator.modelInfo.stages;
      expect([1, 2]).toContain(stages);
      // Every volunteer that stayed was assigned a stage of the new partition and passed a challenge on it.
      const stayed = vs.filter((v) => v !== leaving);
      await expect.poll(() => readyCount(url), { timeout: READY_MS }).toBe(5);
      const partition = stayed[0]?.partition;
      expect(partition).toMatch(stages === 2 ? /^r0-[12]_[12]-3$/ : /^r0-3$/);
      for (const v of stayed) expect(v.partition).toBe(partition);
      for (const s of await readyStages(url)) expect(s).toBeLessThan(stages);
      const perStage = Array.from({ length: stages }, (_, s) => stayed.filter((v) => v.stage === s).length);
      for (const n of perStage) expect(n).toBeGreaterThanOrEqual(2);
      for (const v of stayed) expect(v.errors).toEqual([]);
      // GET /api/models lists the partition served now (before, the configured one), and its manifest is there.
      // Its stageBytes are the new stages' (what a volunteer of each downloads: the consent text says it).
      const listed = await listedModel(url);
      expect(listed).toMatchObject({ modelId: coordinator.modelInfo.modelId, stages });
      expect(listed.stageBytes).toHaveLength(stages);
      expect(listed.baseUrl).toMatch(new RegExp(`/${partition}$`));
      const manifest = (await (await fetch(`${url}${listed.baseUrl}/manifest.json`)).json()) as { stages: unknown[] };
      expect(manifest.stages).toHaveLength(stages);
      // The new partition serves new requests with the reference's tokens.
      const again = await complete(url);
      expect(again.status).toBe(200);
      expect(again.body.webswarm?.tokens).toEqual(expected);
      expect(again.body.webswarm?.verified).toBe(true);
      // A volunteer joins: 3 stages × r = 2 serve again, and the swarm goes back to the configured partition.
      const back = volunteer(url, '127.0.0.26');
      await expect.poll(() => coordinator.repartitions, { timeout: READY_MS }).toBe(2);
      await expect.poll(() => readyCount(url), { timeout: READY_MS }).toBe(6);
      expect(coordinator.modelInfo.stages).toBe(3);
      expect(((await (await fetch(`${url}/api/models`)).json()) as { stages: number }[])[0]?.stages).toBe(3);
      for (const v of [...stayed, back]) expect(v.partition).toBe('r0-1_1-2_2-3');
      const third = await complete(url);
      expect(third.status).toBe(200);
      expect(third.body.webswarm?.tokens).toEqual(expected);
    },
    TEST_MS,
  );

  it(
    'a swarm that stops filling short of 3 stages × r = 2 is cut anew once no volunteer joined for a while, and its volunteers answer, verified (before: every stage computed by the server, for good)',
    async () => {
      const lines: string[] = [];
      const logger = createLogger('info', { write: (chunk: string) => lines.push(...chunk.split('\n').filter((l) => l.length > 0)) });
      const { server, url, expected } = await start(3, 2, {
        stepTimeoutMs: 20_000,
        repartition: { stageCache: stageCache(), fillQuietMs: 5_000 },
        fallback: 'stage',
        logger,
      });
      const coordinator = server.coordinator;
      if (coordinator === null) throw new Error('no coordinator');
      // 4 volunteers of 4 clients: a stage of the configured partition has 1 of the 2 it needs, and no one leaves.
      const vs = Array.from({ length: 4 }, (_, i) => volunteer(url, `127.0.0.${40 + i}`));
      await expect.poll(() => coordinator.repartitions, { timeout: READY_MS }).toBeGreaterThanOrEqual(1);
      await expect.poll(() => readyCount(url), { timeout: READY_MS }).toBe(4);
      const stages = coordinator.modelInfo.stages;
      expect(stages).toBeLessThan(3);
      for (const v of vs) expect(v.partition).toBe(vs[0]?.partition);
      const msgs = lines.map((l) => (JSON.parse(l) as { msg?: string }).msg ?? '');
      expect(
        msgs.some((m) => /^re-partition: stages short \([\d/]+\), no volunteer newly proved a stage for \d+ s; building layers /.test(m)),
      ).toBe(true);
      const r = await complete(url);
      expect(r.status).toBe(200);
      expect(r.body.webswarm?.tokens).toEqual(expected);
      expect(r.body.webswarm?.verified).toBe(true);
      // No stage computed by the server.
      expect(r.body.webswarm?.server_stages).toEqual([]);
    },
    TEST_MS,
  );

  it(
    'nor while a volunteer given a stage still loads it: the cut waits for its proof or its load deadline',
    async () => {
      const { server, url } = await start(3, 2, {
        stepTimeoutMs: 20_000,
        repartition: { stageCache: stageCache(), fillQuietMs: 2_000 },
        loadDeadlineMs: 15_000,
        fallback: 'stage',
      });
      const coordinator = server.coordinator;
      if (coordinator === null) throw new Error('no coordinator');
      // A tab that said hello and is still fetching its stage (it never will here), then 4 that load and prove theirs.
      const slow = await helloVolunteer(connectClient(url, undefined, '127.0.0.50'));
      const helloAt = performance.now();
      for (let i = 0; i < 4; i++) volunteer(url, `127.0.0.${51 + i}`);
      await expect.poll(() => readyCount(url), { timeout: READY_MS }).toBe(4);
      // Past the fill time, within the slow one's load deadline: no cut (before the review, one 2 s after the last proof).
      await new Promise((r) => setTimeout(r, Math.max(4_000, Math.min(8_000, 13_000 - (performance.now() - helloAt)))));
      if (performance.now() - helloAt < 14_000) expect(coordinator.repartitions).toBe(0);
      // Its deadline passed (it holds no seat): the cut.
      await expect.poll(() => coordinator.repartitions, { timeout: READY_MS }).toBeGreaterThanOrEqual(1);
      expect(performance.now() - helloAt).toBeGreaterThan(15_000);
      slow.c.disconnect();
    },
    TEST_MS,
  );

  it(
    "hostile capacity reports: malformed is refused with the field named, absurd is clamped, and one client's sockets count once when the partition changes",
    async () => {
      const { server, url, expected } = await start(3, 2, { stepTimeoutMs: 20_000, repartition: { stageCache: stageCache() } });
      const coordinator = server.coordinator;
      if (coordinator === null) throw new Error('no coordinator');
      const malformed = volunteer(url, '127.0.0.90', { capacity: { deviceMemoryGiB: 'lots' } });
      await expect.poll(() => malformed.errors.length, { timeout: READY_MS }).toBeGreaterThan(0);
      expect(malformed.errors[0]).toMatchObject({ code: 'ERR_BAD_MESSAGE' });
      expect(malformed.errors[0]?.message).toContain('capacity.deviceMemoryGiB');
      expect(malformed.id).toBeNull();
      // One attacker, two sockets from one address, each claiming all the memory there is; four honest volunteers.
      const absurd = { deviceMemoryGiB: 4096, maxBufferBytes: 2 ** 52, maxStorageBindingBytes: 2 ** 52 };
      const attacker = [volunteer(url, '127.0.0.99', { capacity: absurd }), volunteer(url, '127.0.0.99', { capacity: absurd })];
      const honest = Array.from({ length: 4 }, (_, i) =>
        volunteer(url, `127.0.0.${30 + i}`, { capacity: { deviceMemoryGiB: 2, maxBufferBytes: null, maxStorageBindingBytes: null } }),
      );
      await expect.poll(() => readyCount(url), { timeout: READY_MS }).toBe(6);
      // Clamped: a WASM volunteer is counted on for no more than a WASM instance addresses.
      for (const a of attacker) expect(coordinator.registry.get(a.id as string)?.memoryBytes).toBe(4 * 2 ** 30);
      expect(coordinator.registry.get(honest[0]?.id as string)?.memoryBytes).toBe(2 ** 30);
      const leaving = honest.find((v) => v.stage === 2) as NodeVolunteer;
      leaving.leaveAfter(2);
      const r = await complete(url);
      expect(r.status).toBe(200);
      expect(r.body.webswarm?.tokens).toEqual(expected);
      expect(coordinator.repartitions).toBe(1);
      await expect.poll(() => readyCount(url), { timeout: READY_MS }).toBe(5);
      // 4 clients (the attacker's sockets are one): at most 2 stages, each with 2 distinct clients; no honest volunteer left out.
      const stages = coordinator.modelInfo.stages;
      expect([1, 2]).toContain(stages);
      const stayed = honest.filter((v) => v !== leaving);
      for (const v of stayed) expect(v.stage).toBeLessThan(stages);
      for (let s = 0; s < stages; s++) {
        const clients = new Set([
          ...stayed.filter((v) => v.stage === s).map((v) => v.id),
          ...(attacker.some((a) => a.stage === s) ? ['attacker'] : []),
        ]);
        expect(clients.size).toBeGreaterThanOrEqual(2);
      }
      // The route rules still hold: never both of its sockets in one stage of a route.
      for (let i = 0; i < 3; i++) {
        const again = await complete(url);
        expect(again.status).toBe(200);
        expect(again.body.webswarm?.tokens).toEqual(expected);
        const route = (again.body as { webswarm?: { route?: string[][] } }).webswarm?.route ?? [];
        for (const stage of route) expect(stage.filter((id) => attacker.some((a) => a.id === id)).length).toBeLessThanOrEqual(1);
      }
    },
    TEST_MS,
  );

  it('a ready naming another partition than the one assigned is ignored: no challenge, so no stale stage can be proven', async () => {
    const { url } = await start(3, 2, { repartition: { stageCache: stageCache() } });
    const { c, assign } = await helloVolunteer(connectClient(url));
    try {
      expect(assign.partition).toBe('r0-1_1-2_2-3');
      let challenged = 0;
      c.on('volunteer:challenge', () => {
        challenged += 1;
      });
      c.emit('volunteer:ready', { modelId: assign.modelId, stage: assign.stage, stepMs: 1, partition: 'r0-2_2-3' });
      await new Promise((r) => setTimeout(r, 1_000));
      expect(challenged).toBe(0);
      c.emit('volunteer:ready', { modelId: assign.modelId, stage: assign.stage, stepMs: 1, partition: 'r0-1_1-2_2-3' });
      await expect.poll(() => challenged, { timeout: READY_MS }).toBe(1);
    } finally {
      c.disconnect();
    }
  });

  it(
    "seeded sampling: the replayed request goes on with the same draws, so its tokens are the reference runner's",
    async () => {
      const { server, url } = await start(3, 2, { stepTimeoutMs: 20_000, repartition: { stageCache: stageCache() } });
      const coordinator = server.coordinator;
      if (coordinator === null) throw new Error('no coordinator');
      const sampling = { temperature: 1, topK: 0, topP: 1, seed: 5 };
      const runner = await ReferenceRunner.fromStageDir((await ensureStages(MODEL, { stages: 3 }, stageCache())).dir);
      const expected = (await runner.generateIds(runner.tokenizer.encode(PROMPT), TOKENS, sampling)).tokens;
      await runner.close();
      const vs = Array.from({ length: 6 }, (_, i) => volunteer(url, `127.0.0.${50 + i}`));
      await expect.poll(() => readyCount(url), { timeout: READY_MS }).toBe(6);
      (vs.find((v) => v.stage === 1) as NodeVolunteer).leaveAfter(3);
      const c = await coordinator.complete({ prompt: PROMPT, maxTokens: TOKENS, sampling });
      expect(coordinator.replays).toBeGreaterThanOrEqual(1);
      expect(c.tokens).toEqual(expected);
      // The mesh loop's last stage drew on from the tokens the replay had (MeshLoop.draws): its tokens were never wrong.
      expect(coordinator.meshRollBacks).toBe(0);
    },
    TEST_MS,
  );

  it(
    'a scored prompt (echo) replayed mid-way: each position scored once, with the reference’s log-probability; its seeded tokens the reference’s',
    async () => {
      // Stage 1 goes after 3 of the prompt's positions.
      await expectScoredReplay(swarm, {
        stage: 1,
        after: 3,
        sampling: { temperature: 1, topK: 0, topP: 1, seed: 5 },
        tokens: TOKENS,
        address: (i) => `127.0.0.${70 + i}`,
      });
    },
    TEST_MS,
  );

  it(
    'penalties: the replayed request counts the tokens it had before the re-partition, so its tokens are the reference runner’s',
    async () => {
      const { server, url } = await start(3, 2, { stepTimeoutMs: 20_000, repartition: { stageCache: stageCache() } });
      const coordinator = server.coordinator;
      if (coordinator === null) throw new Error('no coordinator');
      // Negative penalties favour repeats: of the greedy answer's tokens 3 and 4 at 7 and 8, after the replay.
      const sampling = { ...GREEDY, frequencyPenalty: -1, presencePenalty: -2 };
      const tokens = 10;
      const runner = await ReferenceRunner.fromStageDir((await ensureStages(MODEL, { stages: 3 }, stageCache())).dir);
      const expected = (await runner.generateIds(runner.tokenizer.encode(PROMPT), tokens, sampling)).tokens;
      await runner.close();
      expect(new Set(expected).size).toBeLessThan(tokens);
      const vs = Array.from({ length: 6 }, (_, i) => volunteer(url, `127.0.0.${60 + i}`));
      await expect.poll(() => readyCount(url), { timeout: READY_MS }).toBe(6);
      (vs.find((v) => v.stage === 1) as NodeVolunteer).leaveAfter(6);
      const c = await coordinator.complete({ prompt: PROMPT, maxTokens: tokens, sampling });
      expect(coordinator.replays).toBeGreaterThanOrEqual(1);
      expect(c.tokens).toEqual(expected);
    },
    TEST_MS,
  );
});
