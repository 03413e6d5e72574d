import type { StageManifest } from '../../shared/model/manifest.js';
import type { LayerRange } from '../../shared/model/stage-graph.js';
import { offeredBytes } from '../../shared/protocol/capacity.js';
import type { FallbackOptions, ServerReplicas } from './fallback.js';
import { type PlannedVolunteer, planPartition } from './partition-planner.js';
import { stagesOf } from './placement.js';
import {
  type PartitionBuilder,
  plannedVolunteers,
  REPARTITION_HOLD_MS,
  ReplayOnNewPartition,
  rangesKey,
  rangesOf,
  type ServedPartition,
  sameRanges,
} from './repartition.js';
import type { Move } from './scheduler.js';
import { assignment, type SwarmState, withdrawChallenge } from './swarm-state.js';

/**
 * How long a client (each of its identity keys: its client key, its address) that proved a stage and then left, or
 * missed a load deadline, is not counted for a switch back to the configured partition. Each switch back gave it a
 * stage to hold, and the hold bounds only how often: before, one client that proved the shrunk partition's stage and
 * then ignored its new assignment (or left, and came back as another volunteer) made the swarm switch back and
 * shrink again cycle after cycle, a stage short of r ready replicas 70 % of the time (a red-team find). The shrunk
 * partition serves meanwhile; the configured one comes back with clients that did neither.
 */
export const SWITCH_BACK_DISTRUST_MS = 10 * 60_000;
/**
 * How long no volunteer proves a stage (the swarm stopped filling) before a stage short of r clients is made good
 * without a departure, as one would be. While volunteers still come, stages are short by nature, and a cut made
 * then would cost each a load and a challenge again soon after. Before, joins never did: a swarm that stopped
 * short of the configured stages × r (3 tabs for 3 stages × r = 3, or a server restarted under 2 tabs of a 2 × 2
 * swarm that had shrunk to 1 stage) had every stage computed by the server, its volunteers idle, nothing verified
 * (a volunteer's trial).
 */
export const FILL_QUIET_MS = 30_000;
/** Keys remembered at most (the oldest go first). */
const MAX_DISTRUSTED = 10_000;
/**
 * A switch away from the configured partition within this long of a switch back to it is a flap: the hold before
 * the next switch back doubles (HOLD_BACKOFF_MAX at most); one later (the configured partition held steady) resets it.
 */
const FLAP_WINDOW_MS = 5 * 60_000;
/** The hold before a switch back grows to this many times REPARTITION_HOLD_MS at most. */
const HOLD_BACKOFF_MAX = 16;
/** A cluster's leader looks again this long after it found the processes mid-switch (some not switched yet). */
const SWITCHING_RECHECK_MS = 1_000;
/**
 * How long a process of a cluster that does not lead, after a departure that left a stage short, counts on the
 * leader's plan (the departure reaches the leader through Redis; it plans, then publishes): requests that departure
 * failed are replayed meanwhile, as on the process that builds (SessionRunner), rather than failed at once.
 */
const PLAN_WAIT_MS = 5_000;
/**
 * How long a process that does not lead remembers a departure no plan answered (`departed`), for the case that it
 * comes to lead (the leader died before it planned: found dead within DEFAULT_DEAD_AFTER_MS and a heartbeat). Older,
 * the leader of then looked at it: a process that comes to lead much later must not shrink the partition for it.
 */
const DEPARTED_MEMORY_MS = 60_000;

/** What re-partitioning needs of the coordinator's other parts. */
export interface RepartitionHooks {
  /** Moves volunteers to other stages of the partition served now. */
  move(moves: readonly Move[]): void;
  /** The server's own replicas of a partition's stages (the fallback). */
  serverReplicas(manifest: StageManifest, options: FallbackOptions): ServerReplicas;
  /** Volunteers were given a stage to load: each holds its seat until its load deadline (Roster.expectLoad). */
  expectLoad(ids: readonly string[]): void;
}

/**
 * Live re-partitioning (REPARTITION): when departures leave a stage short,
 * the planner's partition is built and served, and the configured one again
 * once it serves.
 */
export class LiveRepartition {
  /** A re-partition is being built (its stage files): no second one starts meanwhile. */
  private repartitioning = false;
  /** When the partition last changed (performance.now()): a switch back waits for the hold after it. */
  private switchedAt = Number.NEGATIVE_INFINITY;
  /** Looks again later: once the hold is over (nothing else may happen meanwhile to ask), or after proofs. */
  private recheckTimer: ReturnType<typeof setTimeout> | null = null;
  /** When it fires (performance.now()). */
  private recheckAt = Number.POSITIVE_INFINITY;
  /** Identity keys not counted for a switch back, until when (performance.now()): SWITCH_BACK_DISTRUST_MS. */
  private readonly distrusted = new Map<string, number>();
  /** The partition the operator configured: a re-partition returns to it once it serves again. */
  private readonly operatorRanges: readonly LayerRange[];
  /** A plan of the cluster's leader to serve once the partition being built is served (the latest replaces others). */
  private pendingPlan: {
    readonly ranges: readonly LayerRange[];
    readonly stageOf: ReadonlyMap<string, number>;
    readonly why: string;
  } | null = null;
  /** A process of a cluster that does not lead counts on the leader's plan until then (performance.now(); PLAN_WAIT_MS). */
  private awaitPlanUntil = Number.NEGATIVE_INFINITY;
  /**
   * A departure came that no plan has looked at yet: while a partition was built, while the processes of a cluster
   * were mid-switch, or on a process that did not lead then. Looked at when planning can be done (the next
   * consideration, or a cluster's heartbeat once this process leads): a short stage is made good by the plan
   * of then. Before, such a departure was dropped, and a stage it left short stayed short, every request refused
   * (red-team finds: a client that left the moment its new assignment came, the leader dying or closing meanwhile).
   */
  private departed = false;
  /** When `departed` was last set (performance.now()). */
  private departedAt = Number.NEGATIVE_INFINITY;
  /** Ready volunteers over the cluster when its leader last looked at a heartbeat (tick). */
  private readyAtTick = -1;
  /** The hold before a switch back, in holds: doubled at each flap (FLAP_WINDOW_MS), 1 once the swarm held steady. */
  private holdBackoff = 1;
  /** When the swarm last switched back to the configured partition (performance.now()). */
  private switchedBackAt = Number.NEGATIVE_INFINITY;
  /** Volunteers the planner counted when last looked at, and since when (performance.now()): FILL_QUIET_MS. */
  private counted = -1;
  private countedSince = Number.NEGATIVE_INFINITY;
  /** The last "no partition serves" said for joins (said again only when it changes: each proof asks). */
  private unservedSaid: string | null = null;
  /** Re-partitions carried out since the start. */
  repartitions = 0;
  /** Partitions planned (each costs up to seconds for a large swarm, on the event loop). */
  plans = 0;

  constructor(
    private readonly s: SwarmState,
    private readonly h: RepartitionHooks,
  ) {
    this.operatorRanges = rangesOf(s.model.manifest);
    s.registry.setFits(stagesOf(s.options.sizes ?? s.options.repartition?.sizes, this.operatorRanges));
  }

  /** Whether a re-partition is being built now (or, in a cluster, a departure here awaits the leader's plan). */
  get building(): boolean {
    return this.repartitioning || performance.now() < this.awaitPlanUntil;
  }

  /** A client that proved a stage left, or missed a load deadline: not counted for a switch back for a while. */
  distrust(keys: readonly string[]): void {
    if (this.s.options.repartition === undefined) return;
    const until = performance.now() + (this.s.options.switchBackDistrustMs ?? SWITCH_BACK_DISTRUST_MS);
    for (const k of keys) {
      this.distrusted.delete(k);
      this.distrusted.set(k, until);
    }
    for (const k of this.distrusted.keys()) {
      if (this.distrusted.size <= MAX_DISTRUSTED) break;
      this.distrusted.delete(k);
    }
  }

  private isDistrusted(keys: readonly string[]): boolean {
    const now = performance.now();
    return keys.some((k) => {
      const until = this.distrusted.get(k);
      if (until === undefined) return false;
      if (until > now) return true;
      this.distrusted.delete(k);
      return false;
    });
  }

  /** Stops looking again later (the server is going away). */
  stop(): void {
    if (this.recheckTimer !== null) clearTimeout(this.recheckTimer);
    this.recheckTimer = null;
    this.recheckAt = Number.POSITIVE_INFINITY;
  }

  /**
   * After a departure that re-balancing could not make good (a stage short of
   * r volunteers): the planner's choice, by memory and measured speed. Within
   * the current partition volunteers move; otherwise the new partition's stage
   * files are built and the swarm switches to it (switchPartition).
   */
  considerRepartition(departure: boolean): void {
    if (departure) {
      this.departed = true;
      this.departedAt = performance.now();
    }
    const builder = this.s.options.repartition;
    const r = this.s.options.redundancy;
    if (builder === undefined || this.s.closing || this.repartitioning) return;
    // A cluster's partition is planned by one process for all (the lowest-numbered live one), over every process's
    // volunteers, and not while some processes still serve another partition than this one (mid-switch).
    const cluster = this.s.cluster;
    if (cluster !== null && !cluster.leads()) {
      if (departure && this.stageShort()) this.awaitPlanUntil = performance.now() + PLAN_WAIT_MS;
      return;
    }
    if (this.s.registry.switching) {
      this.recheckLater(SWITCHING_RECHECK_MS);
      return;
    }
    const gone = this.departed;
    this.departed = false;
    const current = rangesOf(this.s.model.manifest);
    if (!sameRanges(current, this.operatorRanges)) {
      // Re-partitioned before: back to the operator's partition as soon as it serves again (volunteers came back).
      // Ready volunteers alone count: a hello costs nothing, and a stranger that never loads would otherwise
      // switch the swarm to a partition where its stage lacks r ready replicas (and re-challenge everyone).
      // Not before the hold is over, and no plan (seconds for a large swarm) while too few clients are ready.
      const hold = (this.s.options.repartitionHoldMs ?? REPARTITION_HOLD_MS) * this.holdBackoff;
      const wait = this.switchedAt + hold - performance.now();
      const readyClients = new Set(this.plannerView(true).map((v) => v.client)).size;
      if (wait > 0) this.recheckLater(wait);
      else if (readyClients >= this.operatorRanges.length * r) {
        const back = this.plan(builder, this.operatorRanges, true);
        if (back.ok && back.kept) {
          this.buildAndSwitch(builder, back.ranges, back.stageOf, 'volunteers joined: back to the configured partition', true);
          return;
        }
      }
    }
    // Joins make a short stage good only once the swarm stopped filling (FILL_QUIET_MS).
    const quietMs = this.quietMs();
    if (!this.stageShort()) {
      this.unservedSaid = null;
      return;
    }
    if (!gone && quietMs < this.fillQuietMs) {
      this.recheckLater(this.fillQuietMs - quietMs);
      return;
    }
    // Nor while a volunteer given a stage still loads it (a large stage's download may take longer than the fill
    // time): until it proves it or its load deadline passes (stale). New hellos can put the cut off for as long as
    // they come, which leaves the swarm as it was before joins made short stages good (the fallback computes them).
    if (!gone && this.loading()) {
      this.recheckLater(this.fillQuietMs);
      return;
    }
    const plan = this.plan(builder, rangesOf(this.s.model.manifest));
    if (!plan.ok) {
      const line = `re-partition: a stage is short of ${r} volunteers, and no partition serves: ${plan.reason}`;
      if (gone || line !== this.unservedSaid) this.s.log(line);
      this.unservedSaid = line;
      return;
    }
    if (plan.kept) {
      this.h.move(this.s.registry.assign(this.s.model.numStages, plan.stageOf, false));
      // The other processes move theirs.
      this.s.cluster?.publishPlan(rangesOf(this.s.model.manifest), plan.stageOf);
      return;
    }
    const short = `stages short (${this.s.registry.replicasPerStage().join('/')})`;
    const why = gone ? short : `${short}, no volunteer newly proved a stage for ${Math.round(quietMs / 1000)} s`;
    // A cut for joins is left unserved where proofs made it needless while it was built.
    this.buildAndSwitch(builder, plan.ranges, plan.stageOf, why, false, !gone);
  }

  /** A volunteer given a stage that it has not proved yet, within its load deadline. */
  private loading(): boolean {
    return this.s.registry
      .all()
      .some((v) => !v.ready && v.stale !== true && v.elsewhere !== true && this.s.members.get(v.id)?.vouched !== true);
  }

  private get fillQuietMs(): number {
    return this.s.options.repartitionFillQuietMs ?? FILL_QUIET_MS;
  }

  /** How long the volunteers the planner counts have stayed as many (ms): since the last that proved a stage, or left. */
  private quietMs(): number {
    const n = this.plannerView().length;
    const now = performance.now();
    if (n !== this.counted) {
      this.counted = n;
      this.countedSince = now;
    }
    return now - this.countedSince;
  }

  /** Short: fewer than r distinct clients on a stage (sockets of one client never make two replicas of a route). */
  private stageShort(): boolean {
    const clients = Array.from({ length: this.s.model.numStages }, () => new Set<string>());
    for (const v of this.plannerView()) clients[v.stage]?.add(v.client);
    return clients.some((c) => c.size < this.s.options.redundancy);
  }

  /**
   * A cluster's heartbeat: its leader looks again whether the configured partition serves (volunteers prove their
   * stages on other processes, out of sight of its readiness checks), when the count of ready volunteers changed.
   */
  tick(): void {
    if (this.s.cluster?.leads() !== true) {
      if (performance.now() - this.departedAt > DEPARTED_MEMORY_MS) this.departed = false;
      // Looked at afresh should this process come to lead: the ready count of then, the fill time from then.
      this.readyAtTick = -1;
      this.counted = -1;
      return;
    }
    if (this.departed) {
      this.considerRepartition(true);
      return;
    }
    const ready = this.s.registry.all().filter((v) => v.ready).length;
    if (ready === this.readyAtTick) return;
    this.readyAtTick = ready;
    this.considerRepartition(false);
  }

  /**
   * A plan of the cluster's leader (another process): the partition it serves now, and where each volunteer goes.
   * This process serves it too, building its stage files (from its own stage cache) first where it is another.
   */
  adopt(ranges: readonly LayerRange[], stageOf: ReadonlyMap<string, number>, why?: string): void {
    if (this.s.closing) return;
    this.awaitPlanUntil = Number.NEGATIVE_INFINITY;
    // The leader's plan answers the departures this process saw before it (not those while it is built: they count).
    if (this.s.cluster?.leads() === false) this.departed = false;
    if (this.s.options.repartition === undefined) {
      this.s.log(
        `re-partition: the cluster's leader serves layers ${rangesKey(ranges)}, and this process cannot build them (REPARTITION is off here): its volunteers are not used by the others meanwhile`,
      );
      return;
    }
    this.pendingPlan = { ranges, stageOf, why: why ?? `the cluster's leader serves layers ${rangesKey(ranges)}` };
    if (!this.repartitioning) this.servePending();
  }

  /** Serves the leader's latest plan (adopt), once any build under way is done. */
  private servePending(): void {
    const plan = this.pendingPlan;
    const builder = this.s.options.repartition;
    if (plan === null || builder === undefined || this.s.closing) return;
    this.pendingPlan = null;
    if (sameRanges(plan.ranges, rangesOf(this.s.model.manifest))) {
      this.h.move(this.s.registry.assign(this.s.model.numStages, plan.stageOf, false));
      return;
    }
    this.repartitioning = true;
    this.s.log(`re-partition: ${plan.why}; building layers ${rangesKey(plan.ranges)}`);
    builder
      .build(plan.ranges)
      .then((p) => {
        this.repartitioning = false;
        if (this.s.closing) return;
        // A later plan came meanwhile: that one is served.
        if (this.pendingPlan === null) this.switchPartition(p, plan.stageOf);
        this.servePending();
      })
      .catch((e: unknown) => {
        this.repartitioning = false;
        this.s.log(`re-partition to layers ${rangesKey(plan.ranges)} (the cluster leader's) failed: ${(e as Error).message}`);
        this.servePending();
      });
  }

  /**
   * Considers a re-partition (a switch back) after `ms`, once for everything that asks meanwhile: at the earliest
   * time asked for (a switch back's hold must not wait for a swarm's fill time, FILL_QUIET_MS, asked for before).
   */
  recheckLater(ms: number): void {
    if (this.s.closing) return;
    const at = performance.now() + ms;
    if (this.recheckTimer !== null) {
      if (this.recheckAt <= at) return;
      clearTimeout(this.recheckTimer);
    }
    this.recheckAt = at;
    this.recheckTimer = setTimeout(() => {
      this.recheckTimer = null;
      this.considerRepartition(false);
    }, ms);
  }

  /**
   * Builds the stage files of `ranges`, then switches to them if they still serve the volunteers there are then. A
   * cluster's leader publishes its plan first, and every process (this one too) builds the cut and serves it.
   */
  private buildAndSwitch(
    builder: PartitionBuilder,
    ranges: readonly LayerRange[],
    stageOf: ReadonlyMap<string, number>,
    why: string,
    readyOnly = false,
    /** Not switched to if, once built, the partition served then has no stage short (proofs came meanwhile). */
    unlessServed = false,
  ): void {
    if (this.s.cluster !== null) {
      this.s.cluster.publishPlan(ranges, stageOf);
      this.adopt(ranges, stageOf, why);
      return;
    }
    this.repartitioning = true;
    const key = rangesKey(ranges);
    this.s.log(`re-partition: ${why}; building layers ${key}`);
    builder
      .build(ranges)
      .then((p) => {
        this.repartitioning = false;
        if (this.s.closing) return;
        if (unlessServed && !this.stageShort()) {
          this.s.log(`re-partition to layers ${key} left unserved: no stage is short any more`);
          return;
        }
        // Volunteers may have come and gone while the files were built: placed as they are now.
        const again = this.plan(builder, rangesOf(p.manifest), readyOnly);
        if (again.ok && again.kept) this.switchPartition(p, again.stageOf);
        else this.considerRepartition(true);
      })
      .catch((e: unknown) => {
        this.repartitioning = false;
        this.s.log(`re-partition to layers ${key} failed: ${(e as Error).message}`);
      });
  }

  /**
   * The volunteers as the planner sees them (a cluster's leader: every process's, as each publishes them): those that
   * passed a challenge on their server once (moved ones still loading count; a stranger that never proved a stage
   * would hold a seat it does not fill), or with `readyOnly` (a switch back) those ready now whose client did not
   * leave or miss a load deadline lately.
   */
  private plannerView(readyOnly = false): PlannedVolunteer[] {
    const counted = this.s.registry
      .all()
      .filter(
        (v) =>
          v.elsewhere !== true &&
          (readyOnly ? v.ready && !this.isDistrusted(this.s.members.get(v.id)?.keys ?? []) : this.s.members.get(v.id)?.vouched === true),
      );
    return plannedVolunteers(
      counted,
      rangesOf(this.s.model.manifest),
      (id) => this.s.members.get(id)?.keys ?? [],
      offeredBytes('wasm', null),
    );
  }

  private plan(builder: PartitionBuilder, current: readonly LayerRange[], readyOnly = false) {
    const volunteers = this.plannerView(readyOnly);
    this.plans += 1;
    return planPartition({ sizes: builder.sizes, volunteers, redundancy: this.s.options.redundancy, current });
  }

  /**
   * Serves a new partition from now: new sessions route on it, sessions in
   * flight are replayed on it (runIds), every volunteer is assigned its stage
   * of it and must pass a challenge on that stage before it counts as ready.
   */
  private switchPartition(p: ServedPartition, stageOf: ReadonlyMap<string, number>): void {
    const from = this.s.model.partition ?? rangesKey(rangesOf(this.s.model.manifest));
    this.s.model = { ...this.s.model, numStages: p.manifest.stages.length, baseUrl: p.baseUrl, manifest: p.manifest, partition: p.key };
    this.s.oracle = p.oracle;
    this.s.options.repartition?.switched?.(p);
    this.s.epoch += 1;
    this.repartitions += 1;
    this.switchedAt = performance.now();
    // No cut for joins within the fill time of any switch (each volunteer proves its stage again meanwhile).
    this.countedSince = this.switchedAt;
    // Switches back and forth cost every volunteer a load and a challenge, and every request in flight a replay. The
    // distrust of clients that left (SWITCH_BACK_DISTRUST_MS) goes by identity: an attacker with a fresh client key
    // and address each time, proving the cut's stage and leaving the moment the switch back reached it, forced about
    // one switch a hold (58 a minute per process at a 2 s hold; a red-team find). Each flap doubles the hold instead.
    if (sameRanges(rangesOf(p.manifest), this.operatorRanges)) this.switchedBackAt = this.switchedAt;
    else if (this.switchedAt - this.switchedBackAt < FLAP_WINDOW_MS) this.holdBackoff = Math.min(this.holdBackoff * 2, HOLD_BACKOFF_MAX);
    else this.holdBackoff = 1;
    const fallback = this.s.options.fallback;
    // The old partition's replicas hand over: their runner is released once the sessions they admitted end.
    if (fallback !== undefined)
      this.s.fallback = this.h.serverReplicas(p.manifest, { ...fallback, executor: p.executor }).succeeding(this.s.fallback);
    for (const member of this.s.members.values()) {
      if (member.remote) continue;
      withdrawChallenge(member);
      member.proven = false;
    }
    const replay = new ReplayOnNewPartition(p.key);
    for (const session of this.s.sessions.values()) session.abort(replay);
    this.s.registry.setFits(stagesOf(this.s.options.sizes ?? this.s.options.repartition?.sizes, rangesOf(p.manifest)));
    const moves = this.s.registry.assign(p.manifest.stages.length, stageOf, true);
    for (const move of moves) this.s.members.get(move.volunteer)?.link.send('volunteer:assign', assignment(this.s, move.to));
    this.h.expectLoad(moves.map((m) => m.volunteer));
    this.s.log(
      `re-partitioned ${this.s.model.modelId} from ${from} to ${p.key}: replicas per stage ${this.s.registry.replicasPerStage().join('/')}`,
    );
    this.s.cluster?.partitionChanged();
    this.s.options.statusChanged?.();
  }
}
