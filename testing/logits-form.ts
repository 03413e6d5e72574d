import type { SessionOpen } from '../shared/protocol/messages.js';
import { rowAsSent } from '../shared/vote/top-logits.js';

/**
 * For a test that answers for last-stage replicas itself: the form of logits its session asked them for (the
 * top form of session:open's `topLogits`, else the row), as ReplicaCore sends them.
 */
export class LogitsForm {
  private topLogits: number | undefined;

  /** Notes a session:open the session sent (to a replica of the last stage, or any: they carry the same). */
  opened(m: SessionOpen): void {
    if (m.next.length === 0) this.topLogits = m.topLogits;
  }

  /** `row` as a replica sends it. */
  sent(row: Float32Array): Float32Array {
    return rowAsSent(row, this.topLogits);
  }
}
