import { type Clock, REAL_CLOCK } from '../../shared/clock.js';
import type { StageManifest } from '../../shared/model/manifest.js';
import type { SamplingParams } from '../../shared/model/sampling.js';
import type { MeshLoop, SessionOpen } from '../../shared/protocol/messages.js';
import { majority } from '../../shared/vote/quorum.js';
import type { Audit } from './audit.js';
import type { ForcedPlan } from './forced-plan.js';
import type { RetryHooks, SessionTimeouts, SessionTransport, VotePolicy } from './session-types.js';

/**
 * A session's route and who is in it: the state every part of a session reads
 * (its votes, repairs, mesh-loop checks, joining and step loop build on it, one file each).
 */
export abstract class SessionRoute {
  protected readonly members = new Map<string, number>();
  /** The route, changed in place when a replica is replaced. */
  protected readonly current: string[][];
  /** Token ids sent to stage 0 at each step, replayed to a stage-0 replacement. */
  protected readonly inputs: number[][] = [];
  /** Replicas that joined mid-generation, in the order they came. */
  readonly replacements: { readonly stage: number; readonly left: string; readonly joined: string; readonly atStep: number }[] = [];
  /**
   * Stages the server took because their volunteers failed the vote (no majority, silent, too few joined, no
   * majority of inputs), not because they were short of volunteers: kept by the server to the end of the request,
   * never handed back (hand-back.ts). Handed back, the same volunteers (sybils that draw a token of their own, a
   * silent pair) would have the stage again: the fallback was the defence against them.
   */
  readonly keptByServer = new Set<number>();
  /** Replicas proven to have equivocated, with the step. */
  readonly equivocators: { readonly volunteer: string; readonly stage: number; readonly step: number }[] = [];
  protected readonly joined = new Set<string>();
  protected readonly needed: number;
  /** Updates with resetFrom sent to each replica: its digests must have applied as many. */
  protected readonly resetsSent = new Map<string, number>();
  /** Replicas that refused the session before it started: no-shows now rather than after the join timeout. */
  protected readonly refused = new Set<string>();
  /** Those of them that said they were full (ERR_REPLICA_FULL): their own server judges that. */
  protected readonly refusedFull = new Set<string>();
  /** Members that left and stayed in the route (no spare took their place). */
  protected readonly departed = new Set<string>();
  /** Hears that a replica joined or refused, while the session waits for them. */
  protected joinChanged: (() => void) | null = null;
  /** The step being decided (-1 until the first begins), and per stage the fastest compute time reported for it. */
  protected currentStep = -1;
  protected stepCompute: number[] = [];

  /** Ends the session on `volunteer`, saying how many steps it has run (the reports later than those and the lead are owed to nobody). */
  protected closeOn(volunteer: string): void {
    this.transport.close(volunteer, this.sessionId, Math.max(0, this.currentStep + 1));
  }
  /** The session's sampling settings, known once it runs (the last stage samples with them in the mesh loop). */
  protected sampling: SamplingParams | null = null;
  protected maxSteps = 0;
  /** The sampler's draws before this session's step 0 (tokens a replayed request had): step t draws number drawsBefore + t. */
  protected drawsBefore = 0;
  /** What each step feeds and how many rows of logits it carries (a scored prompt's given tokens), known once it runs. */
  protected plan: ForcedPlan | null = null;
  /** The top form's size of the last stage's logits (SessionOpen.topLogits), known once it runs; null: whole rows. */
  protected topLogits: number | null = null;
  /** Whether a scored prompt's rows go as scored forms (SessionOpen.scoreTokens), known once it runs. */
  protected scoredForms = false;
  /** Whether the top forms carry each replica's draw (SessionOpen.drawLogits: drawn-forms.ts), known once it runs. */
  protected drawnForms = false;

  /** Senders that receivers said sent other frames than they reported, where every link held: logged, not evicted. */
  readonly suspects: { readonly volunteer: string; readonly stage: number; readonly step: number }[] = [];

  /** Equivocators reported to the coordinator. */
  readonly reported: { readonly volunteer: string; readonly stage: number; readonly step: number }[] = [];

  constructor(
    readonly sessionId: number,
    route: readonly (readonly string[])[],
    protected readonly manifest: StageManifest,
    protected readonly transport: SessionTransport,
    protected readonly timeouts: SessionTimeouts,
    protected readonly audit: Audit,
    protected readonly retry: RetryHooks | null = null,
    protected readonly policy: VotePolicy = { redundancy: route[0]?.length ?? 1, established: () => false },
    /** Every timeout and duration of the session: the real clock, or a test's. */
    protected readonly clock: Clock = REAL_CLOCK,
    /** The mesh loop (MESH_LOOP): the last stage feeds stage 0 its tokens over the data channels, checked here after. */
    readonly meshLoop = false,
    /** Optimistic quorum fan-out (FANOUT=majority): replicas are told their stage's size, and send by the rotation. */
    protected readonly fanout = false,
    /**
     * A scored prompt's tokens go to stage 0 up to MESH_AHEAD steps before their step begins (MESH_LOOP: on where
     * the mesh loop is on): its stages run ahead, as the mesh loop's do, and the coordinator still votes on each step.
     */
    readonly scoreAhead = false,
  ) {
    this.current = route.map((ids) => [...ids]);
    for (const [stage, ids] of route.entries()) for (const id of ids) this.members.set(id, stage);
    this.needed = majority(policy.redundancy);
  }

  /**
   * Whether the stages may compute steps the coordinator has not begun (the mesh loop, or a scored prompt's tokens
   * sent ahead): a repair then rolls the whole pipeline back, and reports of steps to come are held.
   */
  protected get runsAhead(): boolean {
    return this.meshLoop || this.scoreAhead;
  }

  /** Volunteer ids per stage, as the route stands now. */
  get route(): readonly (readonly string[])[] {
    return this.current;
  }

  /** Whether the server's own replica computes these replicas' stage (the fallback). */
  protected served(ids: readonly string[]): boolean {
    const trusted = this.policy.trusted;
    return trusted !== undefined && ids.length > 0 && ids.every((id) => trusted(id));
  }

  /** Agreeing answers a stage needs: a majority of r, or the server's one where it computes the stage. */
  protected neededAt(stage: number): number {
    return this.served(this.current[stage] ?? []) ? 1 : this.needed;
  }

  /** The `loop` field of a replica of `stage`'s session:open: stage 0 hears the last stage, the last stage feeds stage 0. */
  protected loopOf(stage: number): { loop?: MeshLoop } {
    const last = this.current.length - 1;
    if (!this.meshLoop || this.sampling === null || (stage !== 0 && stage !== last)) return {};
    const peers = [...((stage === 0 ? this.current[last] : this.current[0]) ?? [])];
    return {
      loop: { peers, sampling: this.sampling, steps: this.maxSteps, ...(this.drawsBefore === 0 ? {} : { draws: this.drawsBefore }) },
    };
  }

  /**
   * The `scoreRows`, `scoreChunks` and `topLogits` fields of a replica of `stage`'s session:open: the last stage's,
   * where step 0 carries several rows, where the steps after it may, and where its logits go as top forms.
   */
  protected rowsOf(
    stage: number,
  ): Pick<SessionOpen, 'scoreRows' | 'scoreChunks' | 'topLogits' | 'drawLogits'> & { scoreTokens?: number[] } {
    const plan = this.plan;
    if (plan === null || stage !== this.current.length - 1) return {};
    return {
      ...(plan.firstRows > 1 ? { scoreRows: plan.firstRows } : {}),
      ...(plan.chunked ? { scoreChunks: true } : {}),
      ...(this.topLogits === null ? {} : { topLogits: this.topLogits }),
      // The coordinator's draw of step t is number drawsBefore + t − plan.steps (a scored prompt's steps draw nothing).
      ...(this.drawnForms && this.sampling !== null
        ? { drawLogits: { sampling: this.sampling, draws: this.drawsBefore - plan.steps } }
        : {}),
      ...(this.scoredForms ? { scoreTokens: [...plan.prompt, ...plan.forced] } : {}),
    };
  }

  /** The form of the last stage's logits at `step`: scored forms of its rows, a top form, or whole rows. */
  protected logitsFormAt(
    step: number,
  ): { kind: 'scored'; targets: number[] } | { kind: 'top' | 'drawn'; k: number } | { kind: 'rows'; rows: number } {
    const plan = this.plan;
    if (this.scoredForms && plan !== null && step < plan.steps) return { kind: 'scored', targets: plan.targets(step) };
    if (this.topLogits !== null && (plan === null || step >= plan.steps))
      return { kind: this.drawnForms ? 'drawn' : 'top', k: this.topLogits };
    return { kind: 'rows', rows: this.logitsRows(step) };
  }

  /** Rows of logits `step` carries (ForcedPlan.rows). */
  protected logitsRows(step: number): number {
    return this.plan?.rows(step) ?? 1;
  }

  /** The `fanout` field of a replica of `stage`'s session:open: its stage's size, where the session fans out by the rotation. */
  protected fanoutOf(stage: number): { fanout?: number } {
    return this.fanout ? { fanout: this.current[stage]?.length ?? 0 } : {};
  }

  /** The replicas at the other end of the mesh loop from `stage` (none where the loop is off or `stage` is not an end of it). */
  protected loopSide(stage: number): string[] {
    const last = this.current.length - 1;
    if (!this.meshLoop || (stage !== 0 && stage !== last)) return [];
    // A one-stage model: the stage is both ends, and its replicas feed each other.
    return [...new Set([...(stage === last ? (this.current[0] ?? []) : []), ...(stage === 0 ? (this.current[last] ?? []) : [])])];
  }

  /** Was `volunteer` in this session's route: a member now, or one replaced (retried out, moved, gone)? */
  involves(volunteer: string): boolean {
    return this.members.has(volunteer) || this.replacements.some((r) => r.left === volunteer);
  }

  /** Replicas that may not join this session: its members, and those that left it (retried out, gone). */
  notCandidates(): Set<string> {
    return new Set([...this.current.flat(), ...this.replacements.map((r) => r.left)]);
  }

  /** The stage a volunteer holds in this session, or undefined when it is not a member. */
  stageOf(volunteer: string): number | undefined {
    return this.members.get(volunteer);
  }

  /** Whether `volunteer` left this session and stays in its route (gone, or taken out as silent with no spare). */
  hasLeft(volunteer: string): boolean {
    return this.departed.has(volunteer);
  }

  /** Joined replicas per stage. */
  protected joinedPerStage(): number[] {
    return this.current.map((ids) => ids.filter((id) => this.joined.has(id)).length);
  }
}
