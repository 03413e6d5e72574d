// A stage-1 replica's inputs from a hostile sender of the previous stage (found
// by a red-team pass): frames of the model's full length for every step the
// window admits, and steps that carry the session past the model's positions.
// A real replica (ReplicaCore) of a real stage on onnxruntime, fed real frames
// (encodeFrame, chunked and checksummed as on a data channel).
import { describe, expect, it } from 'vitest';
import { recordingReplica, sendHidden, tinyStagesForFile, until } from './testing/tiny-stages.js';

const stages = tinyStagesForFile('webswarm-framepositions-');
const PREV = ['A', 'B', 'C'];

/** A frame from `from` of `positions` positions for `step` (values alike for every sender: a majority can form). */
function sendPositions(
  core: ReturnType<typeof recordingReplica>['core'],
  from: string,
  sessionId: number,
  step: number,
  positions: number,
  hidden: number,
) {
  sendHidden(core, from, { sessionId, step, replica: PREV.indexOf(from), era: 0, hidden, positions });
}

function open(core: ReturnType<typeof recordingReplica>['core'], sessionId: number): void {
  core.open({ sessionId, stage: 1, replica: 0, prev: PREV, next: ['n0'], replayTo: 0 });
}

describe("a previous stage's sender, hostile", () => {
  it("cannot make the replica hold more positions of its frames than a session has left: 64 steps ahead of model-sized frames in 4 sessions held 256 votes (32 MiB here, 1.2 GB a session at SmolLM's 8 192 positions); now one each", async () => {
    const { manifest } = stages();
    const { core, rejected } = recordingReplica(stages(), 1);
    const { hiddenSize: hidden, maxPositions } = manifest.model;
    for (let sid = 1; sid <= 4; sid++) {
      open(core, sid);
      for (let step = 1; step <= 64; step++) sendPositions(core, 'A', sid, step, maxPositions, hidden);
    }
    await new Promise((r) => setTimeout(r, 100));
    expect(core.held().openVotes).toBe(4);
    expect(rejected.filter((r) => r.startsWith('ERR_FRAME_SHAPE')).length).toBe(4 * 63);
    expect(rejected[0]).toMatch(/positions held and this frame's past the \d+ the session has left/);
    core.close(1);
  });

  it('cannot carry a session past the model’s positions: a full prompt, then more, computes the prompt and refuses the rest', async () => {
    const { manifest } = stages();
    const { core, digests, rejected } = recordingReplica(stages(), 1);
    const { hiddenSize: hidden, maxPositions } = manifest.model;
    open(core, 1);
    // The route's three senders agree (a majority), so only the bound can stop it.
    for (const from of PREV) sendPositions(core, from, 1, 0, maxPositions, hidden);
    await until(() => digests.length === 1, 'step 0 computed');
    for (const from of PREV) sendPositions(core, from, 1, 1, 1, hidden);
    await new Promise((r) => setTimeout(r, 200));
    expect(digests.map((d) => d.step)).toEqual([0]);
    expect(rejected.filter((r) => r.includes('past the 0 the session has left'))).toHaveLength(3);
  });

  it('cannot pass the bound while a step computes: a full prompt, and at once a full frame for the next step, computes the prompt alone (before, both: twice the positions)', async () => {
    const { manifest } = stages();
    const { core, digests, rejected } = recordingReplica(stages(), 1);
    const { hiddenSize: hidden, maxPositions } = manifest.model;
    open(core, 1);
    for (const from of PREV) sendPositions(core, from, 1, 0, maxPositions, hidden);
    // Step 0 is computing now (its vote taken, its positions not yet in the cache's count).
    for (const from of PREV) sendPositions(core, from, 1, 1, maxPositions, hidden);
    await until(() => digests.length >= 1, 'step 0 computed');
    await new Promise((r) => setTimeout(r, 200));
    expect(digests.map((d) => d.step)).toEqual([0]);
    expect(rejected.filter((r) => r.includes('past the 0 the session has left'))).toHaveLength(3);
  });

  it('leaves honest one-position steps alone, up to the last position the model has', async () => {
    const { manifest } = stages();
    const { core, digests, rejected } = recordingReplica(stages(), 1);
    const { hiddenSize: hidden, maxPositions } = manifest.model;
    open(core, 1);
    for (const from of PREV) sendPositions(core, from, 1, 0, maxPositions - 3, hidden);
    // Three more steps of one position each, all sent ahead at once (the window admits them).
    for (let step = 1; step <= 3; step++)
      for (const from of PREV) sendHidden(core, from, { sessionId: 1, step, replica: PREV.indexOf(from), era: 0, hidden });
    await until(() => digests.length === 4, 'steps 0–3 computed');
    expect(rejected).toEqual([]);
  });
});
