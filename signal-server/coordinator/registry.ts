import { MAX_SESSIONS_PER_REPLICA } from '../../shared/protocol/capacity.js';
import type { Backend } from '../../shared/protocol/messages.js';
import { MAX_REDUNDANCY } from '../../shared/protocol/validate.js';
import { type Move, pickStage, pickStageFor, planRebalance } from './scheduler.js';
import { canHold, type Stage } from './stage-assignment.js';

export interface Volunteer {
  readonly id: string;
  readonly backend: Backend;
  readonly adapter: string | null;
  stage: number;
  /** Set once the volunteer has loaded and verified its stage. */
  ready: boolean;
  stepMs: number | null;
  readonly joinedAt: number;
  /** Memory it offers for a stage (from its capacity report, clamped); absent for mirrored volunteers of a cluster. */
  readonly memoryBytes?: number;
  /** The largest single buffer it can hold (capacity.ts bufferLimitBytes); null or absent: no limit but its memory. */
  readonly bufferLimitBytes?: number | null;
  /** Who it is (its identity keys): volunteers sharing one are one client, counted once on a stage. */
  readonly keys?: readonly string[];
  /** A volunteer of another server of a cluster, mirrored here: only its own server assigns it a stage. */
  readonly remote?: boolean;
  /**
   * The most sessions it keeps open at once, as its ready for the stage said (StageReady.sessions: a stage with
   * graph capture holds a row a session); absent: MAX_SESSIONS_PER_REPLICA. A claim about itself alone: one that
   * holds fewer than it says refuses the rest, and each refusal is its no-show.
   */
  sessionLimit?: number;
  /**
   * Given a stage and not ready past its load deadline (LOAD_DEADLINE_MS): it holds no seat when the stages are
   * balanced nor when newcomers are placed, until it is ready or moved. A cluster's process publishes it for its own.
   */
  stale?: boolean;
  /**
   * A volunteer of another server of a cluster whose server serves another partition than this one (a re-partition
   * is under way, and one of the two has not switched yet): its stage is of that partition. It holds no seat here,
   * routes nothing, and while there is one the stages are not re-balanced here (see Registry.rebalance).
   */
  elsewhere?: boolean;
}

/** Moves `v` to `stage`: it is ready there, and says what it holds there, only after its next ready and challenge. */
function moveTo(v: Volunteer, stage: number): void {
  v.stage = stage;
  v.ready = false;
  v.stepMs = null;
  delete v.sessionLimit;
  delete v.stale;
}

/** The most sessions `v` keeps open at once (route-picker.ts routes no more to it). */
export function sessionLimitOf(v: Pick<Volunteer, 'sessionLimit'> | undefined): number {
  return v?.sessionLimit ?? MAX_SESSIONS_PER_REPLICA;
}

/**
 * The volunteers of one served model and the stage each one holds. Pure state
 * with no I/O: the server turns its decisions into messages.
 */
export class Registry {
  private readonly volunteers = new Map<string, Volunteer>();
  /** What each stage of the partition served now needs (memory, largest buffer); null: unknown, any volunteer holds any stage. */
  private fits: readonly Stage[] | null = null;
  /**
   * Distinct clients and their keys on each stage, kept up to date as volunteers join (a join storm must not
   * count every volunteer again at each join); dropped at any other change and counted again when next asked.
   */
  private clients: { counts: number[]; keys: Set<string>[] } | null = null;

  constructor(
    readonly modelId: string,
    private stages: number,
    readonly redundancy: number,
  ) {
    if (!Number.isInteger(redundancy) || redundancy < 1 || redundancy > MAX_REDUNDANCY)
      throw new RangeError(`redundancy must be an integer from 1 to ${MAX_REDUNDANCY}, got ${redundancy}`);
  }

  /** Stages of the partition served now (a re-partition changes it). */
  get numStages(): number {
    return this.stages;
  }

  /** Says what each stage of the partition served now needs (at start and at every re-partition); null: unknown. */
  setFits(fits: readonly Stage[] | null): void {
    this.fits = fits;
  }

  /** What each stage of the partition served now needs; null: unknown. */
  stageFits(): readonly Stage[] | null {
    return this.fits;
  }

  /** Does this volunteer (or one of this capacity) fit stage `stage`? True where the stages' needs are unknown. */
  fitsStage(
    v: { readonly memoryBytes?: number | undefined; readonly bufferLimitBytes?: number | null | undefined },
    stage: number,
  ): boolean {
    const fit = this.fits?.find((s) => s.index === stage);
    if (this.fits === null || fit === undefined || v.memoryBytes === undefined) return true;
    return canHold({ id: '', memoryBytes: v.memoryBytes, bufferLimitBytes: v.bufferLimitBytes ?? null }, fit);
  }

  /**
   * Registers a volunteer and returns the stage it should load: of those it can
   * hold, the one with fewest distinct clients (pickStageFor). Null, and not
   * registered, when it can hold no stage of the partition served now.
   */
  join(
    id: string,
    backend: Backend,
    adapter: string | null,
    now = Date.now(),
    memoryBytes?: number,
    who: { readonly bufferLimitBytes?: number | null; readonly keys?: readonly string[] } = {},
  ): number | null {
    if (this.volunteers.has(id)) throw new Error(`volunteer ${id} is already registered`);
    const capacity = { memoryBytes, bufferLimitBytes: who.bufferLimitBytes ?? null };
    const holdable = Array.from({ length: this.stages }, (_, s) => s).filter((s) => this.fitsStage(capacity, s));
    const keys = who.keys ?? [];
    const clients = this.clientView();
    const ownClientOn = clients.keys.map((on) => keys.some((k) => on.has(k)));
    const stage = pickStageFor(clients.counts, holdable, ownClientOn);
    if (stage === null) return null;
    // As clientView counts: a volunteer none of whose keys is on its stage yet is one more client there.
    if (!ownClientOn[stage]) clients.counts[stage] = (clients.counts[stage] as number) + 1;
    for (const k of keys) clients.keys[stage]?.add(k);
    this.volunteers.set(id, {
      id,
      backend,
      adapter,
      stage,
      ready: false,
      stepMs: null,
      joinedAt: now,
      ...(memoryBytes === undefined ? {} : { memoryBytes }),
      ...(who.bufferLimitBytes === undefined ? {} : { bufferLimitBytes: who.bufferLimitBytes }),
      ...(who.keys === undefined ? {} : { keys: who.keys }),
    });
    return stage;
  }

  /**
   * Puts volunteers on the stages of a plan (of the same or a new partition of
   * `numStages` stages): each one whose stage or partition changes must load
   * and prove it again. Returns the moves; volunteers the plan leaves out stay
   * where they are when that stage still exists, else take the emptiest.
   */
  assign(numStages: number, stageOf: ReadonlyMap<string, number>, newPartition: boolean): Move[] {
    this.stages = numStages;
    this.clients = null;
    // Distinct clients per stage, as joins count them: one client's sockets planned on a stage count once there.
    const clients = new Array<number>(numStages).fill(0);
    const keysOn = Array.from({ length: numStages }, () => new Set<string>());
    const place = (keys: readonly string[], s: number) => {
      const on = keysOn[s];
      if (on === undefined) return;
      if (!keys.some((k) => on.has(k))) clients[s] = (clients[s] ?? 0) + 1;
      for (const k of keys) on.add(k);
    };
    for (const [id, s] of stageOf) place(this.volunteers.get(id)?.keys ?? [], s);
    const moves: Move[] = [];
    for (const v of this.volunteers.values()) {
      if (v.remote === true) continue;
      let to = stageOf.get(v.id);
      if (to === undefined) {
        // Where it can hold (the stage with fewest clients, one its own client is not on first); where it can
        // hold none, the emptiest (it fails to load, as today).
        const keys = v.keys ?? [];
        const holdable = clients.map((_, s) => s).filter((s) => this.fitsStage(v, s));
        const ownClientOn = keysOn.map((on) => keys.some((k) => on.has(k)));
        to = v.stage < numStages && !newPartition ? v.stage : (pickStageFor(clients, holdable, ownClientOn) ?? pickStage(clients));
        place(keys, to);
      }
      if (to === v.stage && !newPartition) continue;
      moves.push({ volunteer: v.id, from: v.stage, to });
      moveTo(v, to);
    }
    return moves;
  }

  /** Marks a volunteer ready on its stage; false when it reports another stage than assigned. */
  markReady(id: string, stage: number, stepMs: number): boolean {
    const v = this.volunteers.get(id);
    if (v === undefined || v.stage !== stage) return false;
    v.ready = true;
    v.stepMs = stepMs;
    if (v.stale === true) {
      delete v.stale;
      this.clients = null;
    }
    return true;
  }

  /** A volunteer of this server not ready past its load deadline: it holds no seat (Volunteer.stale). False: no change. */
  markStale(id: string): boolean {
    const v = this.volunteers.get(id);
    if (v === undefined || v.ready || v.stale === true || v.remote === true) return false;
    v.stale = true;
    this.clients = null;
    return true;
  }

  /** Removes a volunteer and returns the moves that re-balance the stages. */
  leave(id: string): Move[] {
    if (!this.volunteers.delete(id)) return [];
    this.clients = null;
    return this.rebalance();
  }

  /**
   * Adds or updates a volunteer of another server (a cluster) as that server publishes it. With
   * such volunteers the stages are balanced over all of them, and each server moves only its own.
   */
  mirror(v: Volunteer): void {
    const had = this.volunteers.get(v.id);
    if (had !== undefined && had.remote !== true) return;
    this.volunteers.set(v.id, { ...v, remote: true });
    this.clients = null;
  }

  /** A cluster is switching partitions: volunteers of another process are on another partition than this one's. */
  get switching(): boolean {
    for (const v of this.volunteers.values()) if (v.elsewhere === true) return true;
    return false;
  }

  /** The moves that re-balance the stages now (a cluster asks from time to time: its servers assign stages at once). */
  rebalanceNow(): Move[] {
    return this.rebalance();
  }

  private rebalance(): Move[] {
    const all = [...this.volunteers.values()];
    // A cluster switching partitions: the processes that switched place their volunteers by the leader's plan, the
    // others still serve the old partition. Balanced meanwhile against half the cluster, a process would move its
    // volunteers off the stages the plan gave them (and back once the others switched).
    if (this.switching) return [];
    const mirrored = all.some((v) => v.remote === true);
    // In a cluster every server plans the same moves (in id order) and carries out those of its own volunteers.
    if (mirrored) all.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    // One that never loaded what it was given holds no seat: before, a stranger that said hello and nothing more was
    // moved into a stage a departure left short and held it there, every request refused (a red-team find).
    const assignment = new Map(all.filter((v) => v.stale !== true && v.elsewhere !== true).map((v) => [v.id, v.stage]));
    const canHold = (id: string, stage: number) => {
      const v = this.volunteers.get(id);
      return v === undefined || this.fitsStage(v, stage);
    };
    const keysOf = (id: string) => this.volunteers.get(id)?.keys ?? [];
    const moves = planRebalance(assignment, this.numStages, this.redundancy, canHold, keysOf).filter(
      (m) => this.volunteers.get(m.volunteer)?.remote !== true,
    );
    if (moves.length > 0) this.clients = null;
    for (const m of moves) {
      const v = this.volunteers.get(m.volunteer);
      if (v !== undefined) moveTo(v, m.to);
    }
    return moves;
  }

  get(id: string): Volunteer | undefined {
    return this.volunteers.get(id);
  }

  /** Volunteers assigned to each stage (ready or not). */
  replicasPerStage(): number[] {
    const counts = new Array<number>(this.numStages).fill(0);
    for (const v of this.volunteers.values())
      if (v.stage < this.stages && v.elsewhere !== true) counts[v.stage] = (counts[v.stage] as number) + 1;
    return counts;
  }

  /** Distinct clients holding a seat on each stage (a volunteer sharing an identity key with one counted before counts once; not a stale one). */
  clientsPerStage(): number[] {
    return [...this.clientView().counts];
  }

  private clientView(): { counts: number[]; keys: Set<string>[] } {
    if (this.clients !== null && this.clients.counts.length === this.stages) return this.clients;
    const keysOn = Array.from({ length: this.stages }, () => new Set<string>());
    const counts = new Array<number>(this.stages).fill(0);
    for (const v of this.volunteers.values()) {
      const on = keysOn[v.stage];
      if (on === undefined || v.stale === true || v.elsewhere === true) continue;
      const keys = v.keys ?? [];
      if (!keys.some((k) => on.has(k))) counts[v.stage] = (counts[v.stage] as number) + 1;
      for (const k of keys) on.add(k);
    }
    this.clients = { counts, keys: keysOn };
    return this.clients;
  }

  /** Ready volunteers of a stage, longest-standing first. */
  readyReplicas(stage: number): Volunteer[] {
    return [...this.volunteers.values()]
      .filter((v) => v.stage === stage && v.ready && v.elsewhere !== true)
      .sort((a, b) => a.joinedAt - b.joinedAt);
  }

  all(): Volunteer[] {
    return [...this.volunteers.values()];
  }

  get size(): number {
    return this.volunteers.size;
  }
}
