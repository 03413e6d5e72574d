// Red team (strays in bytes): frames a linked peer sends for a session before the route names it, or of an era this
// replica has not reached, wait as strays. They were bounded in count (16–18 a session) but each could be the largest
// frame the model allows, from any linked peer: 2.25 MiB a session on this test model (hidden 64, 512 positions),
// 340 MiB at SmolLM's hidden 576 and 8 192 positions, over 16 sessions 5.4 GB of a volunteer's tab. A stage-1
// ReplicaCore of a real stage on onnxruntime, fed real frames (encodeFrame, chunked and checksummed as on a data
// channel) by peers speaking the frame protocol.
import { describe, expect, it } from 'vitest';
import { strayLimit, strayPositionLimit } from '../shared/swarm/replica-core.js';
import { recordingReplica, sendHidden, tinyStagesForFile, until } from './testing/tiny-stages.js';

const stages = tinyStagesForFile('webswarm-rt-stray-bytes-');
const PREV = ['A', 'B', 'C'];
const sybils = (n: number) => Array.from({ length: n }, (_, k) => `X${k}`);

/** A stage-1 replica of PREV that took steps 0..3 of session 1 in era 0, step 0 a prompt of `prompt` positions. */
async function taken(prompt: number) {
  const { manifest } = stages();
  const { hiddenSize: hidden, maxPositions } = manifest.model;
  const { core, digests, rejected } = recordingReplica(stages(), 1);
  core.open({ sessionId: 1, stage: 1, replica: 0, prev: PREV, next: ['n0'], replayTo: 0, era: 0 });
  let most = 0;
  const one = (from: string, step: number, era: number, positions: number, salt = 0) => {
    const replica = Math.max(0, PREV.indexOf(from));
    sendHidden(core, from, { sessionId: 1, step, replica, era, hidden, positions, salt });
    most = Math.max(most, core.held().strayBytes);
  };
  /** Every sender's honest frame of `step` (the prompt's positions at step 0, one after) in `era`. */
  const send = (step: number, era: number) => {
    for (const from of PREV) one(from, step, era, step === 0 ? prompt : 1);
  };
  for (let step = 0; step <= 3; step++) send(step, 0);
  await until(() => digests.length === 4, 'steps 0..3');
  const frameBytes = (positions: number) => positions * hidden * 4;
  return { core, digests, rejected, one, send, maxPositions, frameBytes, most: () => most };
}

describe('strays in bytes (red team)', () => {
  it("a stranger's model-sized frames: a session's strays carry at most strayPositionLimit positions, not 18 largest frames", async () => {
    const { manifest } = stages();
    const { hiddenSize: hidden, maxPositions } = manifest.model;
    const { core, rejected } = recordingReplica(stages(), 1);
    const sessions = 4;
    for (let sid = 1; sid <= sessions; sid++) {
      core.open({ sessionId: sid, stage: 1, replica: 0, prev: PREV, next: ['n0'], replayTo: 0, era: 0 });
      // Steps the replica has not computed (their sizes unknown), in eras it has not reached: all strays.
      for (let k = 0; k < 24; k++)
        for (const x of sybils(2))
          sendHidden(core, x, { sessionId: sid, step: 5 + k, replica: 0, era: 1 + (k % 5), hidden, positions: maxPositions });
    }
    const perSession = strayPositionLimit(PREV.length, maxPositions) * hidden * 4;
    const before = strayLimit(PREV.length) * maxPositions * hidden * 4;
    const held = core.held().strayBytes;
    console.log(`strays held: ${held} bytes over ${sessions} sessions (limit ${perSession} a session; before: ${before})`);
    expect(held).toBeLessThanOrEqual(sessions * perSession);
    expect(held).toBeLessThan((sessions * before) / 4);
    // Each dropped frame is told, as before: 48 a session sent, 2 kept.
    expect(rejected.filter((r) => r.startsWith('ERR_NOT_LINKED stage 0')).length).toBe(sessions * (48 - 2));
    for (let sid = 1; sid <= sessions; sid++) core.close(sid);
  });

  it('a frame of a step computed here must carry its positions: 500 positions as step 2 (one) are refused at once', async () => {
    const r = await taken(4);
    const held = r.core.held().strayBytes;
    r.one('X0', 2, 1, 500);
    r.one('X0', 0, 1, 5); // step 0 carried the 4 of the prompt
    expect(r.rejected.filter((x) => x.startsWith('ERR_FRAME_SHAPE'))).toEqual([
      'ERR_FRAME_SHAPE [1, 500, 64]: step 2 carried 1 positions',
      'ERR_FRAME_SHAPE [1, 5, 64]: step 0 carried 4 positions',
    ]);
    expect(r.core.held().strayBytes).toBe(held);
    // The honest size of a step computed here waits, as do steps not computed yet (their sizes not known here).
    r.one('X0', 2, 1, 1);
    r.one('X0', 0, 1, 4);
    r.one('X0', 9, 1, 7);
    expect(r.core.held().strayBytes).toBe(held + r.frameBytes(1 + 4 + 7));
    r.core.close(1);
  });

  it('a frame of another hidden size is refused as it arrives, not kept until an update places it', async () => {
    const { core, rejected } = recordingReplica(stages(), 1);
    core.open({ sessionId: 1, stage: 1, replica: 0, prev: PREV, next: ['n0'], replayTo: 0, era: 0 });
    sendHidden(core, 'X0', { sessionId: 1, step: 3, replica: 0, era: 1, hidden: 32 });
    expect(rejected).toEqual(['ERR_FRAME_SHAPE [1, 1, 32]']);
    expect(core.held().strayBytes).toBe(0);
    core.close(1);
  });

  it('a roll-back to step 0 of a prompt near the model’s length, update late, 8 Sybils of model-sized frames: recomputed', async () => {
    // The longest prompt the model leaves room for, with 3 steps after it.
    const long = await taken(stages().manifest.model.maxPositions - 8);
    const limit = strayPositionLimit(PREV.length, long.maxPositions);
    for (let step = 0; step <= 2; step++) {
      long.send(step, 1);
      for (const x of sybils(8)) {
        long.one(x, 0, 1 + step, long.maxPositions - 8); // the prompt's own size: allowed, and outweighed
        long.one(x, 20 + step, 1, long.maxPositions);
      }
    }
    // Three senders' prompts (3 × 504 positions) are more than the limit (1 024): one sender's go, a majority stays.
    expect(long.most()).toBeLessThanOrEqual(long.frameBytes(limit));
    long.core.update({ sessionId: 1, prev: PREV, next: ['n0'], resendTo: [], resetFrom: 0, era: 1 });
    await until(() => long.digests.filter((d) => d.resets === 1).length >= 3, 'steps 0..2 computed again in era 1');
    expect(long.digests.filter((d) => d.resets === 1).map((d) => d.step)).toEqual([0, 1, 2]);
    long.core.close(1);
  });

  it('a roll-back to step 0 of a short prompt among the same flood: every sender’s recomputed steps are kept', async () => {
    const r = await taken(6);
    for (let step = 0; step <= 2; step++) {
      r.send(step, 1);
      for (const x of sybils(8)) r.one(x, 20 + step, 1, r.maxPositions);
    }
    // Every sender's three frames wait (3 × (6 + 1 + 1) positions), and of the Sybils' one model-sized frame: the
    // rest of the limit (1 024 positions) has no room for a second.
    expect(r.core.held().strayBytes).toBe(r.frameBytes(3 * 8 + r.maxPositions));
    expect(r.rejected.filter((x) => x.startsWith('ERR_NOT_LINKED')).length).toBe(8 * 3 - 1);
    r.core.update({ sessionId: 1, prev: PREV, next: ['n0'], resendTo: [], resetFrom: 0, era: 1 });
    await until(() => r.digests.filter((d) => d.resets === 1).length >= 3, 'steps 0..2 computed again in era 1');
    expect(r.digests.filter((d) => d.resets === 1).map((d) => d.step)).toEqual([0, 1, 2]);
    r.core.close(1);
  });
});
