// Red team: a stage-0 replica (ReplicaCore, real stage on onnxruntime) of a scored prompt whose tokens the
// coordinator sends up to MESH_AHEAD steps ahead (283ae5c), rolled back by the coordinator (a later stage retried:
// `rollBack` sends it session:update with resetFrom, then step's token again). In a browser the update waits for
// the data channels to the new neighbours (web/volunteer/replica.ts: linkNeighbours(...).then(update)); step:input
// does not wait. Meanwhile the coordinator decides the next steps with the other replicas, and sends this one the
// tokens of the steps after them.
import { describe, expect, it } from 'vitest';
import { MESH_AHEAD } from '../shared/swarm/mesh-loop.js';
import { recordingReplica, sendHidden, tinyStagesForFile, until } from './testing/tiny-stages.js';

const SESSION = 21;
const PROMPT = [5, 6, 7, 8, 9, 10, 11, 12, 13, 14];
const stages = tinyStagesForFile('webswarm-rt-score-replica-');

function stage0() {
  const { core, digests } = recordingReplica(stages(), 0);
  core.open({ sessionId: SESSION, stage: 0, replica: 0, prev: [], next: ['n0', 'n1', 'n2'], replayTo: 0 });
  /** The coordinator's token for `step` (step s > 0 computes on the prompt's token s − 1, as sendAhead sends it). */
  const input = (step: number) => core.input({ sessionId: SESSION, step, tokens: [PROMPT[step] as number] });
  return { core, digests, input };
}

describe('a stage-0 replica of a scored prompt whose roll-back update comes late (a browser linking to the new neighbours)', () => {
  it('the roll-back to step s comes after the coordinator went 3 steps on without it (tokens up to s + 5 sent ahead): it computes step s again, not stuck', async () => {
    const r = stage0();
    const s = 2;
    // Steps 0..s + MESH_AHEAD: sent while step s was in flight; computed.
    for (let step = 0; step <= s + MESH_AHEAD; step++) r.input(step);
    await until(() => r.digests.length === s + MESH_AHEAD + 1, 'steps 0..4');
    // The coordinator rolls every stage back to s (stage 1 retried on spares): update first, then s's token again.
    // Here the token comes first (the update waits for the data channels to the newcomers of stage 1).
    r.input(s);
    // The coordinator decides s, s + 1, s + 2 with the two other replicas of stage 0; at each step's start it sends
    // the token MESH_AHEAD steps further.
    for (let step = s + MESH_AHEAD + 1; step <= s + MESH_AHEAD + 3; step++) r.input(step);
    await until(() => r.digests.length === s + MESH_AHEAD + 4, 'steps 5..7 (old era)');
    // Now the update: every step from s on again, in era 1.
    r.core.update({ sessionId: SESSION, prev: [], next: ['n0', 'n3', 'n4'], resendTo: [], resetFrom: s, era: 1 });
    // It computes s again from the tokens it was given (SessionState.given), and the steps after it.
    await new Promise((res) => setTimeout(res, 1_000));
    const again = r.digests.filter((d) => d.resets === 1).map((d) => d.step);
    r.core.close(SESSION);
    expect(again.slice(0, 3), 'steps computed after the roll-back').toEqual([s, s + 1, s + 2]);
  });

  it('the same with the coordinator 2 steps on (tokens up to s + 4): it computes step s again', async () => {
    const r = stage0();
    const s = 2;
    for (let step = 0; step <= s + MESH_AHEAD; step++) r.input(step);
    await until(() => r.digests.length === s + MESH_AHEAD + 1, 'steps 0..4');
    r.input(s);
    for (let step = s + MESH_AHEAD + 1; step <= s + MESH_AHEAD + 2; step++) r.input(step);
    await until(() => r.digests.length === s + MESH_AHEAD + 3, 'steps 5..6 (old era)');
    r.core.update({ sessionId: SESSION, prev: [], next: ['n0', 'n3', 'n4'], resendTo: [], resetFrom: s, era: 1 });
    await until(() => r.digests.some((d) => d.step === s && d.resets === 1), `step ${s} again`);
    r.core.close(SESSION);
  });

  it('the same roll-back, its update in time (before the next tokens): step s computed again, and the steps after it (control)', async () => {
    const r = stage0();
    const s = 2;
    for (let step = 0; step <= s + MESH_AHEAD; step++) r.input(step);
    await until(() => r.digests.length === s + MESH_AHEAD + 1, 'steps 0..4');
    r.input(s);
    r.core.update({ sessionId: SESSION, prev: [], next: ['n0', 'n3', 'n4'], resendTo: [], resetFrom: s, era: 1 });
    await until(() => [s, s + 1, s + 2].every((k) => r.digests.some((d) => d.step === k && d.resets === 1)), 'steps 2..4 again');
    r.core.close(SESSION);
  });
});

/** A stage-1 replica fed by stage 0's replicas A, B and C (fan-out: all). */
function stage1() {
  const { manifest } = stages();
  const { core, digests, rejected } = recordingReplica(stages(), 1);
  const prev = ['A', 'B', 'C'];
  core.open({ sessionId: SESSION, stage: 1, replica: 0, prev, next: ['n0'], replayTo: 0 });
  const hidden = manifest.model.hiddenSize;
  /** Stage 0's output of `step` (one position), the same from each sender, in `era`. */
  const send = (step: number, era: number) => {
    for (const [replica, from] of prev.entries()) sendHidden(core, from, { sessionId: SESSION, step, replica, era, hidden });
  };
  return { core, digests, rejected, send };
}

describe('a stage-1 replica of a scored prompt whose roll-back update comes late', () => {
  for (const lag of [2, 3])
    it(`stage 0 recomputes from step s in the new era and runs ${lag} steps on (its frames up to s + ${lag + MESH_AHEAD}) before the update: the replica computes s again`, async () => {
      const r = stage1();
      const s = 2;
      for (let step = 0; step <= s + MESH_AHEAD; step++) r.send(step, 0);
      await until(() => r.digests.length === s + MESH_AHEAD + 1, 'steps 0..4');
      for (let step = s; step <= s + lag + MESH_AHEAD; step++) r.send(step, 1);
      r.core.update({ sessionId: SESSION, prev: ['A', 'B', 'C'], next: ['n0'], resendTo: [], resetFrom: s, era: 1 });
      await new Promise((res) => setTimeout(res, 1_000));
      const again = r.digests.filter((d) => d.resets === 1).map((d) => d.step);
      r.core.close(SESSION);
      expect(again.slice(0, 3), `steps computed after the roll-back (refused: ${r.rejected.slice(0, 4).join('; ')})`).toEqual([
        s,
        s + 1,
        s + 2,
      ]);
    });
});
