// A replica's session limit and its challenges (ReplicaCore, a real stage on
// onnxruntime): a stage with graph capture holds a row of KV cache a session
// and one for challenges (web/compute/capture-plan.ts), so the replica keeps
// no more sessions than its limit and runs its challenges one at a time, each
// on its own fresh session that is released before the next begins.
import { describe, expect, it } from 'vitest';
import { CachingExecutor, type SessionExecutor } from '../shared/model/pipeline.js';
import type { StepFailure } from '../shared/protocol/messages.js';
import { ReplicaCore } from '../shared/swarm/replica-core.js';
import { tinyStagesForFile } from './testing/tiny-stages.js';

const stages = tinyStagesForFile('webswarm-replica-limit-');

/** The caching executor, counting the sessions it holds at once (a step's session until its release). */
function counting(): { executor: SessionExecutor; most: () => number } {
  const s = stages();
  const inner = new CachingExecutor(s.manifest, s.ort);
  const held = new Set<number>();
  let most = 0;
  return {
    executor: {
      step: async (session, stage, input, from) => {
        held.add(session);
        most = Math.max(most, held.size);
        return inner.step(session, stage, input, from);
      },
      truncate: (session, positions) => inner.truncate(session, positions),
      release: (session) => {
        held.delete(session);
        inner.release(session);
      },
    },
    most: () => most,
  };
}

function replica(executor: SessionExecutor, maxSessions?: number): { core: ReplicaCore; failed: StepFailure[] } {
  const failed: StepFailure[] = [];
  const out = {
    frames: () => {},
    digest: () => {},
    logits: () => {},
    failed: (m: StepFailure) => failed.push(m),
    computed: () => {},
    rejected: () => {},
  };
  const s = stages();
  return { core: new ReplicaCore(s.manifest, 0, executor, out, null, undefined, undefined, maxSessions), failed };
}

describe('a replica with a session limit', () => {
  it('keeps its limit of sessions and refuses the next as full, naming the limit; a closed one makes room', () => {
    const { core, failed } = replica(counting().executor, 2);
    const open = (sessionId: number) => core.open({ sessionId, stage: 0, replica: 0, prev: [], next: ['n0'], replayTo: 0 });
    expect([open(1), open(2), open(3)]).toEqual([true, true, false]);
    expect(failed).toEqual([{ sessionId: 3, step: 0, code: 'ERR_REPLICA_FULL', message: 'this replica keeps 2 sessions open already' }]);
    core.close(1);
    expect(open(3)).toBe(true);
  });

  it('refuses a limit outside 1..16', () => {
    for (const n of [0, 17, 1.5]) expect(() => replica(counting().executor, n)).toThrow(/maxSessions must be an integer in 1\.\.16/);
  });

  it('runs challenges one at a time, each answered as when alone', async () => {
    const c = counting();
    const { core } = replica(c.executor);
    const challenge = (tokens: number[]) => core.challenge({ challengeId: 1, stage: 0, tokens, hidden: new Float32Array() });
    const alone = await challenge([1, 2, 3, 4]);
    const together = await Promise.all([challenge([1, 2, 3, 4]), challenge([5, 6, 7, 8]), challenge([1, 2, 3, 4])]);
    expect(together[0]).toEqual(alone);
    expect(together[2]).toEqual(alone);
    expect(together[1]).not.toEqual(alone);
    expect(c.most()).toBe(1);
  });
});
