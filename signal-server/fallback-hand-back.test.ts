// The fallback hands a stage back to volunteers mid-generation, over the real protocol: a real server on port 0,
// Node volunteers that compute with onnxruntime and speak Socket.IO, requests over the HTTP API. A request starts
// with a stage short of volunteers (FALLBACK=stage: the server computes it); once that stage has r ready
// volunteers of distinct clients that a new route could take, the request goes on on a route of volunteers
// (coordinator/hand-back.ts), its tokens so far prefilled, and the tokens after it are verified. Before, the
// server kept the stage for the rest of the request.
import { describe, expect, it } from 'vitest';
import type { FaultBehaviour } from '../shared/swarm/faults.js';
import type { TokenUpdate } from './coordinator/coordinator.js';
import { MAX_HAND_BACKS } from './coordinator/hand-back.js';
import { PROMPT } from './testing/http-swarm.js';
import type { NodeVolunteer } from './testing/node-volunteer.js';
import { heldProof, READY_MS, requestRan, serverStages, shortStageSwarm, slowed } from './testing/short-stage-swarm.js';

const { volunteer, readyCount, complete, referenceTokens, start2x2: shortSwarm } = shortStageSwarm('fallback-hand-back');

/** How long a test waits for a hand-back once the volunteers it needs are ready. */
const HAND_BACK_MS = 30_000;
const TEST_MS = 240_000;

/**
 * A fourth client, given the short stage, that holds its proof until `prove`: which lets it go once the request has
 * run a few tokens (the other stage's volunteers computed 5 steps).
 */
async function lateVolunteer(url: string, short: number, fault: FaultBehaviour) {
  const held = heldProof();
  const late = volunteer(url, '127.0.0.40', { fault, holdProof: held.holdProof });
  await expect.poll(() => late.stage, { timeout: READY_MS }).toBe(short);
  const prove = async (vs: readonly NodeVolunteer[]) => {
    await requestRan(vs, short, 5);
    held.release();
  };
  return { late, prove };
}

/** The tokens each hand-back came after (the log's "handing stage N of a request back to volunteers after K tokens"). */
function handedBackAfter(messages: readonly string[], stage: number): number[] {
  return messages
    .map((m) => new RegExp(`^handing stage ${stage} of a request back to volunteers after (\\d+) tokens`).exec(m))
    .filter((m) => m !== null)
    .map((m) => Number(m[1]));
}

describe('the fallback hands a stage back to volunteers mid-generation (FALLBACK=stage)', () => {
  it(
    "a volunteer of the short stage becomes ready mid-request: the request goes on on volunteers, every token after it verified, the reference's tokens",
    async () => {
      const TOKENS = 60;
      const expected = await referenceTokens(TOKENS);
      const { fault, slow } = slowed();
      const { url, coordinator, vs, short, messages } = await shortSwarm(fault);
      const { late, prove } = await lateVolunteer(url, short, fault);
      const request = complete(url, TOKENS);
      await prove(vs);
      await expect.poll(() => coordinator.handBacks, { timeout: HAND_BACK_MS }).toBe(1);
      slow.ms = 0;
      const r = await request;
      expect(r.body.error).toBeUndefined();
      expect(r.status).toBe(200);
      expect(r.body.webswarm?.tokens).toEqual(expected);
      const [after] = handedBackAfter(messages(), short);
      expect(handedBackAfter(messages(), short)).toHaveLength(1);
      // An operator sees it in /metrics; a hand-back is no replay.
      const metrics = await (await fetch(`${url}/metrics`)).text();
      expect(metrics).toMatch(/^webswarm_hand_backs_total 1$/m);
      expect(metrics).toMatch(/^webswarm_replays_total 0$/m);
      expect(after).toBeGreaterThan(0);
      expect(after).toBeLessThan(TOKENS);
      // Before the hand-back the server computed the short stage; after it, a majority of r volunteers at every
      // stage (before: the server computed it for all 60 tokens).
      const perToken = serverStages(r.body);
      expect(perToken.slice(0, after)).toEqual(perToken.slice(0, after).map(() => [short]));
      const votes = r.body.webswarm?.votes.slice(after) ?? [];
      expect(votes).toHaveLength(TOKENS - (after as number));
      for (const v of votes) {
        expect(v.server_stages).toEqual([]);
        expect(v.verified).toBe(true);
      }
      // The request as a whole is not verified: its first tokens were the server's.
      expect(r.body.webswarm?.verified).toBe(false);
      expect(late.steps).toBeGreaterThan(0);
      // No replay counted (a hand-back follows new tokens) and no error.
      expect(coordinator.replays).toBe(0);
      // The log tells the session that handed back as ended by the hand-back, not as a request stopped after
      // `after` tokens; the session that finished the request says it ended with the rest of them.
      const ended = messages().filter((m) => /^session \d+: \d+ tokens, /.test(m));
      expect(ended).toEqual([expect.stringMatching(new RegExp(`^session \\d+: ${TOKENS - (after as number)} tokens, length$`))]);
      console.log(`hand-back after ${after} of ${TOKENS} tokens: the server computed stage ${short} of ${after} tokens`);
    },
    TEST_MS,
  );

  it(
    "seeded sampling across a hand-back: the draws go on where they were, the reference runner's tokens, verified after it",
    async () => {
      const TOKENS = 60;
      const sampling = { temperature: 1, topK: 0, topP: 1, seed: 5 };
      const expected = await referenceTokens(TOKENS, sampling);
      const { fault, slow } = slowed();
      const { url, coordinator, vs, short, messages } = await shortSwarm(fault);
      const { prove } = await lateVolunteer(url, short, fault);
      const updates: TokenUpdate[] = [];
      const request = coordinator.complete({ prompt: PROMPT, maxTokens: TOKENS, sampling }, (u) => updates.push(u));
      await prove(vs);
      await expect.poll(() => coordinator.handBacks, { timeout: HAND_BACK_MS }).toBe(1);
      slow.ms = 0;
      const c = await request;
      expect(c.tokens).toEqual(expected);
      expect(updates.map((u) => u.token)).toEqual(expected);
      const [after] = handedBackAfter(messages(), short);
      expect(after).toBeGreaterThan(0);
      for (const u of updates.slice(0, after)) expect(u.votes.map((v) => v.server === true)).toEqual([0, 1].map((s) => s === short));
      const rest = updates.slice(after);
      expect(rest.length).toBeGreaterThan(0);
      for (const u of rest) {
        expect(u.votes.some((v) => v.server === true)).toBe(false);
        expect(u.verified).toBe(true);
      }
      // The mesh loop's last stage drew on from the tokens the hand-back had (MeshLoop.draws): never a wrong token.
      expect(coordinator.meshRollBacks).toBe(0);
    },
    TEST_MS,
  );

  it(
    `bounded: volunteers of the short stage that become ready and leave, over and over, buy at most ${MAX_HAND_BACKS} hand-backs, and the request answers the reference's tokens`,
    async () => {
      const TOKENS = 200;
      const expected = await referenceTokens(TOKENS);
      // 20 s of steps at least: three joins and proofs, and a second after the last.
      const { fault, slow } = slowed(100);
      const { url, coordinator, short, messages } = await shortSwarm(fault);
      let answered = false;
      const request = complete(url, TOKENS).finally(() => {
        answered = true;
      });
      // One after another, a new client for the short stage: ready, taken into the request's route by a
      // hand-back, and gone after 3 steps, the server taking the stage back; one more than the bound.
      for (let i = 0; i <= MAX_HAND_BACKS; i++) {
        const v = volunteer(url, `127.0.0.${50 + i}`, { fault });
        v.leaveAfter(3);
        await expect.poll(() => v.stage, { timeout: READY_MS }).toBe(short);
        await expect.poll(() => readyCount(url), { timeout: READY_MS }).toBe(4);
        if (i < MAX_HAND_BACKS) {
          await expect.poll(() => coordinator.handBacks, { timeout: HAND_BACK_MS }).toBe(i + 1);
          // It leaves, and the server takes the stage back (no spare is ready).
          await expect.poll(() => readyCount(url), { timeout: READY_MS }).toBe(3);
        }
      }
      // The last one is ready while the request still runs, for a second of its steps: no third hand-back.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect(answered).toBe(false);
      expect(coordinator.handBacks).toBe(MAX_HAND_BACKS);
      slow.ms = 0;
      const r = await request;
      expect(r.body.error).toBeUndefined();
      expect(r.status).toBe(200);
      expect(r.body.webswarm?.tokens).toEqual(expected);
      expect(coordinator.handBacks).toBe(MAX_HAND_BACKS);
      const after = handedBackAfter(messages(), short);
      expect(after).toHaveLength(MAX_HAND_BACKS);
      // The server kept the stage it took back after the last hand-back, to the end.
      expect(serverStages(r.body).at(-1)).toEqual([short]);
      const computed = serverStages(r.body).filter((s) => s.length > 0).length;
      console.log(`hand-backs after ${after.join(', ')} tokens; the server computed stage ${short} of ${computed} of ${TOKENS} tokens`);
    },
    TEST_MS,
  );
});
