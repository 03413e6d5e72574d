import {
  DASHBOARD_HISTORY,
  type DashboardSample,
  type DashboardSnapshot,
  type DashboardUpdate,
  type StageVote,
} from '../shared/protocol/messages.js';
import type { Coordinator } from './coordinator/coordinator.js';
import { type SwarmObserver, voteCounts } from './coordinator/observer.js';
import type { SwarmServer } from './socket-handlers.js';

const ROOM = 'dashboard';

/**
 * The live dashboard's data: counts tokens and votes as they happen, samples
 * them every interval, keeps the last five minutes and pushes each sample with
 * the volunteers' grid to the sockets that subscribed (a Socket.IO room).
 */
export class DashboardFeed implements SwarmObserver {
  private tokens = 0;
  private agreed = 0;
  private disagreed = 0;
  private missing = 0;
  private readonly history: DashboardSample[] = [];
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(
    private readonly io: SwarmServer,
    private readonly coordinator: Coordinator,
    private readonly intervalMs = 1000,
  ) {
    coordinator.observe(this);
    this.timer = setInterval(() => this.tick(), intervalMs);
    this.timer.unref();
  }

  onToken(_stepMs: number, votes: readonly StageVote[]): void {
    this.tokens += 1;
    const c = voteCounts(votes);
    this.agreed += c.agreed;
    this.disagreed += c.disagreed;
    this.missing += c.missing;
  }

  /** A socket asked for the feed: it gets the snapshot now and every update after. */
  subscribe(socket: { join(room: string): unknown; emit(event: 'dashboard:snapshot', m: DashboardSnapshot): unknown }): void {
    void socket.join(ROOM);
    const info = this.coordinator.modelInfo;
    socket.emit('dashboard:snapshot', {
      ...info,
      intervalMs: this.intervalMs,
      history: [...this.history],
      ...this.current(this.history.at(-1) ?? this.sample()),
    });
  }

  private sample(): DashboardSample {
    return {
      t: Date.now(),
      tokensPerS: (this.tokens * 1000) / this.intervalMs,
      volunteers: this.coordinator.registry.size,
      agreed: this.agreed,
      disagreed: this.disagreed,
      missing: this.missing,
    };
  }

  private current(sample: DashboardSample): DashboardUpdate {
    return { sample, volunteers: this.coordinator.volunteers(), sessions: this.coordinator.activeSessions };
  }

  private tick(): void {
    const sample = this.sample();
    this.tokens = this.agreed = this.disagreed = this.missing = 0;
    this.history.push(sample);
    if (this.history.length > DASHBOARD_HISTORY) this.history.shift();
    // Nobody watching: keep the history, skip building the grid.
    if ((this.io.sockets.adapter.rooms.get(ROOM)?.size ?? 0) === 0) return;
    this.io.to(ROOM).emit('dashboard:update', this.current(sample));
  }

  close(): void {
    clearInterval(this.timer);
  }
}
