// The log line of a replayed request says why it is replayed. Before, a
// request replayed because the model was re-partitioned under it was logged as
// "replaying a request after 11 tokens (the model was re-partitioned (r0-5_5-6)
// while the request ran, and it could not be replayed) on the new partition":
// the error's message is meant for a client it escapes to, not for the replay.
import { describe, expect, it } from 'vitest';
import { GenerationError } from './generation-error.js';
import { ReplayOnNewPartition, replayReason } from './repartition.js';

describe('replayReason', () => {
  it('a re-partition under the request: what happened, not "could not be replayed"', () => {
    const e = new ReplayOnNewPartition('r0-5_5-6');
    // What a client reads should the replays run out.
    expect(e.message).toMatch(/could not be replayed/);
    expect(replayReason(e)).toBe('the model was re-partitioned (r0-5_5-6) while it ran');
  });

  it("another failure that makes a replay: that failure's message", () => {
    const e = new GenerationError('ERR_NO_QUORUM', 'step 1: the 2 replicas of stage 1 did not agree');
    expect(replayReason(e)).toBe('step 1: the 2 replicas of stage 1 did not agree');
  });
});
