import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { WireErrorCode } from '../shared/protocol/errors.js';
import type { StageVote, VolunteerView } from '../shared/protocol/messages.js';
import type { ApiRoute } from './api/api-routes.js';
import { type GenerationOutcome, type SwarmObserver, voteCounts } from './coordinator/observer.js';
import type { ServiceStatus, WindowFigures } from './coordinator/service-stats.js';
import type { NoShow } from './coordinator/session-types.js';

/** What the metrics read from the coordinator (declared here, so that the coordinator can move freely). */
export interface MetricsSource {
  volunteers(): readonly Pick<VolunteerView, 'backend' | 'stage' | 'state'>[];
  readonly activeSessions: number;
  /** Generations the server computes stages of now (the fallback). */
  readonly fallbackSessions: number;
  /** Requests replayed on a new route (a re-partition, a failure after a hand-back) since the start. */
  readonly replays: number;
  /** Requests that handed the stages the server computed back to volunteers mid-generation, since the start. */
  readonly handBacks: number;
  observe(o: SwarmObserver): void;
  serviceStatus(): ServiceStatus;
}

/** Node.js and process metrics (prom-client's defaults) under this prefix: webswarm_process_cpu_seconds_total, … */
export const DEFAULT_METRICS_PREFIX = 'webswarm_';

/**
 * prom-client's default gauges whose names end in `_total`, which Prometheus
 * keeps for counters (`promtool check metrics` refuses them); each is the sum
 * of its labelled sibling without the suffix (webswarm_nodejs_active_handles{type}).
 */
const MISNAMED_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/**
 * The server's Prometheus metrics (prom-client), one registry per server so
 * that several servers in one process (tests) keep theirs apart.
 */
export class SwarmMetrics implements SwarmObserver {
  readonly registry = new Registry();
  private readonly tokens: Counter;
  private readonly votes: Counter<'outcome'>;
  private readonly generations: Counter<'outcome'>;
  private readonly step: Histogram;
  private readonly httpRequests: Counter<'route' | 'status'>;
  /** Socket.IO events over a socket's budget (dropped unanswered), and sockets disconnected for flooding. */
  readonly socketEventsDropped: Counter;
  readonly socketsRateLimited: Counter;
  readonly socketsRefused: Counter;
  readonly httpSendTimeouts: Counter;
  readonly tcpConnectionsRefused: Counter;
  readonly httpPipeliningRefused: Counter;
  private readonly hellosRefused: Counter<'code'>;
  private readonly fullRefusals: Counter<'judged'>;
  private readonly noShows: Counter<'why'>;

  constructor(coordinator: MetricsSource | null) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: DEFAULT_METRICS_PREFIX });
    for (const name of MISNAMED_DEFAULTS) this.registry.removeSingleMetric(DEFAULT_METRICS_PREFIX + name);
    this.tokens = new Counter({ name: 'webswarm_tokens_total', help: 'Verified tokens generated', registers });
    this.votes = new Counter({
      name: 'webswarm_votes_total',
      help: 'Replica outputs at the moment each token was accepted: agreed with the majority, disagreed, or missing (not yet answered)',
      labelNames: ['outcome'],
      registers,
    });
    this.generations = new Counter({
      name: 'webswarm_generations_total',
      help: 'Generations by outcome: ok, or the error code',
      labelNames: ['outcome'],
      registers,
    });
    this.step = new Histogram({
      name: 'webswarm_step_seconds',
      help: 'Time from a step’s input to its verified token',
      buckets: [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10],
      registers,
    });
    this.httpRequests = new Counter({
      name: 'webswarm_http_requests_total',
      help: 'API requests by route and status',
      labelNames: ['route', 'status'],
      registers,
    });
    this.socketEventsDropped = new Counter({
      name: 'webswarm_socket_events_dropped_total',
      help: 'Socket.IO events dropped unanswered because their socket was over its event budget or its byte budget',
      registers,
    });
    this.socketsRateLimited = new Counter({
      name: 'webswarm_sockets_rate_limited_total',
      help: 'Sockets disconnected with ERR_RATE_LIMITED for flooding past their event budget or their byte budget',
      registers,
    });
    this.socketsRefused = new Counter({
      name: 'webswarm_sockets_refused_total',
      help: 'Socket.IO connections refused with ERR_RATE_LIMITED because their address held MAX_SOCKETS_PER_ADDRESS already or was past its byte budget',
      registers,
    });
    this.httpSendTimeouts = new Counter({
      name: 'webswarm_http_send_timeouts_total',
      help: 'HTTP connections closed because their client read none of a response for the send timeout (60 s)',
      registers,
    });
    this.tcpConnectionsRefused = new Counter({
      name: 'webswarm_tcp_connections_refused_total',
      help: 'TCP connections closed as they opened because their address held twice MAX_SOCKETS_PER_ADDRESS already',
      registers,
    });
    this.httpPipeliningRefused = new Counter({
      name: 'webswarm_http_pipelining_refused_total',
      help: 'HTTP connections closed because a request came while 8 of theirs were in flight (pipelined)',
      registers,
    });
    this.hellosRefused = new Counter({
      name: 'webswarm_hellos_refused_total',
      help: 'Volunteer hellos refused, by the code the volunteer was told (ERR_RATE_LIMITED: its address said too many lately or holds too many)',
      labelNames: ['code'],
      registers,
    });
    this.fullRefusals = new Counter({
      name: 'webswarm_full_refusals_total',
      help: 'Sessions this server’s volunteers refused as full, as judged here: due (it held 16) or no_show (it held fewer: a strike)',
      labelNames: ['judged'],
      registers,
    });
    this.noShows = new Counter({
      name: 'webswarm_no_shows_total',
      help: 'Strikes against volunteers for sessions they did not take part in, by why: absent (did not join, refused, or left before joining; a newcomer of a running session too), unreached (a majority of a neighbouring stage could not reach it), full (refused as full holding fewer than 16)',
      labelNames: ['why'],
      registers,
    });
    // Counted by the coordinator: read as they stand at each scrape.
    const counted = (name: string, help: string, read: (c: MetricsSource) => number) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(coordinator === null ? 0 : read(coordinator));
        },
      });
    counted(
      'webswarm_replays_total',
      'Requests replayed on a new route, their tokens so far prefilled: after a re-partition, or a hand-back whose volunteers failed',
      (c) => c.replays,
    );
    counted(
      'webswarm_hand_backs_total',
      'Requests that handed the stages the server computed (the fallback) back to volunteers mid-generation',
      (c) => c.handBacks,
    );
    new Gauge({
      name: 'webswarm_volunteers',
      help: 'Volunteers online by backend, stage and state (loading, ready, busy)',
      labelNames: ['backend', 'stage', 'state'],
      registers,
      collect() {
        this.reset();
        for (const v of coordinator?.volunteers() ?? []) this.inc({ backend: v.backend, stage: String(v.stage), state: v.state });
      },
    });
    // The figures of /api/status, per window (5 min, 1 h): the service a status page shows. In seconds, by
    // `percentile` (p50, p95, p99): Prometheus keeps `quantile` for summaries and base units in names (promtool
    // check metrics refused webswarm_ms_per_token{quantile="p50"} once a request was answered: an operator's find).
    const windowed = (name: string, help: string, pick: (w: WindowFigures) => Record<string, number | null>) =>
      new Gauge({
        name,
        help,
        labelNames: ['window', 'percentile'],
        registers,
        collect() {
          this.reset();
          for (const w of coordinator?.serviceStatus().windows ?? [])
            for (const [percentile, ms] of Object.entries(pick(w)))
              if (ms !== null) this.set({ window: `${w.windowS}s`, percentile }, ms / 1000);
        },
      });
    windowed(
      'webswarm_time_to_first_token_seconds',
      'Time to first token over the window, in seconds, by percentile (p50, p95, p99)',
      (w) => ({
        ...w.ttftMs,
      }),
    );
    windowed('webswarm_seconds_per_token', 'Seconds per token after the first over the window, by percentile (p50, p95, p99)', (w) => ({
      ...w.msPerToken,
    }));
    const ratio = (name: string, help: string, pick: (w: WindowFigures) => number | null) =>
      new Gauge({
        name,
        help,
        labelNames: ['window'],
        registers,
        collect() {
          this.reset();
          for (const w of coordinator?.serviceStatus().windows ?? []) {
            const v = pick(w);
            if (v !== null) this.set({ window: `${w.windowS}s` }, v);
          }
        },
      });
    ratio(
      'webswarm_requests_answered_ratio',
      'Share of requests answered over the window (not counting bad or cancelled requests)',
      (w) => w.answered,
    );
    ratio(
      'webswarm_tokens_verified_ratio',
      'Share of tokens verified by a majority of r volunteers at every stage, over the window',
      (w) => w.verifiedByVolunteers,
    );
    ratio(
      'webswarm_tokens_fallback_ratio',
      'Share of tokens a stage of which the server computed itself (the fallback: too few volunteers), over the window',
      (w) => w.computedByServer,
    );
    new Gauge({
      name: 'webswarm_fallback_sessions',
      help: 'Generations the server computes stages of now (the fallback)',
      registers,
      collect() {
        this.set(coordinator?.fallbackSessions ?? 0);
      },
    });
    new Gauge({
      name: 'webswarm_sessions_active',
      help: 'Generations running now',
      registers,
      collect() {
        this.set(coordinator?.activeSessions ?? 0);
      },
    });
    coordinator?.observe(this);
  }

  /** Counts one answered API request. */
  countRequest(route: ApiRoute, status: number): void {
    this.httpRequests.inc({ route, status: String(status) });
  }

  onToken(stepMs: number, votes: readonly StageVote[], scored = false): void {
    // A scored prompt's position is no token generated; its vote and its step's time count as any step's.
    if (!scored) this.tokens.inc();
    this.step.observe(stepMs / 1000);
    for (const [outcome, n] of Object.entries(voteCounts(votes))) this.votes.inc({ outcome }, n);
  }

  onGeneration(outcome: GenerationOutcome): void {
    this.generations.inc({ outcome });
  }

  onHelloRefused(code: WireErrorCode): void {
    this.hellosRefused.inc({ code });
  }

  onFullRefusal(due: boolean): void {
    this.fullRefusals.inc({ judged: due ? 'due' : 'no_show' });
  }

  onNoShow(why: NoShow): void {
    this.noShows.inc({ why });
  }
}
