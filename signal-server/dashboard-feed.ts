import {
  DASHBOARD_HISTORY,
  type DashboardGrid,
  type DashboardSample,
  type DashboardSnapshot,
  type StageVote,
} from '../shared/protocol/messages.js';
import type { Coordinator } from './coordinator/coordinator.js';
import { type SwarmObserver, voteCounts } from './coordinator/observer.js';
import type { SwarmServer } from './socket-handlers.js';
import { volunteersShown } from './volunteers-shown.js';

const ROOM = 'dashboard';

/** The grid goes out at most this often, and only when it changed. */
export const DASHBOARD_GRID_EVERY_MS = 2_000;

/**
 * The live dashboard's data: counts tokens and votes as they happen, samples
 * them every interval, keeps the last five minutes and pushes each sample to
 * the sockets that subscribed (a Socket.IO room), with the volunteers' grid
 * when it changed (at most every DASHBOARD_GRID_EVERY_MS). The grid lists at
 * most DASHBOARD_REPLICAS_SHOWN volunteers per stage and counts the rest, so an
 * update's size does not grow with the swarm.
 */
export class DashboardFeed implements SwarmObserver {
  private tokens = 0;
  private serverTokens = 0;
  private agreed = 0;
  private disagreed = 0;
  private missing = 0;
  private readonly history: DashboardSample[] = [];
  private readonly timer: ReturnType<typeof setInterval>;
  /** The grid last sent to the room (as JSON), and when. */
  private lastGrid = '';
  private lastGridAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly io: SwarmServer,
    private readonly coordinator: Coordinator,
    private readonly intervalMs = 1000,
    private readonly gridEveryMs = DASHBOARD_GRID_EVERY_MS,
  ) {
    coordinator.observe(this);
    this.timer = setInterval(() => this.tick(), intervalMs);
    this.timer.unref();
  }

  onToken(_stepMs: number, votes: readonly StageVote[], scored = false): void {
    // The rate counts tokens generated; the votes of a scored prompt's positions count as any step's.
    if (!scored) {
      this.tokens += 1;
      if (votes.some((v) => v.server)) this.serverTokens += 1;
    }
    const c = voteCounts(votes);
    this.agreed += c.agreed;
    this.disagreed += c.disagreed;
    this.missing += c.missing;
  }

  /** A socket asked for the feed: it gets the snapshot now and every update after. */
  subscribe(socket: { join(room: string): unknown; emit(event: 'dashboard:snapshot', m: DashboardSnapshot): unknown }): void {
    const alone = (this.io.sockets.adapter.rooms.get(ROOM)?.size ?? 0) === 0;
    void socket.join(ROOM);
    const grid = this.grid();
    // The first one watching has the grid now: updates carry it again only when it changes.
    if (alone) this.lastGrid = JSON.stringify(grid);
    const info = this.coordinator.modelInfo;
    socket.emit('dashboard:snapshot', {
      ...info,
      intervalMs: this.intervalMs,
      history: [...this.history],
      sample: this.history.at(-1) ?? this.sample(),
      grid,
      sessions: this.coordinator.activeSessions,
    });
  }

  private sample(): DashboardSample {
    return {
      t: Date.now(),
      tokensPerS: (this.tokens * 1000) / this.intervalMs,
      serverTokensPerS: (this.serverTokens * 1000) / this.intervalMs,
      volunteers: this.coordinator.registry.size,
      agreed: this.agreed,
      disagreed: this.disagreed,
      missing: this.missing,
    };
  }

  /** Per stage, the volunteers that are ready or computing first (in the order they joined), then those loading. */
  private grid(): DashboardGrid {
    const { shown, counts } = volunteersShown(this.coordinator.volunteers(), this.coordinator.modelInfo.stages);
    return { volunteers: shown, stages: counts };
  }

  /** The grid if it changed since the last one sent and that was long enough ago; else null. */
  private changedGrid(): DashboardGrid | null {
    const t = Date.now();
    if (t - this.lastGridAt < this.gridEveryMs) return null;
    const grid = this.grid();
    const json = JSON.stringify(grid);
    if (json === this.lastGrid) return null;
    this.lastGrid = json;
    this.lastGridAt = t;
    return grid;
  }

  private tick(): void {
    const sample = this.sample();
    this.tokens = this.serverTokens = this.agreed = this.disagreed = this.missing = 0;
    this.history.push(sample);
    if (this.history.length > DASHBOARD_HISTORY) this.history.shift();
    // Nobody watching: keep the history, skip building the grid.
    if ((this.io.sockets.adapter.rooms.get(ROOM)?.size ?? 0) === 0) return;
    this.io.to(ROOM).emit('dashboard:update', { sample, grid: this.changedGrid(), sessions: this.coordinator.activeSessions });
  }

  close(): void {
    clearInterval(this.timer);
  }
}
