import { MAX_FRAME_BATCH, MAX_FRAME_BATCH_BYTES } from '../protocol/messages.js';

// The sender packs each batch into one binary (packFrameMessages): Socket.IO's parser takes few attachments per event.

/**
 * Gathers the data-channel messages a replica sends to a server replica (the
 * fallback, reached over the socket) within one turn, and sends them as few
 * `frame` events as the batch limits allow, in order: a replay of a long
 * session's history is then a handful of events, well inside a socket's event
 * budget, not one per step.
 */
export class FrameBatcher {
  private readonly pending = new Map<string, Uint8Array[]>();
  private scheduled = false;

  constructor(
    private readonly send: (to: string, batch: Uint8Array[]) => void,
    private readonly schedule: (f: () => void) => void = (f) => void Promise.resolve().then(f),
  ) {}

  push(to: string, messages: readonly Uint8Array[]): void {
    let list = this.pending.get(to);
    if (list === undefined) {
      list = [];
      this.pending.set(to, list);
    }
    list.push(...messages);
    if (this.scheduled) return;
    this.scheduled = true;
    this.schedule(() => this.flush());
  }

  /** Sends what is pending now. */
  flush(): void {
    this.scheduled = false;
    const all = [...this.pending];
    this.pending.clear();
    for (const [to, messages] of all) {
      let batch: Uint8Array[] = [];
      let bytes = 0;
      for (const m of messages) {
        if (batch.length > 0 && (batch.length >= MAX_FRAME_BATCH || bytes + m.byteLength > MAX_FRAME_BATCH_BYTES)) {
          this.send(to, batch);
          batch = [];
          bytes = 0;
        }
        batch.push(m);
        bytes += m.byteLength;
      }
      if (batch.length > 0) this.send(to, batch);
    }
  }
}
