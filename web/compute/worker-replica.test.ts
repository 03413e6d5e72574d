// The worker's replica counts what it refuses and hands the counts to the page
// in batches: a flood of junk frames is a few events, not one per frame, and
// no refusal is lost. A real ReplicaCore of a real stage (tiny-gqa-bias on
// onnxruntime in Node), fed as the main thread feeds it (replica:frame).
import { describe, expect, it } from 'vitest';
import { CachingExecutor } from '../../shared/model/pipeline.js';
import { encodeFrame } from '../../shared/protocol/frames.js';
import { tinyStagesForFile } from '../../signal-server/testing/tiny-stages.js';
import type { ReplicaEvent } from './datapath-messages.js';
import { WorkerReplica } from './worker-replica.js';

const stages = tinyStagesForFile('webswarm-worker-replica-');

describe('the worker replica reports refused frames in batches', () => {
  it('10 000 junk messages and 100 frames of a session it does not hold: a few events, every refusal counted by its code', async () => {
    const { manifest, ort } = stages();
    const events: ReplicaEvent[] = [];
    const sessions = new CachingExecutor(manifest, ort);
    const replica = new WorkerReplica(
      (e) => events.push(e),
      () => ({ manifest, sessions }),
    );
    replica.handle({ type: 'replica:start', stage: 1, fault: null, share: 1, trace: false, maxSessions: 16 });
    replica.handle({ type: 'replica:open', open: { sessionId: 3, stage: 1, replica: 0, prev: ['A'], next: ['C'], replayTo: 0 } });
    for (let i = 0; i < 10_000; i++) replica.handle({ type: 'replica:frame', peer: 'A', bytes: Uint8Array.of(i & 0xff, 1, 2) });
    const hidden = manifest.model.hiddenSize;
    for (let i = 0; i < 100; i++)
      for (const bytes of encodeFrame({
        sessionId: 99,
        step: i,
        stage: 0,
        replica: 0,
        dims: [1, 1, hidden],
        data: new Float32Array(hidden),
      }))
        replica.handle({ type: 'replica:frame', peer: 'A', bytes });
    expect(events).toEqual([]); // nothing yet: the counts wait for the interval
    await new Promise((r) => setTimeout(r, 300));
    const refused = events.filter((e): e is Extract<ReplicaEvent, { kind: 'rejected' }> => e.kind === 'rejected');
    expect(refused.map((e) => [e.reason, e.count])).toEqual([
      ['ERR_FRAME_TOO_SHORT', 10_000],
      ['ERR_FRAME_UNWANTED', 100],
    ]);
    expect(replica.held()).toEqual({ assemblingBytes: 0, strayBytes: 0, openVotes: 0 });
  });
});
