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
}

/**
 * The volunteers of one served model and the stage each one holds. Pure state
 * with no I/O: the server turns its decisions into messages.
 */
export class Registry {
  private readonly volunteers = new Map<string, Volunteer>();

  constructor(
    readonly modelId: string,
    readonly numStages: number,
    readonly redundancy: number,
  ) {
    if (!Number.isInteger(redundancy) || redundancy < 1) throw new RangeError(`redundancy must be a positive integer, got ${redundancy}`);
  }

  /** Registers a volunteer and returns the stage it should load. */
  join(id: string, backend: Backend, adapter: string | null, now = Date.now()): number {
    if (this.volunteers.has(id)) throw new Error(`volunteer ${id} is already registered`);
    const stage = pickStage(this.replicasPerStage());
    this.volunteers.set(id, { id, backend, adapter, stage, ready: false, stepMs: null, joinedAt: now });
    return stage;
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

  private rebalance(): Move[] {
    const assignment = new Map([...this.volunteers.values()].map((v) => [v.id, v.stage]));
    const moves = planRebalance(assignment, this.numStages, this.redundancy);
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
    for (const v of this.volunteers.values()) counts[v.stage] = (counts[v.stage] as number) + 1;
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
