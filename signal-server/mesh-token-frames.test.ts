// Stage 0's side of the mesh loop at its boundary: a real replica (ReplicaCore)
// of a real stage on onnxruntime, fed real frames (encodeFrame, chunked and
// checksummed as on a data channel) by strangers, impostors and the route's own
// last-stage replicas. A token is taken only from a majority of the route's
// last stage, for a step within reach, in the session's era; anything else is
// dropped with a named reason and the step waits for the coordinator.
// And a stage-1 replica's strays: frames that overtake the route update naming
// or rolling back their sender wait (a bounded few per session) until it
// comes; a sender flooding frames of a later era must not push the honest
// senders' strays out, for the step would wait for frames never sent again.
import { describe, expect, it } from 'vitest';
import { CachingExecutor } from '../shared/model/pipeline.js';
import { GREEDY } from '../shared/model/sampling.js';
import { type ActivationFrame, encodeFrame, FrameAssembler } from '../shared/protocol/frames.js';
import type { StepDigest } from '../shared/protocol/messages.js';
import { MESH_AHEAD, tokenFrame, tokenPrint } from '../shared/swarm/mesh-loop.js';
import { ReplicaCore } from '../shared/swarm/replica-core.js';
import { fingerprint } from '../shared/vote/fingerprint.js';
import { recordingReplica, tinyStagesForFile, until } from './testing/tiny-stages.js';

const SESSION = 7;
const LAST = ['L0', 'L1', 'L2'];
const STRAY_SESSION = 9;
const PREV = ['A', 'B', 'H'];

const stages = tinyStagesForFile('webswarm-meshframes-');

/** A quiet moment: whatever a frame set off has had time to run. */
const settle = () => new Promise((r) => setTimeout(r, 100));

function stageZero(steps = 50) {
  const { manifest, ort } = stages();
  const digests: StepDigest[] = [];
  const rejected: string[] = [];
  const sent: ActivationFrame[] = [];
  let meshSteps = 0;
  const next = new FrameAssembler();
  const core = new ReplicaCore(manifest, 0, new CachingExecutor(manifest, ort), {
    frames: (_to, messages) => {
      for (const m of messages) {
        const r = next.push(m);
        if (r.kind === 'complete') sent.push(r.frame);
      }
    },
    digest: (m) => digests.push(m),
    logits: () => {},
    failed: () => {},
    computed: () => {},
    rejected: (reason) => rejected.push(reason),
    meshStep: () => {
      meshSteps += 1;
    },
  });
  core.open({
    sessionId: SESSION,
    stage: 0,
    replica: 0,
    prev: [],
    next: ['n0'],
    replayTo: 0,
    loop: { peers: LAST, sampling: GREEDY, steps },
  });
  const send = (from: string, f: ActivationFrame) => {
    for (const m of encodeFrame(f)) core.frame(from, m);
  };
  const token = (step: number, replica: number, id: number, era = 0): ActivationFrame => ({
    ...tokenFrame(SESSION, step, manifest.stages.length - 1, replica, id),
    era,
  });
  return { core, digests, rejected, sent, send, token, meshSteps: () => meshSteps };
}

describe("stage 0 takes the last stage's tokens only as the route and the vote allow", () => {
  it('strangers, impostors, malformed and out-of-reach token frames are dropped by name; a majority of the route is taken', async () => {
    const z = stageZero();
    z.core.input({ sessionId: SESSION, step: 0, tokens: [1, 2, 3] });
    await until(() => z.digests.length === 1, 'step 0');
    const vocab = stages().manifest.model.vocabSize;
    // A peer the route does not name, and a route member claiming another replica's place.
    z.send('stranger', z.token(1, 0, 5));
    z.send('L1', z.token(1, 0, 5));
    // Malformed: two values, an id beyond the vocabulary, a fraction.
    z.send('L0', { ...z.token(1, 0, 5), dims: [2], data: Float32Array.of(5, 5) });
    z.send('L0', z.token(1, 0, vocab));
    z.send('L0', z.token(1, 0, 1.5));
    // Past (step 0 is the prompt's) and beyond reach (the last verified step + MESH_AHEAD + 1).
    z.send('L0', z.token(0, 0, 5));
    z.send('L0', z.token(MESH_AHEAD + 2, 0, 5));
    // Another session.
    for (const m of encodeFrame({ ...z.token(1, 0, 5), sessionId: SESSION + 1 })) z.core.frame('L0', m);
    await settle();
    expect(z.digests.length).toBe(1);
    expect(z.rejected).toEqual([
      'ERR_NOT_LINKED token from stranger as last-stage replica 0',
      'ERR_NOT_LINKED token from L1 as last-stage replica 0',
      'ERR_FRAME_SHAPE [2]',
      `ERR_BAD_TOKEN ${vocab}`,
      'ERR_BAD_TOKEN 1.5',
      'ERR_STALE_STEP token for step 0',
      `ERR_STALE_STEP token for step ${MESH_AHEAD + 2}`,
      'ERR_FRAME_UNWANTED',
    ]);
    // One of three, then a second that disagrees: no majority, nothing computed.
    z.send('L0', z.token(1, 0, 5));
    z.send('L1', z.token(1, 1, 6));
    // A second, different token from the same sender does not count twice.
    z.send('L0', z.token(1, 0, 6));
    await settle();
    expect(z.digests.length).toBe(1);
    // The third agrees with the first: a majority of the route's last stage, taken.
    z.send('L2', z.token(1, 2, 5));
    await until(() => z.digests.length === 2, 'step 1');
    expect(z.digests[1]?.input).toEqual(tokenPrint(5));
    // Its digest tells the coordinator what each sender sent (a liar's token is seen).
    expect(z.digests[1]?.received).toEqual([
      { from: 'L0', digest: tokenPrint(5) },
      { from: 'L1', digest: tokenPrint(6) },
      { from: 'L2', digest: tokenPrint(5) },
    ]);
    expect(z.meshSteps()).toBe(1);
  });

  it('runs at most MESH_AHEAD steps beyond the last verified one; a roll-back drops the frames of the undone path by their era', async () => {
    const z = stageZero();
    z.core.input({ sessionId: SESSION, step: 0, tokens: [1, 2, 3] });
    await until(() => z.digests.length === 1, 'step 0');
    for (const step of [1, 2, 3]) for (const i of [0, 1]) z.send(LAST[i] as string, z.token(step, i, 10 + step));
    await until(() => z.digests.length === 1 + MESH_AHEAD, 'the steps within reach');
    await settle();
    // Step 3 is beyond reach until the coordinator verifies step 1's token.
    expect(z.digests.map((d) => d.step)).toEqual([0, 1, 2]);
    z.core.input({ sessionId: SESSION, step: 1, tokens: [11] });
    await until(() => z.digests.length === 4, 'step 3');
    expect(z.digests[3]?.input).toEqual(tokenPrint(13));
    expect(z.meshSteps()).toBe(3);
    // The coordinator found step 2 computed on an unverified token: the whole pipeline goes back, in a new era.
    z.core.update({ sessionId: SESSION, prev: [], next: ['n0'], resendTo: [], resetFrom: 2, era: 1 });
    z.send('L0', z.token(4, 0, 14, 0));
    await settle();
    expect(z.rejected).toContain('ERR_STALE_STEP era 0 step 4: from a path since rolled back');
    expect(z.digests.length).toBe(4);
    // The verified token for step 2: computed on it, and its output goes on in the new era.
    z.core.input({ sessionId: SESSION, step: 2, tokens: [99] });
    await until(() => z.digests.length === 5, 'step 2 again');
    expect(z.digests[4]).toMatchObject({ step: 2, input: tokenPrint(99), resets: 1 });
    expect(z.sent.at(-1)).toMatchObject({ step: 2, era: 1 });
  });

  it("a majority's token for a step past the generation's end (max_tokens) is dropped: nothing is computed beyond it", async () => {
    const z = stageZero(3);
    z.core.input({ sessionId: SESSION, step: 0, tokens: [1, 2, 3] });
    await until(() => z.digests.length === 1, 'step 0');
    // Steps 1 and 2 are the generation's last; step 3 is within MESH_AHEAD's reach but past its end.
    for (const step of [1, 2, 3]) for (const i of [0, 1]) z.send(LAST[i] as string, z.token(step, i, 10 + step));
    await until(() => z.digests.length === 3, 'steps 1 and 2');
    z.core.input({ sessionId: SESSION, step: 1, tokens: [11] });
    z.core.input({ sessionId: SESSION, step: 2, tokens: [12] });
    await settle();
    expect(z.digests.map((d) => d.step)).toEqual([0, 1, 2]);
    expect(z.rejected).toEqual([
      "ERR_STALE_STEP token for step 3: past the generation's 3 steps",
      "ERR_STALE_STEP token for step 3: past the generation's 3 steps",
    ]);
  });
});

describe("a replica's strays of a later era (a roll-back's frames overtaking its update)", () => {
  it("a sender flooding frames of a later era cannot push the honest senders' strays out before the update comes", async () => {
    const { manifest } = stages();
    const { core, digests } = recordingReplica(stages(), 1);
    core.open({ sessionId: STRAY_SESSION, stage: 1, replica: 0, prev: PREV, next: ['n0'], replayTo: 0 });
    const hidden = manifest.model.hiddenSize;
    const positions = 3;
    const data = Float32Array.from({ length: positions * hidden }, (_, i) => Math.sin(i));
    const frame = (replica: number, era: number, step = 0, values = data): ActivationFrame => ({
      sessionId: STRAY_SESSION,
      step,
      stage: 0,
      replica,
      dims: [1, values.length / hidden, hidden],
      data: values,
      era,
    });
    const send = (from: string, f: ActivationFrame) => {
      for (const m of encodeFrame(f)) core.frame(from, m);
    };
    // The coordinator rolled the pipeline back (era 1): A and B recomputed step 0, and their frames overtake the update.
    send('A', frame(0, 1));
    send('B', frame(1, 1));
    // H, hostile, floods frames of the new era for steps to come.
    const junk = new Float32Array(hidden);
    for (let i = 0; i < 64; i++) send('H', frame(2, 1, 1 + (i % 8), junk));
    await new Promise((r) => setTimeout(r, 50));
    expect(digests).toEqual([]);
    // The update comes: A's and B's frames, kept, are a majority.
    core.update({ sessionId: STRAY_SESSION, prev: PREV, next: ['n0'], resendTo: [], era: 1 });
    await until(() => digests.length === 1, 'step 0 on the honest strays');
    expect(digests[0]).toMatchObject({ step: 0, input: fingerprint(data) });
    core.close(STRAY_SESSION);
  });
});
