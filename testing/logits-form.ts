import type { SessionOpen } from '../shared/protocol/messages.js';
import { logitsAsSent } from '../shared/vote/logits-as-sent.js';

/**
 * For a test that answers for last-stage replicas itself: the form of logits its session asked them for (the
 * top form of session:open's `topLogits`, else the row), as ReplicaCore sends them.
 */
export class LogitsForm {
  private open: SessionOpen | null = null;

  /** Notes a session:open the session sent (to a replica of the last stage). */
  opened(m: SessionOpen): void {
    if (m.next.length === 0) this.open = m;
  }

  /**
   * One row as a replica sends it, computed at `position` (a scored prompt's rows score the token after theirs) of
   * `step` (a drawn form's draw is the step's): the step is the position where a test gives only one.
   */
  sent(row: Float32Array, position = Number.POSITIVE_INFINITY, step = Number.isFinite(position) ? position : 0): Float32Array {
    return logitsAsSent(this.open ?? {}, row, 1, position, row.length, step);
  }
}
