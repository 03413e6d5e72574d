import type { SwarmStatus } from '../shared/protocol/messages.js';
import type { SwarmServer } from './socket-handlers.js';

const ROOM = 'status';

/** Most one `swarm:status` a subscriber gets: one per this interval. */
export const STATUS_EVERY_MS = 1_000;

/**
 * `swarm:status` for the pages that show it (landing, chat), and for no one
 * else: sockets join with `status:subscribe` and get the status at once; after
 * that `changed()` (a volunteer joined or left) sends it to them at most once
 * per `intervalMs`, and only when it differs from the last one sent. A hundred
 * joins and leaves in a second cost each subscriber one message, volunteers none.
 */
export class StatusFeed {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private lastSentAt = Number.NEGATIVE_INFINITY;
  private lastSent = '';
  private closed = false;

  constructor(
    private readonly io: SwarmServer,
    private readonly status: () => SwarmStatus,
    private readonly intervalMs = STATUS_EVERY_MS,
  ) {}

  subscribe(socket: { join(room: string): unknown; emit(event: 'swarm:status', m: SwarmStatus): unknown }): void {
    void socket.join(ROOM);
    socket.emit('swarm:status', this.status());
    // The room's members no longer all saw the last status sent: the next change goes out even if equal to it.
    this.lastSent = '';
  }

  /** The status may have changed: the subscribers hear of it within `intervalMs`. */
  changed(): void {
    if (this.timer !== null || this.closed) return;
    const waitMs = Math.max(0, this.lastSentAt + this.intervalMs - Date.now());
    this.timer = setTimeout(() => this.send(), waitMs);
    this.timer.unref();
  }

  private send(): void {
    this.timer = null;
    this.lastSentAt = Date.now();
    const status = this.status();
    const json = JSON.stringify(status);
    if (json === this.lastSent) return;
    this.lastSent = json;
    this.io.to(ROOM).emit('swarm:status', status);
  }

  close(): void {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}
