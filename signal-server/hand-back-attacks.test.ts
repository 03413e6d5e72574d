// Red team of the fallback's hand-back (coordinator/hand-back.ts, SessionRunner.handBackTo, RoutePicker.handBackRoute)
// over the real protocol: a real server on port 0, Node volunteers that compute with onnxruntime and speak Socket.IO
// (distinct clients on distinct 127.0.0.x addresses), requests over the HTTP API, the reference runner the oracle.
// 1. A liar of the short stage baits a hand-back (it proves its stage honestly while the server computes that stage
//    for a request), then lies in the handed-back session: the stage has no majority, the server takes it back and
//    keeps it (keptByServer of the new session), later volunteers get no second hand-back, and the requester sees the
//    reference runner's tokens, none `verified` that the server computed.
// 2. A second socket of the short stage's own client (same address): placed on the other stage (or, were it placed
//    beside its twin, not a second client), so no hand-back; the server keeps computing the stage.
import { describe, expect, it } from 'vitest';
import type { NodeVolunteer } from './testing/node-volunteer.js';
import { heldProof, READY_MS, requestRan, serverStages, shortStageSwarm, slowed } from './testing/short-stage-swarm.js';

const { volunteer, readyCount, complete, referenceTokens, start2x2: shortSwarm } = shortStageSwarm('hand-back-attacks');

const HAND_BACK_MS = 30_000;
const TEST_MS = 240_000;

describe('hand-back attacks (FALLBACK=stage)', () => {
  it(
    "a liar that baits a hand-back and then lies: the server takes the stage back and keeps it, no second hand-back, the reference's tokens",
    async () => {
      const TOKENS = 60;
      const expected = await referenceTokens(TOKENS);
      const { fault, slow } = slowed(80);
      const { url, coordinator, vs, short, messages } = await shortSwarm(fault);
      // The liar: honest challenges (it must become ready), then every output of a session moved far off.
      const liar = slowed(80, (d) => d.map((x) => x + 3));
      const held = heldProof();
      const bait = volunteer(url, '127.0.0.60', { fault: liar.fault, holdProof: held.holdProof });
      await expect.poll(() => bait.stage, { timeout: READY_MS }).toBe(short);
      const request = complete(url, TOKENS);
      await requestRan(vs, short, 5);
      held.release();
      await expect.poll(() => coordinator.handBacks, { timeout: HAND_BACK_MS }).toBe(1);
      // The handed-back session has no majority at the short stage (no spare): the server takes it back.
      await expect
        .poll(() => messages().some((m) => new RegExp(`the server computes stage ${short} from step`).test(m)), { timeout: HAND_BACK_MS })
        .toBe(true);
      // The liar and the stage's honest volunteer are still r ready volunteers of distinct clients on the short
      // stage, but the stage was taken for a failed vote: it stays the server's, no second hand-back.
      await requestRan(vs, short, 5 + Math.min(...vs.filter((v) => v.stage !== short).map((v) => v.steps)));
      expect(coordinator.handBacks).toBe(1);
      slow.ms = 0;
      liar.slow.ms = 0;
      const r = await request;
      expect(r.body.error).toBeUndefined();
      expect(r.status).toBe(200);
      expect(r.body.webswarm?.tokens).toEqual(expected);
      expect(coordinator.handBacks).toBe(1);
      expect(bait.steps).toBeGreaterThan(0);
      // `verified` only where no stage was the server's, and the last tokens the server's.
      const votes = r.body.webswarm?.votes ?? [];
      for (const v of votes) if (v.verified) expect(v.server_stages).toEqual([]);
      expect(serverStages(r.body).at(-1)).toEqual([short]);
      expect(r.body.webswarm?.verified).toBe(false);
      const verified = votes.filter((v) => v.verified).length;
      console.log(`liar bait: 1 hand-back, ${verified} of ${TOKENS} tokens verified, the rest the server's`);
    },
    TEST_MS,
  );

  it(
    'a second socket of the short stage’s own client is not a second client: no hand-back, the server keeps the stage',
    async () => {
      const TOKENS = 40;
      const expected = await referenceTokens(TOKENS);
      const { fault, slow } = slowed(80);
      const { url, coordinator, vs, short } = await shortSwarm(fault);
      const owner = vs.find((v) => v.stage === short) as NodeVolunteer;
      const ownerAddress = `127.0.0.${30 + vs.indexOf(owner)}`;
      const request = complete(url, TOKENS);
      await requestRan(vs, short, 3);
      const twin = volunteer(url, ownerAddress, { fault });
      // The server places it away from its own client's stage, or beside it: either way one client, not two.
      await expect.poll(() => twin.stage, { timeout: READY_MS }).not.toBeNull();
      await expect.poll(() => readyCount(url), { timeout: READY_MS }).toBe(4);
      await requestRan(vs, short, 5 + Math.min(...vs.filter((v) => v.stage !== short).map((v) => v.steps)));
      expect(coordinator.handBacks).toBe(0);
      slow.ms = 0;
      const r = await request;
      expect(r.status).toBe(200);
      expect(r.body.webswarm?.tokens).toEqual(expected);
      expect(coordinator.handBacks).toBe(0);
      for (const s of serverStages(r.body)) expect(s).toEqual([short]);
      for (const v of r.body.webswarm?.votes ?? []) expect(v.verified).toBe(false);
      if (twin.stage === short) expect(twin.steps).toBe(0);
    },
    TEST_MS,
  );
});
