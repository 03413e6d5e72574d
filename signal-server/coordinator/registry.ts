import type { Backend } from '../../shared/protocol/messages.js';
import { type Move, pickStage, planRebalance } from './scheduler.js';

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
  /** A volunteer of another server of a cluster, mirrored here: only its own server assigns it a stage. */
  readonly remote?: boolean;
}

/**
 * The volunteers of one served model and the stage each one holds. Pure state
 * with no I/O: the server turns its decisions into messages.
 */
export class Registry {
  private readonly volunteers = new Map<string, Volunteer>();

  constructor(
    readonly modelId: string,
    private stages: number,
    readonly redundancy: number,
  ) {
    if (!Number.isInteger(redundancy) || redundancy < 1) throw new RangeError(`redundancy must be a positive integer, got ${redundancy}`);
  }

  /** Stages of the partition served now (a re-partition changes it). */
  get numStages(): number {
    return this.stages;
  }

  /** Registers a volunteer and returns the stage it should load. */
  join(id: string, backend: Backend, adapter: string | null, now = Date.now(), memoryBytes?: number): number {
    if (this.volunteers.has(id)) throw new Error(`volunteer ${id} is already registered`);
    const stage = pickStage(this.replicasPerStage());
    this.volunteers.set(id, {
      id,
      backend,
      adapter,
      stage,
      ready: false,
      stepMs: null,
      joinedAt: now,
      ...(memoryBytes === undefined ? {} : { memoryBytes }),
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
    const counts = new Array<number>(numStages).fill(0);
    for (const s of stageOf.values()) counts[s] = (counts[s] ?? 0) + 1;
    const moves: Move[] = [];
    for (const v of this.volunteers.values()) {
      if (v.remote === true) continue;
      let to = stageOf.get(v.id);
      if (to === undefined) {
        to = v.stage < numStages && !newPartition ? v.stage : pickStage(counts);
        counts[to] = (counts[to] ?? 0) + 1;
      }
      if (to === v.stage && !newPartition) continue;
      moves.push({ volunteer: v.id, from: v.stage, to });
      v.stage = to;
      v.ready = false;
      v.stepMs = null;
    }
    return moves;
  }

  /** Marks a volunteer ready on its stage; false when it reports another stage than assigned. */
  markReady(id: string, stage: number, stepMs: number): boolean {
    const v = this.volunteers.get(id);
    if (v === undefined || v.stage !== stage) return false;
    v.ready = true;
    v.stepMs = stepMs;
    return true;
  }

  /** Removes a volunteer and returns the moves that re-balance the stages. */
  leave(id: string): Move[] {
    if (!this.volunteers.delete(id)) return [];
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
  }

  /** The moves that re-balance the stages now (a cluster asks from time to time: its servers assign stages at once). */
  rebalanceNow(): Move[] {
    return this.rebalance();
  }

  private rebalance(): Move[] {
    const all = [...this.volunteers.values()];
    const mirrored = all.some((v) => v.remote === true);
    // In a cluster every server plans the same moves (in id order) and carries out those of its own volunteers.
    if (mirrored) all.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const assignment = new Map(all.map((v) => [v.id, v.stage]));
    const moves = planRebalance(assignment, this.numStages, this.redundancy).filter(
      (m) => this.volunteers.get(m.volunteer)?.remote !== true,
    );
    for (const m of moves) {
      const v = this.volunteers.get(m.volunteer);
      if (v !== undefined) {
        v.stage = m.to;
        v.ready = false;
        v.stepMs = null;
      }
    }
    return moves;
  }

  get(id: string): Volunteer | undefined {
    return this.volunteers.get(id);
  }

  /** Volunteers assigned to each stage (ready or not). */
  replicasPerStage(): number[] {
    const counts = new Array<number>(this.numStages).fill(0);
    for (const v of this.volunteers.values()) if (v.stage < this.stages) counts[v.stage] = (counts[v.stage] as number) + 1;
    return counts;
  }

  /** Ready volunteers of a stage, longest-standing first. */
  readyReplicas(stage: number): Volunteer[] {
    return [...this.volunteers.values()].filter((v) => v.stage === stage && v.ready).sort((a, b) => a.joinedAt - b.joinedAt);
  }

  all(): Volunteer[] {
    return [...this.volunteers.values()];
  }

  get size(): number {
    return this.volunteers.size;
  }
}
