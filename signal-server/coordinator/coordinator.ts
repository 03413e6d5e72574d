import type { StageManifest } from '../../shared/model/manifest.js';
import type { LayerRange } from '../../shared/model/stage-graph.js';
import type { ChatMessage, TokenizerSpecials } from '../../shared/model/tokenizer.js';
import {
  type ChallengeProof,
  isServerPeer,
  type StageReady,
  type StepDigest,
  type StepFailure,
  type VolunteerHello,
  type VolunteerView,
} from '../../shared/protocol/messages.js';
import { Audit } from './audit.js';
import { CompletionService } from './completion-service.js';
import type {
  ClusterSeam,
  Completion,
  CompletionRequest,
  CoordinatorOptions,
  MirroredVolunteer,
  ScoredToken,
  ServedModelInfo,
  TokenUpdate,
  VolunteerLink,
} from './coordinator-types.js';
import { GenerationError } from './generation.js';
import { Links } from './links.js';
import { LiveRepartition } from './live-repartition.js';
import { NO_SHOW_WINDOW } from './no-show-window.js';
import type { SwarmObserver } from './observer.js';
import { PeerTraffic } from './peer-traffic.js';
import { Readiness } from './readiness.js';
import { RecordMemory } from './record-memory.js';
import { Registry } from './registry.js';
import { rangesKey, rangesOf } from './repartition.js';
import { BanList } from './reputation.js';
import { Roster } from './roster.js';
import { RoutePicker } from './route-picker.js';
import type { ServiceStatus } from './service-stats.js';
import { MAX_NO_SHOWS, SessionRunner } from './session-runner.js';
import type { NoShow } from './session-types.js';
import { established, type SwarmState } from './swarm-state.js';

export type * from './coordinator-types.js';
export { DEFAULT_CHALLENGE_TIMEOUT_MS, DEFAULT_SPOT_CHECK_RATE } from './readiness.js';
export { MAX_VOLUNTEERS_PER_ADDRESS } from './roster.js';
export { DEFAULT_MAX_QUEUED } from './route-picker.js';
export { MAX_NO_SHOWS, REPLAY_ROUTE_WAIT_MS } from './session-runner.js';
export { ESTABLISHED_AFTER, ESTABLISHED_REPUTATION } from './swarm-state.js';

/**
 * The coordinator, apart from any transport: volunteer registration and stage
 * assignment (roster.ts), earned readiness (readiness.ts), route choice
 * (route-picker.ts), sessions with fail-over (session-runner.ts), live
 * re-partitioning (live-repartition.ts), what volunteers send about sessions
 * (peer-traffic.ts) and completions of text (completion-service.ts), over one
 * shared state (swarm-state.ts). The Socket.IO binding (../socket-handlers.ts)
 * parses each event and calls the method of the same name.
 */
export class Coordinator {
  readonly registry: Registry;
  readonly links: Links;
  readonly audit: Audit;
  private readonly s: SwarmState;
  private readonly roster: Roster;
  private readonly readiness: Readiness;
  private readonly traffic: PeerTraffic;
  private readonly routes: RoutePicker;
  private readonly repartition: LiveRepartition;
  private readonly runner: SessionRunner;
  private readonly service: CompletionService;
  /** The partition the operator configured (a re-partition serves others for a while). */
  private readonly configured: StageManifest;

  constructor(model: ServedModelInfo, options: CoordinatorOptions, log: (line: string) => void) {
    this.configured = model.manifest;
    this.registry = new Registry(model.modelId, model.numStages, options.redundancy);
    this.audit = new Audit(
      (id, counts, agreed, counted) => this.roster.judge(id, counts, agreed, counted),
      (id) => isServerPeer(id) || this.s.members.has(id),
    );
    this.links = options.links ?? new Links();
    this.s = {
      model,
      options,
      log,
      registry: this.registry,
      links: this.links,
      audit: this.audit,
      bans: options.bans ?? new BanList(),
      records: new RecordMemory(),
      members: new Map(),
      sessions: new Map(),
      finished: new Map(),
      sessionClients: new Map(),
      observers: [],
      random: options.random ?? Math.random,
      fallback: null,
      oracle: options.oracle,
      epoch: 0,
      closing: false,
      cluster: null,
    };
    const s = this.s;
    this.traffic = new PeerTraffic(s);
    s.fallback = options.fallback === undefined ? null : this.traffic.serverReplicas(model.manifest, options.fallback);
    this.routes = new RoutePicker(s);
    this.roster = new Roster(s, {
      failOver: (session, left) => this.runner.failOver(session, left),
      leftUnjoined: (sessionId, left, why) => this.runner.noShow(left, sessionId, why),
      considerRepartition: (departure) => this.repartition.considerRepartition(departure),
      distrust: (keys) => this.repartition.distrust(keys),
    });
    this.readiness = new Readiness(s, {
      expel: (id, code, reason, ban) => this.roster.expel(id, code, reason, ban),
      recheckLater: (ms) => this.repartition.recheckLater(ms),
    });
    this.repartition = new LiveRepartition(s, {
      move: (moves) => this.roster.move(moves),
      serverReplicas: (manifest, fallback) => this.traffic.serverReplicas(manifest, fallback),
      expectLoad: (ids) => this.roster.expectLoad(ids),
    });
    this.runner = new SessionRunner(s, {
      pickRoute: (sessionId, signal, wait) => this.routes.pickRoute(sessionId, signal, wait),
      spares: (stage, exclude, alongside) => this.routes.spares(stage, exclude, alongside),
      serverReplica: (sessionId, stage) => this.routes.serverReplica(sessionId, stage),
      expel: (id, code, reason, ban) => this.roster.expel(id, code, reason, ban),
      spotCheck: (ids) => this.readiness.spotCheck(ids),
      repartitioning: () => this.repartition.building,
      handBackRoute: (route) => this.routes.handBackRoute(route),
    });
    this.service = new CompletionService(s, (...args) => this.runner.runIds(...args));
  }

  /** Set by a cluster of servers (../cluster/); null for a server alone. */
  get cluster(): ClusterSeam | null {
    return this.s.cluster;
  }

  set cluster(c: ClusterSeam | null) {
    this.s.cluster = c;
  }

  /** Re-partitions carried out since the start. */
  get repartitions(): number {
    return this.repartition.repartitions;
  }

  /** Partitions planned (each costs up to seconds for a large swarm, on the event loop). */
  get plans(): number {
    return this.repartition.plans;
  }

  /** Requests replayed on a new partition since the start. */
  get replays(): number {
    return this.runner.replays;
  }

  /** Requests whose stages the server computed handed back to volunteers mid-generation since the start (hand-back.ts). */
  get handBacks(): number {
    return this.runner.handBacks;
  }

  /** Steps rolled back because stage 0 computed on a mesh token the coordinator did not verify, over finished sessions. */
  get meshRollBacks(): number {
    return this.runner.meshRollBacks;
  }

  /** Steps of scored prompts whose tokens went to stage 0 before they began, over finished sessions. */
  get inputsAhead(): number {
    return this.runner.inputsAhead;
  }

  get vocabSize(): number {
    return this.s.model.manifest.model.vocabSize;
  }

  /** The served model's positions: no session has more steps. */
  get maxPositions(): number {
    return this.s.model.manifest.model.maxPositions;
  }

  /** Whether volunteer `id` is assigned the model's last stage (the one whose replicas send logits). */
  onLastStage(id: string): boolean {
    return this.s.registry.get(id)?.stage === this.s.model.numStages - 1;
  }

  // Volunteers (roster.ts) and their readiness (readiness.ts).

  /** A volunteer says hello: registered under an id of the server's, assigned a stage; or refused (faults, bans). */
  hello(link: VolunteerLink, address: string, m: VolunteerHello): string | null {
    return this.roster.hello(link, address, m);
  }

  /** A volunteer says it loaded its stage: it is sent a challenge step, and counts as ready once it answers right. */
  ready(id: string, m: StageReady): void {
    this.readiness.ready(id, m);
  }

  /** A volunteer's answer to its challenge: right, and it is ready (or stays so); wrong, and it is evicted. */
  proof(id: string, m: ChallengeProof): void {
    this.readiness.proof(id, m);
  }

  /**
   * A volunteer's connection ended: its sessions fail over, its record goes, the stages re-balance. `processGone`: a
   * volunteer of another server of a cluster dropped because that server is gone (or stayed on another partition),
   * not because the client left: it is not distrusted for a switch back (Roster.left).
   */
  left(id: string, processGone = false): void {
    this.roster.left(id, processGone);
  }

  /** Has an established record: proven, and enough agreement (the server's own replicas always). Newcomers never outvote it. */
  established(id: string): boolean {
    return established(this.s, id);
  }

  // What volunteers send about sessions (peer-traffic.ts).

  /** May `from` send signalling to `to`? Only between peers linked by a session. */
  relay(from: string, to: string, data: unknown): boolean {
    return this.traffic.relay(from, to, data);
  }

  /** One data-channel message from volunteer `from` for the server replica `to`: only between peers a live session links. */
  frame(from: string, to: string, messages: readonly Uint8Array[]): boolean {
    return this.traffic.frame(from, to, messages);
  }

  /** Whether an inbound event is a step report its sender owes a live session (not counted by its socket's event budget). */
  owesReport(id: string | null, event: string, raw: unknown): boolean {
    return this.traffic.owesReport(id, event, raw);
  }

  /** A replica joined a session; `unreached`: the neighbours it says it joined without. */
  joined(id: string, sessionId: number, unreached: readonly string[] = []): void {
    this.traffic.joined(id, sessionId, unreached);
  }

  digest(id: string, m: StepDigest): void {
    this.traffic.digest(id, m);
  }

  logits(id: string, sessionId: number, step: number, logits: Float32Array, resets = 0): void {
    this.traffic.logits(id, sessionId, step, logits, resets);
  }

  failed(id: string, m: StepFailure): void {
    this.traffic.failed(id, m);
  }

  // Requests (completion-service.ts, session-runner.ts).

  /** The prompt for a chat, by the model's chat template (with its generation prompt unless told otherwise). */
  chatPrompt(messages: readonly ChatMessage[], addGenerationPrompt?: boolean): string {
    return this.service.chatPrompt(messages, addGenerationPrompt);
  }

  promptText(ids: readonly number[], field?: string): string {
    return this.service.promptText(ids, field);
  }

  encode(text: string): number[] {
    return this.service.encode(text);
  }

  tokenizerInfo(): { specials: TokenizerSpecials; vocabSize: number; maxPositions: number } {
    return this.service.tokenizerInfo();
  }

  /**
   * Generates through the swarm; `onToken` receives each accepted token, with its votes, as it comes, and
   * `onScored` (with `scorePrompt`) each of the prompt's tokens before them.
   */
  complete(req: CompletionRequest, onToken?: (u: TokenUpdate) => void, onScored?: (u: ScoredToken) => void): Promise<Completion> {
    return this.service.complete(req, onToken, onScored);
  }

  /**
   * Runs token ids through a route of the swarm, with every rule of a request
   * (admission, route choice, fail-over, eviction): the in-process test swarm
   * and the benchmarks call it without a tokenizer. `onStep` returns true to
   * stop after that token.
   */
  runIds(...args: Parameters<SessionRunner['runIds']>): ReturnType<SessionRunner['runIds']> {
    return this.runner.runIds(...args);
  }

  /** Fails the generations in flight with a clear error and refuses new ones: the server is going away. */
  shutdown(): void {
    this.s.closing = true;
    const e = new GenerationError('ERR_SHUTTING_DOWN', 'the server is shutting down; send the request again once it is back');
    for (const session of this.s.sessions.values()) session.abort(e);
    for (const m of this.s.members.values()) if (m.challenge?.timer != null) clearTimeout(m.challenge.timer);
    // In a cluster, each volunteer's sessions missed and joined are kept under its client key now, as when it leaves:
    // its connection ends after the cluster has stopped writing (before, a restart of a server, a deploy, gave every
    // volunteer connected to it a clean window on its next server).
    for (const m of this.s.members.values()) if (!m.remote) this.s.cluster?.keepNoShows(m.keys, m.noShows.own());
    this.roster.flushScores();
    this.repartition.stop();
    this.roster.stop();
  }

  /**
   * After `shutdown`: gives back what the server's runners hold (the challenge
   * oracle's and the fallback's onnxruntime sessions), which live in this
   * process's one WASM heap and outlive the coordinator otherwise.
   */
  async release(): Promise<void> {
    await Promise.all([this.s.oracle.release?.(), this.s.fallback?.close()]);
  }

  /** Adds an observer of tokens and generations (metrics, the dashboard). */
  observe(o: SwarmObserver): void {
    this.s.observers.push(o);
  }

  // Status.

  /** Generations the server computes stages of now (the fallback). */
  get fallbackSessions(): number {
    return this.s.fallback?.busy ?? 0;
  }

  /** Generations running now. */
  get activeSessions(): number {
    return this.s.sessions.size;
  }

  /** Requests waiting for a route now. */
  get waitingRequests(): number {
    return this.routes.waiting;
  }

  /** Sessions each volunteer is in on this server now (a cluster publishes its own volunteers'). */
  sessionsHere(): Map<string, number> {
    return this.routes.sessionsHere();
  }

  /** What the service achieved over the last 5 minutes and hour, and the volunteers ready per stage now: for /api/status. */
  serviceStatus(): ServiceStatus {
    return this.service.serviceStatus(this.routablePerStage());
  }

  /** Per stage, its ready replicas from distinct clients (RoutePicker.routable): a route needs r of them. */
  routablePerStage(): number[] {
    return Array.from({ length: this.s.model.numStages }, (_, s) => this.routes.routable(s));
  }

  /** Volunteers online, replicas per stage, the redundancy r and whether the server computes what they cannot, for the landing page. */
  status(): { volunteers: number; replicasPerStage: number[]; redundancy: number; fallback: 'off' | 'stage' | 'whole' } {
    return {
      volunteers: this.registry.size,
      replicasPerStage: this.registry.replicasPerStage(),
      redundancy: this.s.options.redundancy,
      fallback: this.s.fallback?.mode ?? 'off',
    };
  }

  /** Every volunteer with its stage, backend, state and audit counts. */
  volunteers(): VolunteerView[] {
    return this.roster.volunteers();
  }

  /**
   * What processes of a cluster must share to share volunteers: the model, its configured stage files (their sha256
   * covers the layers each holds, the weights' precision and the graph's form), the context they were built for
   * (CONTEXT: a plain graph holds no positions, so its files are the same bytes at any context) and r. A volunteer of stage s of
   * another partition runs other layers: mixed, they gave a wrong answer with HTTP 200 (a stranger's pass). The
   * partition served now may differ for a while (a re-partition under way): each volunteer's publication says
   * which one its stage is of (partitionKey), and one of another is not used (Volunteer.elsewhere).
   */
  get swarmSettings(): string {
    const m = this.configured;
    return JSON.stringify({
      model: m.modelId,
      weights: m.weights,
      graph: m.graph,
      context: m.model.maxPositions,
      stages: m.stages.map((st) => `${st.layers.start}-${st.layers.end}:${st.sha256.slice(0, 16)}`),
      redundancy: this.s.options.redundancy,
    });
  }

  /** The partition served now, as layer ranges ("0-10,10-20"). */
  get partitionKey(): string {
    return rangesKey(rangesOf(this.s.model.manifest));
  }

  /** The plan of a cluster's leader: this server serves its partition too (LiveRepartition.adopt). */
  adoptPlan(ranges: readonly LayerRange[], stageOf: ReadonlyMap<string, number>): void {
    this.repartition.adopt(ranges, stageOf);
  }

  /** A cluster's heartbeat: its leader looks again whether the configured partition serves (LiveRepartition.tick). */
  clusterTick(): void {
    this.repartition.tick();
  }

  get modelInfo(): { modelId: string; stages: number; redundancy: number } {
    return { modelId: this.s.model.modelId, stages: this.s.model.numStages, redundancy: this.s.options.redundancy };
  }

  // The seams of a cluster of servers (../cluster/): volunteers of other servers mirrored here.

  /** Adds or updates a volunteer of another server: a route candidate here, reached through `link`. */
  mirror(link: VolunteerLink, v: MirroredVolunteer): void {
    this.roster.mirror(link, v);
  }

  /**
   * A volunteer of this server: its identity keys, whether it passed a challenge for its stage (`proven`) and on this
   * server once (`vouched`); undefined for others.
   */
  localMember(id: string): { readonly keys: readonly string[]; readonly proven: boolean; readonly vouched: boolean } | undefined {
    return this.roster.localMember(id);
  }

  /** How this server reaches one of its own volunteers; undefined for volunteers of other servers. */
  localLink(id: string): VolunteerLink | undefined {
    return this.roster.localLink(id);
  }

  /** Is this volunteer one of another server's, mirrored here? */
  isRemote(id: string): boolean {
    return this.roster.isRemote(id);
  }

  /**
   * A volunteer of this server did not show up in a session of another (`why`), or joined one (`null`): its
   * strikes are kept here, over every server's sessions, and three among its last sessions evict it.
   */
  showedElsewhere(id: string, sessionId: number, why: NoShow | null): void {
    if (this.roster.localMember(id) === undefined) return;
    if (why === null) this.s.members.get(id)?.noShows.showed(sessionId);
    else this.runner.noShow(id, sessionId, why);
  }

  /**
   * A volunteer of this server takes up the sessions its client's connections that left missed and joined (kept by the
   * cluster, oldest first): the count of its last sessions missed now, or undefined where it is not this server's.
   */
  resumeNoShows(id: string, older: readonly boolean[]): number | undefined {
    const member = this.s.members.get(id);
    if (member === undefined || member.remote) return undefined;
    member.noShows.prepend(older);
    const count = member.noShows.count;
    // Misses that add up to an eviction only together (tabs of its key on several servers): evicted at once, as the
    // miss that made them so would have on one server.
    if (count >= MAX_NO_SHOWS)
      this.roster.expel(id, 'ERR_EVICTED', `${count} of its last ${NO_SHOW_WINDOW} sessions missed by its client's connections`, true);
    return count;
  }

  /** Another server banned `key`: this server's volunteers holding it are cut off. */
  cutBanned(key: string): void {
    this.roster.cutBanned(key);
  }

  /** Moves volunteers of this server to stages short of replicas, counting those of the others. */
  rebalance(): void {
    this.roster.rebalance();
  }

  /** Another server asks for a spot check of a volunteer of this server. */
  challengeAgain(id: string): void {
    this.readiness.challengeAgain(id);
  }
}
