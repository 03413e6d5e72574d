// At r = 3 every replica gets r frames a step and takes the first majority:
// the third frame comes late, every step, on every replica. A real replica
// (ReplicaCore) of a real stage on onnxruntime, fed real frames (encodeFrame,
// as on a data channel): a late copy is neither counted in a vote (the step
// was taken) nor reported as refused (which cost the tab a message and a
// status update per frame, r² a step: issue #11's super-linear CPU), whether
// its sender is slow or lying; what is refused still is, by name.
import { describe, expect, it } from 'vitest';
import { GREEDY } from '../shared/model/sampling.js';
import { type ActivationFrame, encodeFrame } from '../shared/protocol/frames.js';
import { tokenFrame, tokenPrint } from '../shared/swarm/mesh-loop.js';
import { strayLimit } from '../shared/swarm/replica-core.js';
import { fingerprint } from '../shared/vote/fingerprint.js';
import { recordingReplica, tinyStagesForFile, until } from './testing/tiny-stages.js';

const SESSION = 11;
const PREV = ['A', 'B', 'H'];
const LAST = ['L0', 'L1', 'L2'];
const STEPS = 40;

const stages = tinyStagesForFile('webswarm-late-frames-');

function replica(stage: number, open: { prev: readonly string[]; loop?: boolean }) {
  const { core, digests, rejected } = recordingReplica(stages(), stage);
  core.open({
    sessionId: SESSION,
    stage,
    replica: 0,
    prev: open.prev,
    next: ['n0'],
    replayTo: 0,
    ...(open.loop === true ? { loop: { peers: LAST, sampling: GREEDY, steps: STEPS + 1 } } : {}),
  });
  const send = (from: string, f: ActivationFrame) => {
    for (const m of encodeFrame(f)) core.frame(from, m);
  };
  return { core, digests, rejected, send };
}

describe('late frames at r = 3', () => {
  it("a stage's third frame of each step, after the majority was taken, is neither counted nor refused, honest or lying", async () => {
    const r = replica(1, { prev: PREV });
    const { manifest } = stages();
    const hidden = manifest.model.hiddenSize;
    const frame = (replica: number, step: number, values: Float32Array): ActivationFrame => ({
      sessionId: SESSION,
      step,
      stage: 0,
      replica,
      dims: [1, values.length / hidden, hidden],
      data: values,
    });
    const honest = (step: number) => Float32Array.from({ length: (step === 0 ? 3 : 1) * hidden }, (_, i) => Math.sin(i + step));
    for (let step = 0; step < STEPS; step++) {
      const data = honest(step);
      r.send('A', frame(0, step, data));
      r.send('B', frame(1, step, data));
      // H's copy comes after the majority: on odd steps while the step computes, on even ones after its digest;
      // on steps from 8 on it lies (a nudge that, counted, would have been another input).
      const late = step >= 8 ? data.map((x) => x + 0.5) : data;
      if (step % 2 === 1) r.send('H', frame(2, step, late));
      await until(() => r.digests.length === step + 1, `step ${step}`, 20_000);
      if (step % 2 === 0) r.send('H', frame(2, step, late));
    }
    // More than the strays kept (strayLimit) came late: none is refused, none moved an input, none was reported as received.
    expect(r.rejected).toEqual([]);
    for (const [step, d] of r.digests.entries()) {
      expect(d.input).toEqual(fingerprint(honest(step)));
      expect(d.received.map((x) => x.from)).toEqual(['A', 'B']);
    }
    // Still refused by name: frames of a stage this replica does not follow, and H flooding frames of a later era
    // (kept a while, for a roll-back's frames can overtake its update, then refused as more come).
    r.send('H', { ...frame(2, STEPS, honest(STEPS)), stage: 1 });
    for (let i = 0; i < 40; i++) r.send('H', { ...frame(2, STEPS + 1 + (i % 8), honest(1)), era: 1 });
    await new Promise((res) => setTimeout(res, 50));
    expect(r.rejected[0]).toBe('ERR_FRAME_UNWANTED');
    expect(r.rejected.filter((x) => x === 'ERR_NOT_LINKED stage 0 replica 2').length).toBeGreaterThanOrEqual(40 - strayLimit(PREV.length));
    expect(r.digests.length).toBe(STEPS);
    r.core.close(SESSION);
  });

  it("stage 0 (mesh loop): the third last-stage replica's token of a step already taken is dropped quietly, a liar's too", async () => {
    const r = replica(0, { prev: [], loop: true });
    const { manifest } = stages();
    const token = (step: number, i: number, id: number) => ({ ...tokenFrame(SESSION, step, manifest.stages.length - 1, i, id), era: 0 });
    r.core.input({ sessionId: SESSION, step: 0, tokens: [1, 2, 3] });
    await until(() => r.digests.length === 1, 'step 0');
    for (let step = 1; step < 8; step++) {
      r.send('L0', token(step, 0, 10 + step));
      r.send('L1', token(step, 1, 10 + step));
      await until(() => r.digests.length === step + 1, `step ${step}`);
      // L2 late: honest on odd steps, lying on even ones.
      r.send('L2', token(step, 2, step % 2 === 1 ? 10 + step : 99));
      // The coordinator verifies the step's token, keeping the loop within reach.
      r.core.input({ sessionId: SESSION, step, tokens: [10 + step] });
    }
    await new Promise((res) => setTimeout(res, 50));
    expect(r.rejected).toEqual([]);
    expect(r.digests.map((d) => d.input)).toEqual([fingerprint([1, 2, 3]), ...[1, 2, 3, 4, 5, 6, 7].map((s) => tokenPrint(10 + s))]);
    // Step 0 is the prompt's, never a token's: still refused by name.
    r.send('L2', token(0, 2, 5));
    await new Promise((res) => setTimeout(res, 20));
    expect(r.rejected).toEqual(['ERR_STALE_STEP token for step 0']);
    r.core.close(SESSION);
  });
});
