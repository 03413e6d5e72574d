import { type Clock, REAL_CLOCK, type TimerHandle } from '../../shared/clock.js';
import type { StageManifest } from '../../shared/model/manifest.js';
import type { SamplingParams } from '../../shared/model/sampling.js';
import type { WireError, WireErrorCode } from '../../shared/protocol/errors.js';
import type { MeshLoop, ReceivedReport, SessionOpen, SessionUpdate, StageVote, StepInput } from '../../shared/protocol/messages.js';
import { MESH_AHEAD, sampleAt } from '../../shared/swarm/mesh-loop.js';
import { SETTLE_MS } from '../../shared/swarm/replica-core.js';
import { agreeFingerprints, fingerprint } from '../../shared/vote/fingerprint.js';
import { agreeLogits, majority, medianOf, Quorum } from '../../shared/vote/quorum.js';
import type { Audit } from './audit.js';

/** What a session needs from the transport: send to one volunteer. */
export interface SessionTransport {
  open(volunteer: string, m: SessionOpen): void;
  update(volunteer: string, m: SessionUpdate): void;
  input(volunteer: string, m: StepInput): void;
  close(volunteer: string, sessionId: number): void;
}

/** Where a session finds spare replicas, and whom it reports misbehaviour to. */
export interface RetryHooks {
  /** Ready volunteers of `stage` that may join it next to `alongside` (not in `exclude`), best first. */
  spares(stage: number, exclude: ReadonlySet<string>, alongside: readonly string[]): string[];
  /** Called before `volunteer` joins `stage` of the route (link it to its neighbours). */
  link(stage: number, volunteer: string): void;
  /** Hears what a retry did, for the server's log. */
  log?(line: string): void;
  /** A replica did not join the session in time (or refused it): counts against its record. */
  noShow?(volunteer: string): void;
  /** A replica is proven to misbehave (equivocation): the coordinator evicts it. */
  evict?(volunteer: string, code: WireErrorCode, reason: string): void;
  /**
   * The server's own replica of `stage` (the fallback), for a stage short of
   * volunteers; null where the operator does not allow it or it has no room.
   */
  serve?(stage: number): string | null;
}

/** How the votes are counted. */
export interface VotePolicy {
  /** The configured redundancy r: every stage needs ⌊r/2⌋+1 agreeing replicas, whatever the route holds. */
  readonly redundancy: number;
  /** Replicas with an established record: newcomers never outvote them. */
  established(volunteer: string): boolean;
  /** The server's own replicas: a stage one of them computes is its alone, and its answer needs no vote. */
  trusted?(volunteer: string): boolean;
}

/** How often one step may be retried on other replicas. */
export const MAX_STEP_RETRIES = 2;
/** After every stage has a majority joined, how much longer the others are waited for before spares take their places. */
export const JOIN_GRACE_MS = 2_000;
/** Rounds of replacing replicas that did not join. */
const JOIN_ROUNDS = 3;

export class GenerationError extends Error {
  constructor(
    readonly code: WireErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** What a requester is told of an error that is not a GenerationError: its details are for the server's log only. */
export const INTERNAL_ERROR_MESSAGE = 'internal error';

/**
 * The wire error for whatever a generation threw, the same for Socket.IO
 * (chat:error) and HTTP: a GenerationError keeps its code and message,
 * anything else is ERR_INTERNAL.
 */
export function wireErrorOf(e: unknown): WireError {
  return e instanceof GenerationError ? { code: e.code, message: e.message } : { code: 'ERR_INTERNAL', message: INTERNAL_ERROR_MESSAGE };
}

export interface SessionTimeouts {
  /** Until every replica of the route has its data channels open. */
  readonly joinMs: number;
  /** Until the last stage's logits reach a majority for one step. */
  readonly stepMs: number;
}

export interface StepRecord {
  readonly token: number;
  readonly votes: StageVote[];
  /** From sending the input to stage 0 until the token was accepted. */
  readonly ms: number;
  /** Per stage, the fastest compute time a replica reported for this step. */
  readonly computeMs: number[];
  /** The agreed logits the token was sampled from (the last position). */
  readonly logits: Float32Array;
}

/** What a replica reported for a step: the fingerprints of its output and of the input it computed on. */
interface StageReport {
  readonly out: number[];
  readonly input: number[];
}

const agreeReports = (a: StageReport, b: StageReport) => agreeFingerprints(a.out, b.out) && agreeFingerprints(a.input, b.input);

interface StepWait {
  /** Made anew when the server takes over a stage mid-step. */
  logits: Quorum<Float32Array>;
  resolve: () => void;
  /** Set once the logits had SETTLE_MS to settle after their majority. */
  settleExpired: boolean;
  settleTimer: TimerHandle | null;
}

/** A receiver's fingerprint of a frame is the sender's own: the same bytes (NaN included), or within the tolerance. */
function sameFrame(a: readonly number[], b: readonly number[]): boolean {
  return (a.length === b.length && a.every((x, i) => Object.is(x, b[i]))) || agreeFingerprints([...a], [...b]);
}

/** The same numbers, bit for bit (token ids, logits a token was sampled from): no tolerance. */
function sameValues(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
  return true;
}

/** How many steps' digest votes are kept for stragglers' late reports. */
const KEPT_STEPS = 64;

/**
 * One generation through the swarm: the coordinator's side of the data path.
 * Token ids go to stage 0's replicas; each stage's replicas pass their output
 * to the next stage's; the last stage's replicas send logits here, where the
 * first majority (of the configured redundancy) that agrees is taken, a token
 * sampled (seeded) from a value no minority can move, and fed back.
 */
export class GenerationSession {
  private readonly members = new Map<string, number>();
  /** The route, changed in place when a replica is replaced. */
  private readonly current: string[][];
  /** Token ids sent to stage 0 at each step, replayed to a stage-0 replacement. */
  private readonly inputs: number[][] = [];
  /** Replicas that joined mid-generation, in the order they came. */
  readonly replacements: { readonly stage: number; readonly left: string; readonly joined: string; readonly atStep: number }[] = [];
  /** Replicas proven to have equivocated, with the step. */
  readonly equivocators: { readonly volunteer: string; readonly stage: number; readonly step: number }[] = [];
  private readonly joined = new Set<string>();
  private joinChanged: (() => void) | null = null;
  private wait: { step: number; w: StepWait } | null = null;
  /** Digest votes per step and stage, kept after the step for late reports. */
  private readonly digestVotes = new Map<number, Quorum<StageReport>[]>();
  /** Per step: each replica's own fingerprint of its output, and what receivers said they got from it. */
  private readonly own = new Map<number, Map<string, number[][]>>();
  private readonly heard = new Map<number, Map<string, { receiver: string; digest: readonly number[] }[]>>();
  private readonly needed: number;
  /** Updates with resetFrom sent to each replica: its digests must have applied as many. */
  private readonly resetsSent = new Map<string, number>();

  constructor(
    readonly sessionId: number,
    route: readonly (readonly string[])[],
    private readonly manifest: StageManifest,
    private readonly transport: SessionTransport,
    private readonly timeouts: SessionTimeouts,
    private readonly audit: Audit,
    private readonly retry: RetryHooks | null = null,
    private readonly policy: VotePolicy = { redundancy: route[0]?.length ?? 1, established: () => false },
    /** Every timeout and duration of the session: the real clock, or a test's. */
    private readonly clock: Clock = REAL_CLOCK,
    /** The mesh loop (MESH_LOOP): the last stage feeds stage 0 its tokens over the data channels, checked here after. */
    private readonly meshLoop = false,
  ) {
    this.current = route.map((ids) => [...ids]);
    for (const [stage, ids] of route.entries()) for (const id of ids) this.members.set(id, stage);
    this.needed = majority(policy.redundancy);
  }

  /** Volunteer ids per stage, as the route stands now. */
  get route(): readonly (readonly string[])[] {
    return this.current;
  }

  /** Whether the server's own replica computes these replicas' stage (the fallback). */
  private served(ids: readonly string[]): boolean {
    const trusted = this.policy.trusted;
    return trusted !== undefined && ids.length > 0 && ids.every((id) => trusted(id));
  }

  /** Agreeing answers a stage needs: a majority of r, or the server's one where it computes the stage. */
  private neededAt(stage: number): number {
    return this.served(this.current[stage] ?? []) ? 1 : this.needed;
  }

  private digestQuorum(ids: readonly string[]): Quorum<StageReport> {
    return new Quorum<StageReport>([...ids], agreeReports, {
      needed: this.served(ids) ? 1 : this.needed,
      established: (id) => this.policy.established(id),
    });
  }

  private logitsQuorum(): Quorum<Float32Array> {
    const last = this.current.length - 1;
    return new Quorum(this.current[last] as string[], agreeLogits, {
      needed: this.neededAt(last),
      combine: medianOf,
      established: (id) => this.policy.established(id),
    });
  }

  /**
   * Puts `replacement` in the place of `left` (a replica that went away): its
   * neighbours learn of it, the previous stage resends its outputs so far (or,
   * for stage 0, the coordinator resends the token ids), and the newcomer
   * rebuilds its KV cache from the agreed inputs before it takes part.
   */
  replace(left: string, replacement: string, resetFrom?: number): boolean {
    const stage = this.swap(left, replacement);
    if (stage === undefined) return false;
    this.announce(stage, [replacement], resetFrom);
    return true;
  }

  /** The session's sampling settings, known once it runs (the last stage samples with them in the mesh loop). */
  private sampling: SamplingParams | null = null;
  private maxSteps = 0;
  /** The sampler's draws before this session's step 0 (tokens a replayed request had): step t draws number drawsBefore + t. */
  private drawsBefore = 0;

  /** The `loop` field of a replica of `stage`'s session:open: stage 0 hears the last stage, the last stage feeds stage 0. */
  private loopOf(stage: number): { loop?: MeshLoop } {
    const last = this.current.length - 1;
    if (!this.meshLoop || this.sampling === null || (stage !== 0 && stage !== last)) return {};
    const peers = [...((stage === 0 ? this.current[last] : this.current[0]) ?? [])];
    return {
      loop: { peers, sampling: this.sampling, steps: this.maxSteps, ...(this.drawsBefore === 0 ? {} : { draws: this.drawsBefore }) },
    };
  }

  /** The replicas at the other end of the mesh loop from `stage` (none where the loop is off or `stage` is not an end of it). */
  private loopSide(stage: number): string[] {
    const last = this.current.length - 1;
    if (!this.meshLoop || (stage !== 0 && stage !== last)) return [];
    // A one-stage model: the stage is both ends, and its replicas feed each other.
    return [...new Set([...(stage === last ? (this.current[0] ?? []) : []), ...(stage === 0 ? (this.current[last] ?? []) : [])])];
  }

  /** Puts `replacement` in `left`'s place in the route and in the open votes; returns the stage, or undefined. */
  private swap(left: string, replacement: string, joinedAlready = true): number | undefined {
    const stage = this.members.get(left);
    if (stage === undefined || this.members.has(replacement)) return undefined;
    const ids = this.current[stage] as string[];
    ids[ids.indexOf(left)] = replacement;
    this.members.delete(left);
    this.joined.delete(left);
    this.members.set(replacement, stage);
    if (joinedAlready) this.joined.add(replacement);
    this.replacements.push({ stage, left, joined: replacement, atStep: Math.max(0, this.currentStep) });
    if (this.wait !== null) {
      if (stage === this.current.length - 1) this.wait.w.logits.substitute(left, replacement);
      this.digestVotes.get(this.wait.step)?.[stage]?.substitute(left, replacement);
    }
    return stage;
  }

  /**
   * Tells everyone concerned of the newcomers in `stage`, in one message each:
   * the newcomers open the session and replay it; the previous stage resends
   * its outputs to them (for stage 0 the coordinator resends the token ids);
   * the next stage learns its new inputs (and, after a retry, forgets its votes
   * from `resetFrom` on). One update per neighbour: several in a row could
   * reach a replica out of step with the frames they announce.
   */
  private announce(stage: number, newcomers: readonly string[], resetFrom?: number): void {
    const ids = this.current[stage] as string[];
    const step = Math.max(0, this.currentStep);
    const prev = this.current[stage - 1] ?? [];
    const next = this.current[stage + 1] ?? [];
    for (const id of newcomers)
      this.transport.open(id, {
        sessionId: this.sessionId,
        stage,
        replica: ids.indexOf(id),
        prev,
        next,
        replayTo: step,
        ...this.loopOf(stage),
        ...(this.era === 0 ? {} : { era: this.era }),
      });
    // The other end of the mesh loop learns of newcomers in stage 0 or the last stage (in the same update where it gets one).
    const loopSide = this.loopSide(stage).filter((id) => !newcomers.includes(id));
    const loopTo = (id: string) => (loopSide.includes(id) ? { loop: this.loopOf(this.members.get(id) ?? -1).loop?.peers ?? [] } : {});
    for (const p of prev)
      this.transport.update(p, {
        sessionId: this.sessionId,
        prev: this.current[stage - 2] ?? [],
        next: ids,
        resendTo: [...newcomers],
        ...loopTo(p),
      });
    for (const n of next) {
      if (resetFrom !== undefined) this.resetsSent.set(n, (this.resetsSent.get(n) ?? 0) + 1);
      this.transport.update(n, {
        sessionId: this.sessionId,
        prev: ids,
        next: this.current[stage + 2] ?? [],
        resendTo: [],
        ...(resetFrom === undefined ? {} : { resetFrom }),
        ...loopTo(n),
      });
    }
    for (const id of loopSide) {
      if (prev.includes(id) || next.includes(id)) continue;
      const k = this.members.get(id) ?? 0;
      this.transport.update(id, {
        sessionId: this.sessionId,
        prev: this.current[k - 1] ?? [],
        next: this.current[k + 1] ?? [],
        resendTo: [],
        ...loopTo(id),
      });
    }
    if (stage === 0)
      for (const id of newcomers)
        for (const [s, tokens] of this.inputs.entries()) this.transport.input(id, { sessionId: this.sessionId, step: s, tokens });
  }

  /**
   * A stage lost its majority at `step`: replace a majority of its replicas by
   * spares (proven equivocators, then the ones with the worst record, first),
   * which rebuild their KV caches and recompute the step; the next stage forgets
   * its votes on it.
   */
  private retryStage(stage: number, step: number, culprits: ReadonlySet<string> = new Set()): boolean {
    if (this.retry === null) return false;
    const ids = this.current[stage] as string[];
    // The server's own replica failed: nobody can do better.
    if (this.served(ids)) return false;
    const count = Math.max(majority(ids.length), culprits.size);
    // Proven equivocators first, then newcomers before established replicas, then the worst record.
    const est = (id: string) => Number(this.policy.established(id));
    const worstFirst = [...ids].sort((a, b) => {
      const ca = this.audit.get(a);
      const cb = this.audit.get(b);
      return Number(culprits.has(b)) - Number(culprits.has(a)) || est(a) - est(b) || cb.disagreed - ca.disagreed || ca.agreed - cb.agreed;
    });
    const leaving = worstFirst.slice(0, count);
    const staying = ids.filter((id) => !leaving.includes(id));
    const spares = this.retry.spares(stage, this.notCandidates(), staying);
    if (spares.length < count) return this.serve(stage, `step ${step}: stage ${stage} had no majority and too few spares are ready`);
    const newcomers: string[] = [];
    for (const [i, old] of leaving.entries()) {
      const neu = spares[i] as string;
      this.retry.link(stage, neu);
      if (this.swap(old, neu) === undefined) continue;
      newcomers.push(neu);
      this.transport.close(old, this.sessionId);
    }
    this.retry.log?.(
      `session ${this.sessionId} step ${step}: stage ${stage} had no majority; retrying it on ${newcomers.join(', ')} in place of ${leaving.join(', ')}`,
    );
    if (this.meshLoop) {
      // Stages may have run ahead on the undone path: every stage goes back to the step, and computes it again.
      this.rollBack(step, new Set(newcomers), leaving);
      this.announce(stage, newcomers);
      return true;
    }
    this.announce(stage, newcomers, step);
    this.resetBeyond(stage, step);
    const before = this.revote(stage, step, leaving);
    // The replicas of this stage that stay do not compute again: their answers count in the new vote.
    for (const id of staying) {
      const o = before?.outcome(id);
      if (o !== undefined) this.digestsOf(step)[stage]?.add(o);
    }
    return true;
  }

  /** Stages after the one after `stage` computed on what is now redone, too: they roll back to before `step` as well. */
  private resetBeyond(stage: number, step: number): void {
    for (let k = stage + 2; k < this.current.length; k++)
      for (const id of this.current[k] as string[]) {
        this.resetsSent.set(id, (this.resetsSent.get(id) ?? 0) + 1);
        this.transport.update(id, {
          sessionId: this.sessionId,
          prev: this.current[k - 1] as string[],
          next: this.current[k + 1] ?? [],
          resendTo: [],
          resetFrom: step,
        });
      }
  }

  /** Votes on `step` from `stage` on start again, and so does the evidence of what was sent; returns the stage's old vote. */
  private revote(stage: number, step: number, leaving: readonly string[]): Quorum<StageReport> | undefined {
    for (const id of new Set(this.current.slice(stage).flat().concat(leaving))) this.heard.get(step)?.delete(id);
    const qs = this.digestsOf(step);
    const before = qs[stage];
    for (let k = stage; k < qs.length; k++) qs[k] = this.digestQuorum(this.current[k] as string[]);
    return before;
  }

  /**
   * The server takes `stage` over (the fallback, where a stage is short of
   * volunteers): its replica replaces every volunteer of the stage, rebuilds
   * its KV cache from the agreed inputs and computes the step in flight; the
   * later stages roll back to before that step. False where the server may
   * not (FALLBACK=off, or the fallback has no room).
   */
  serve(stage: number, why: string): boolean {
    const ids = this.current[stage];
    if (ids === undefined || this.served(ids)) return false;
    const server = this.retry?.serve?.(stage) ?? null;
    if (server === null || this.members.has(server)) return false;
    this.retry?.link(stage, server);
    const started = this.currentStep >= 0;
    const step = Math.max(0, this.currentStep);
    const leaving = [...ids];
    for (const id of leaving) {
      this.members.delete(id);
      this.joined.delete(id);
      this.transport.close(id, this.sessionId);
      this.replacements.push({ stage, left: id, joined: server, atStep: step });
    }
    this.current[stage] = [server];
    this.members.set(server, stage);
    this.joined.add(server);
    if (started && this.meshLoop) {
      this.rollBack(step, new Set([server]), leaving);
      this.announce(stage, [server]);
    } else {
      this.announce(stage, [server], started ? step : undefined);
      if (started) this.resetBeyond(stage, step);
    }
    this.retry?.log?.(`session ${this.sessionId}: ${why}; the server computes stage ${stage} from step ${step} on (fallback)`);
    const wait = this.wait;
    if (wait !== null) {
      this.revote(stage, wait.step, leaving);
      if (wait.w.settleTimer !== null) this.clock.clearTimeout(wait.w.settleTimer);
      wait.w.settleTimer = null;
      wait.w.settleExpired = false;
      wait.w.logits = this.logitsQuorum();
      this.checkDecided();
    }
    return true;
  }

  /** Replicas that may not join this session: its members, and those that left it (retried out, gone). */
  notCandidates(): Set<string> {
    return new Set([...this.current.flat(), ...this.replacements.map((r) => r.left)]);
  }

  /** The stage a volunteer holds in this session, or undefined when it is not a member. */
  stageOf(volunteer: string): number | undefined {
    return this.members.get(volunteer);
  }

  onJoined(volunteer: string): void {
    if (!this.members.has(volunteer)) return;
    this.joined.add(volunteer);
    this.joinChanged?.();
  }

  private digestsOf(step: number): Quorum<StageReport>[] {
    let qs = this.digestVotes.get(step);
    if (qs === undefined) {
      qs = this.route.map((ids) => this.digestQuorum(ids));
      this.digestVotes.set(step, qs);
      for (const old of this.digestVotes.keys()) if (old < step - KEPT_STEPS) this.digestVotes.delete(old);
      for (const m of [this.own, this.heard, this.noQuorum]) for (const old of m.keys()) if (old < step - KEPT_STEPS) m.delete(old);
    }
    return qs;
  }

  /**
   * A replica's report of a step: the fingerprints of its output and of the
   * input it computed on, and of each frame it counted. Evidence for the audit,
   * also after the step.
   */
  onDigest(
    volunteer: string,
    step: number,
    digest: number[],
    computeMs = 0,
    input: number[] = [],
    received: readonly ReceivedReport[] = [],
    resets = 0,
  ): void {
    const stage = this.members.get(volunteer);
    if (stage === undefined) return;
    if (step > this.currentStep) {
      // Stage 0 computed this step before its token was verified here: the mesh loop at work.
      if (stage === 0 && this.meshLoop) this.ahead.add(step);
      this.hold(step, () => this.onDigest(volunteer, step, digest, computeMs, input, received, resets));
      return;
    }
    // Computed before a roll-back that this replica has since been told of: stale evidence.
    if (resets < (this.resetsSent.get(volunteer) ?? 0)) return;
    if (this.wait?.step === step) this.stepCompute[stage] = Math.min(this.stepCompute[stage] ?? Number.POSITIVE_INFINITY, computeMs);
    const q = this.digestsOf(step)[stage];
    if (q === undefined) return;
    if (!q.add({ status: 'fulfilled', replica: volunteer, value: { out: digest, input } })) return;
    let own = this.own.get(step);
    if (own === undefined) {
      own = new Map();
      this.own.set(step, own);
    }
    // Every output it reported for the step, also before a retry: a frame that arrives late from an earlier attempt is no lie.
    own.set(volunteer, [...(own.get(volunteer) ?? []), digest]);
    let heard = this.heard.get(step);
    if (heard === undefined) {
      heard = new Map();
      this.heard.set(step, heard);
    }
    // Stage 0's senders in the mesh loop are the last stage's replicas (the tokens they sent it).
    const senders = new Set((stage === 0 && this.meshLoop ? this.current[this.current.length - 1] : this.current[stage - 1]) ?? []);
    for (const r of received) {
      // Only reports about this stage's own senders, one per sender: a receiver cannot accuse strangers or accuse twice.
      if (!senders.has(r.from)) continue;
      const list = heard.get(r.from) ?? [];
      if (list.some((x) => x.receiver === volunteer)) continue;
      list.push({ receiver: volunteer, digest: r.digest });
      heard.set(r.from, list);
    }
    this.audit.observe(q);
    this.checkDecided();
  }

  /**
   * Replicas of `stage` whose frames, as a majority (of r) of the next stage's
   * receivers report them, differ from what they reported here: equivocators.
   */
  private equivocatorsOf(stage: number, step: number): Set<string> {
    const out = new Set<string>();
    const own = this.own.get(step);
    const heard = this.heard.get(step);
    const receivers = this.digestsOf(step)[stage + 1]?.state;
    if (own === undefined || heard === undefined || receivers?.kind !== 'agreed') return out;
    // Only receivers in their own stage's agreed group accuse: a minority of liars cannot frame a sender.
    const accusers = new Set(receivers.agreeing);
    for (const sender of this.current[stage] ?? []) {
      const said = own.get(sender);
      if (said === undefined) continue;
      const mismatches = (heard.get(sender) ?? []).filter(
        (r) => accusers.has(r.receiver) && !said.some((d) => sameFrame(r.digest, d)),
      ).length;
      if (mismatches >= this.neededAt(stage + 1)) out.add(sender);
    }
    return out;
  }

  /**
   * The stage whose output the next stage did not compute on, or -1: each
   * stage's agreed input must agree with the previous stage's agreed output
   * (stage 0's with the token ids sent). Binds what is sent to what is reported.
   */
  private brokenLink(step: number): number {
    const qs = this.digestsOf(step);
    for (const [k, q] of qs.entries()) {
      const s = q.state;
      if (s.kind !== 'agreed') continue;
      if (k === 0) {
        const sent = this.inputs[step];
        if (sent !== undefined && s.value.input.length > 0 && !agreeFingerprints(s.value.input, fingerprint(sent))) return 0;
        continue;
      }
      const before = qs[k - 1]?.state;
      if (before?.kind === 'agreed' && !agreeFingerprints(s.value.input, before.value.out)) return k - 1;
    }
    return -1;
  }

  /** A step is decided once the last stage's logits (settled) and every stage's fingerprints have a majority (or cannot). */
  private checkDecided(): void {
    if (this.wait === null) return;
    const w = this.wait.w;
    const digests = this.digestVotes.get(this.wait.step) ?? [];
    const split = digests.some((q) => q.state.kind === 'no-majority');
    const logits = w.logits.state;
    // Agreed logits that may still move (a majority, but not of identical values) get SETTLE_MS for the others to come.
    if (logits.kind === 'agreed' && !logits.settled && !w.settleExpired && w.settleTimer === null) {
      w.settleTimer = this.clock.setTimeout(() => {
        w.settleExpired = true;
        this.checkDecided();
      }, SETTLE_MS);
    }
    const logitsDone = logits.kind === 'no-majority' || (logits.kind === 'agreed' && (logits.settled || w.settleExpired));
    if (split || (logitsDone && digests.every((q) => q.state.kind !== 'pending'))) w.resolve();
  }

  private currentStep = -1;
  private stepCompute: number[] = [];

  onLogits(volunteer: string, step: number, logits: Float32Array, resets = 0): void {
    if (this.members.get(volunteer) !== this.route.length - 1 || this.wait === null) return;
    if (step > this.wait.step) {
      this.hold(step, () => this.onLogits(volunteer, step, logits, resets));
      return;
    }
    // Computed on a path since rolled back (a speculative step of the mesh loop): stale.
    if (this.wait.step !== step || resets < (this.resetsSent.get(volunteer) ?? 0)) return;
    this.wait.w.logits.add({ status: 'fulfilled', replica: volunteer, value: logits });
    this.checkDecided();
  }

  onFailure(volunteer: string, step: number, code: string, message: string): void {
    const stage = this.members.get(volunteer);
    if (stage === undefined) return;
    // "My inputs had no majority" is evidence about the previous stage, not a failure of this
    // replica. A majority of the stage saying so, at the step in flight, and the previous stage
    // cannot feed it (a sender that left, one that sends other frames than it reports): the
    // server takes the previous stage over, where the operator allows.
    if (code === 'ERR_NO_QUORUM') {
      if (this.wait?.step !== step || stage === 0) return;
      let said = this.noQuorum.get(step);
      if (said === undefined) {
        said = new Set();
        this.noQuorum.set(step, said);
      }
      said.add(volunteer);
      const count = (this.current[stage] ?? []).filter((id) => said.has(id)).length;
      if (count >= this.neededAt(stage))
        this.serve(stage - 1, `step ${step}: ${count} replicas of stage ${stage} had no majority of inputs`);
      return;
    }
    if (this.currentStep < 0 && !this.joined.has(volunteer)) {
      // It refused the session (full, or could not link): a no-show now rather than after the join timeout.
      this.refused.add(volunteer);
      this.joinChanged?.();
      return;
    }
    if (stage === this.route.length - 1 && this.wait !== null && this.wait.step === step) {
      this.wait.w.logits.add({ status: 'rejected', replica: volunteer, reason: `${code}: ${message}` });
    }
    if (this.wait !== null && this.wait.step === step)
      this.digestVotes.get(step)?.[stage]?.add({ status: 'rejected', replica: volunteer, reason: code });
    this.checkDecided();
  }

  private readonly refused = new Set<string>();
  /** Members that left and stayed in the route (no spare took their place). */
  private readonly departed = new Set<string>();
  /** Per step, the replicas that said their inputs had no majority. */
  private readonly noQuorum = new Map<number, Set<string>>();

  /** A member left: the session cannot be trusted to finish on this route. */
  onLeft(volunteer: string): void {
    const stage = this.members.get(volunteer);
    if (stage === undefined) return;
    this.departed.add(volunteer);
    if (this.currentStep < 0) {
      this.refused.add(volunteer);
      this.joinChanged?.();
    }
    if (this.wait === null) return;
    if (stage === this.route.length - 1) this.wait.w.logits.add({ status: 'disconnected', replica: volunteer });
    this.digestVotes.get(this.wait.step)?.[stage]?.add({ status: 'disconnected', replica: volunteer });
    this.checkDecided();
  }

  /** Joined replicas per stage. */
  private joinedPerStage(): number[] {
    return this.current.map((ids) => ids.filter((id) => this.joined.has(id)).length);
  }

  /**
   * Opens the session on every replica and waits until all have joined, or
   * until every stage has a majority joined and JOIN_GRACE_MS more have
   * passed, or joinMs. Replicas that did not join (or refused) are no-shows:
   * spares take their places, in up to JOIN_ROUNDS rounds. Fails only when a
   * stage cannot reach a majority of r joined.
   */
  private async join(): Promise<void> {
    for (const [stage, ids] of this.route.entries()) {
      ids.forEach((id, replica) => {
        this.transport.open(id, {
          sessionId: this.sessionId,
          stage,
          replica,
          prev: this.route[stage - 1] ?? [],
          next: this.route[stage + 1] ?? [],
          replayTo: 0,
          ...this.loopOf(stage),
        });
      });
    }
    const tried = new Set(this.members.keys());
    for (let round = 0; ; round++) {
      await this.joinRound();
      const missing = [...this.members.keys()].filter((id) => !this.joined.has(id));
      if (missing.length === 0) return;
      if (round + 1 >= JOIN_ROUNDS) break;
      let replaced = 0;
      for (const id of missing) {
        const stage = this.members.get(id) as number;
        this.retry?.noShow?.(id);
        const staying = (this.current[stage] as string[]).filter((x) => x !== id && this.joined.has(x));
        const spare = this.retry?.spares(stage, new Set([...tried, ...this.notCandidates()]), staying)[0];
        if (spare === undefined) continue;
        tried.add(spare);
        this.retry?.link(stage, spare);
        if (this.swap(id, spare, false) === undefined) continue;
        this.transport.close(id, this.sessionId);
        this.announce(stage, [spare]);
        this.retry?.log?.(`session ${this.sessionId}: ${id} of stage ${stage} did not join; ${spare} takes its place`);
        replaced += 1;
      }
      if (replaced === 0) break;
    }
    // A stage still short of a majority joined: the server computes it, where the operator allows.
    for (const [stage, n] of this.joinedPerStage().entries())
      if (n < this.neededAt(stage)) this.serve(stage, `stage ${stage}: only ${n} of ${this.policy.redundancy} replicas joined`);
    const short = this.joinedPerStage().findIndex((n, stage) => n < this.neededAt(stage));
    if (short >= 0) {
      const missing = (this.current[short] as string[]).filter((id) => !this.joined.has(id));
      throw new GenerationError(
        'ERR_NO_ROUTE',
        `stage ${short}: only ${this.joinedPerStage()[short]} of ${this.policy.redundancy} replicas joined within ${this.timeouts.joinMs} ms (${this.neededAt(short)} needed; ${missing.join(', ')} did not)`,
      );
    }
  }

  /** One round of waiting for replicas to join (see join). */
  private joinRound(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let grace: TimerHandle | null = null;
      const done = () => {
        this.clock.clearTimeout(timer);
        if (grace !== null) this.clock.clearTimeout(grace);
        this.joinChanged = null;
        this.onAbort = null;
        resolve();
      };
      const check = () => {
        const waiting = [...this.members.keys()].filter((id) => !this.joined.has(id) && !this.refused.has(id));
        if (waiting.length === 0) return done();
        if (grace === null && this.joinedPerStage().every((n, stage) => n >= this.neededAt(stage)))
          grace = this.clock.setTimeout(done, JOIN_GRACE_MS);
      };
      const timer = this.clock.setTimeout(done, this.timeouts.joinMs);
      this.joinChanged = check;
      if (this.aborted !== null) {
        this.clock.clearTimeout(timer);
        reject(this.aborted);
        return;
      }
      this.onAbort = (e) => {
        this.clock.clearTimeout(timer);
        if (grace !== null) this.clock.clearTimeout(grace);
        this.joinChanged = null;
        reject(e);
      };
      check();
    });
  }

  private aborted: GenerationError | null = null;
  private onAbort: ((e: GenerationError) => void) | null = null;

  /** Ends the generation with `e` at once (the server is shutting down). */
  abort(e: GenerationError): void {
    this.aborted ??= e;
    this.onAbort?.(e);
  }

  private within(p: Promise<void>, ms: number, onTimeout: () => GenerationError): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.aborted !== null) {
        reject(this.aborted);
        return;
      }
      const timer = this.clock.setTimeout(() => reject(onTimeout()), ms);
      this.onAbort = (e) => {
        this.clock.clearTimeout(timer);
        reject(e);
      };
      p.then(
        () => {
          this.clock.clearTimeout(timer);
          resolve();
        },
        (e: unknown) => {
          this.clock.clearTimeout(timer);
          reject(e);
        },
      );
    });
  }

  /** The server takes over the first stage without a majority at `step` (its replicas went silent); false where it may not. */
  private serveLagging(step: number, w: StepWait): boolean {
    let stage = this.digestsOf(step).findIndex((q) => q.state.kind !== 'agreed');
    if (stage < 0 && w.logits.state.kind !== 'agreed') stage = this.current.length - 1;
    // A stage whose senders are short (one left, and the ones that stay do not agree on what they send)
    // cannot take a majority of its inputs, nor could the server in its place: the server takes the senders' stage.
    if (stage > 0 && (this.current[stage - 1] ?? []).some((id) => this.departed.has(id)) && !this.served(this.current[stage - 1] ?? []))
      stage -= 1;
    return stage >= 0 && this.serve(stage, `step ${step}: stage ${stage} had no majority within ${this.timeouts.stepMs} ms`);
  }

  /** The stage to retry at this step and whom to replace first, or null when every vote holds. */
  private failingStage(step: number, w: StepWait): { stage: number; culprits: Set<string> } | null {
    const last = this.route.length - 1;
    const digestStates = this.digestsOf(step).map((q) => q.state.kind);
    let failing = digestStates.indexOf('no-majority');
    if (failing < 0 && w.logits.state.kind !== 'agreed') failing = last;
    if (failing < 0) failing = digestStates.findIndex((k) => k !== 'agreed');
    if (failing >= 0) return { stage: failing, culprits: new Set() };
    const broken = this.brokenLink(step);
    // Where every link holds, receivers' word alone convicts nobody (colluding receivers could frame an
    // honest sender whose report is in its stage's majority): a sender they accuse is only suspected.
    for (let k = 0; k < last; k++) {
      if (k === broken) continue;
      for (const v of this.equivocatorsOf(k, step)) {
        if (this.suspects.some((x) => x.volunteer === v)) continue;
        this.suspects.push({ volunteer: v, stage: k, step });
        this.retry?.log?.(
          `session ${this.sessionId} step ${step}: receivers say ${v} of stage ${k} sent other frames than it reported (suspected; every link held)`,
        );
      }
    }
    if (broken < 0) return null;
    // A broken link is proof that the next stage's majority computed on something else than this stage's
    // majority reported: those of its senders whose frames, as that majority received them, differ from their reports.
    const culprits = this.equivocatorsOf(broken, step);
    for (const v of culprits)
      if (!this.equivocators.some((e) => e.volunteer === v) && !this.reported.some((e) => e.volunteer === v))
        this.equivocators.push({ volunteer: v, stage: broken, step });
    return { stage: broken, culprits };
  }

  /** Tells the coordinator of the equivocators found so far (after they left the route). */
  private reportEquivocators(): void {
    for (const e of this.equivocators.splice(0)) {
      this.retry?.evict?.(
        e.volunteer,
        'ERR_EQUIVOCATION',
        e.stage === this.current.length - 1
          ? `session ${this.sessionId} step ${e.step}: the token it sent stage 0 (mesh loop) is not the one its own logits give`
          : `session ${this.sessionId} step ${e.step}: its frames to stage ${e.stage + 1} differ from the output it reported`,
      );
      this.reported.push(e);
    }
  }

  /** Senders that receivers said sent other frames than they reported, where every link held: logged, not evicted. */
  readonly suspects: { readonly volunteer: string; readonly stage: number; readonly step: number }[] = [];

  /** Equivocators reported to the coordinator. */
  readonly reported: { readonly volunteer: string; readonly stage: number; readonly step: number }[] = [];

  /** Steps stage 0 computed (on the last stage's token) before the coordinator had verified that token. */
  private readonly ahead = new Set<number>();

  /** Steps rolled back because stage 0 computed them on another token than the verified one. */
  get meshRollBacks(): number {
    return this.meshRolled.size;
  }

  /** How many steps stage 0 began on a mesh token, ahead of the coordinator's verification. */
  get stepsAhead(): number {
    return this.ahead.size;
  }

  /** Reports of steps after the one being decided (the mesh loop runs ahead), per step, until that step begins. */
  private readonly early = new Map<number, (() => void)[]>();
  /** Steps rolled back once because stage 0 computed on a mesh token other than the verified one. */
  private readonly meshRolled = new Set<number>();
  /** Steps whose mesh tokens were judged. */
  private readonly meshJudged = new Set<number>();
  /** Per step, the last-stage replicas whose logits were the very value the token was sampled from. */
  private readonly exactLogits = new Map<number, Set<string>>();

  /** Keeps a report of a step still to come, within the mesh loop's reach (a replica cannot make this hold more). */
  private hold(step: number, report: () => void): void {
    if (!this.meshLoop || this.currentStep < 0 || step > this.currentStep + MESH_AHEAD + 1) return;
    let held = this.early.get(step);
    if (held === undefined) {
      held = [];
      this.early.set(step, held);
    }
    // Each replica sends one digest (and the last stage one logits) per step and roll-back.
    if (held.length < 4 * this.members.size) held.push(report);
  }

  /** Counts the held reports of `step`, which begins now. */
  private release(step: number): void {
    const held = this.early.get(step) ?? [];
    for (const k of [...this.early.keys()]) if (k <= step) this.early.delete(k);
    for (const report of held) report();
  }

  /**
   * Whether stage 0 computed `step` on another token than the verified one (a
   * mesh token from a lying or diverging last stage): some replica of stage 0
   * reported another input, and its stage's vote does not hold on the verified
   * one. Once per step: a stage-0 liar cannot make every step roll back twice.
   */
  private meshMiss(step: number): boolean {
    const sent = this.inputs[step];
    if (!this.meshLoop || step === 0 || sent === undefined || this.meshRolled.has(step)) return false;
    const want = fingerprint(sent);
    const q = this.digestsOf(step)[0];
    if (q === undefined) return false;
    const st = q.state;
    if (st.kind === 'agreed' && sameValues(st.value.input, want)) return false;
    return (this.current[0] ?? []).some((id) => {
      const o = q.outcome(id);
      return o?.status === 'fulfilled' && !sameValues(o.value.input, want);
    });
  }

  /**
   * Rolls every stage back to before `step` (caches truncated to the last
   * verified step) and feeds stage 0 the verified token: the steps computed on
   * the unverified token are discarded, none of their tokens was streamed.
   */
  private rollBackPipeline(step: number): void {
    this.meshRolled.add(step);
    this.judgeMeshTokens(step, true);
    this.rollBack(step, new Set(), []);
    this.retry?.log?.(
      `session ${this.sessionId} step ${step}: stage 0 computed on another token than the verified one; every stage rolls back to step ${step}`,
    );
    this.reportEquivocators();
  }

  /** The session's era: bumped by each roll-back of the whole pipeline; frames carry it (mod 256). */
  private era = 0;

  /**
   * With the mesh loop, stages run ahead of the coordinator, so a roll-back is
   * of the whole pipeline: every replica but the `newcomers` (which open in the
   * new era) forgets the steps from `step` on, frames still in flight from the
   * undone path are told by their era and dropped, and stage 0 is fed `step`'s
   * verified token again; every stage's vote on `step` starts again.
   */
  private rollBack(step: number, newcomers: ReadonlySet<string>, leaving: readonly string[]): void {
    this.era = (this.era + 1) & 0xff;
    for (const [k, ids] of this.current.entries())
      for (const id of ids) {
        if (newcomers.has(id)) continue;
        this.resetsSent.set(id, (this.resetsSent.get(id) ?? 0) + 1);
        this.transport.update(id, {
          sessionId: this.sessionId,
          prev: this.current[k - 1] ?? [],
          next: this.current[k + 1] ?? [],
          resendTo: [],
          resetFrom: step,
          era: this.era,
        });
      }
    const tokens = this.inputs[step];
    if (tokens !== undefined)
      for (const id of this.current[0] ?? [])
        if (!newcomers.has(id)) this.transport.input(id, { sessionId: this.sessionId, step, tokens: [...tokens] });
    this.revote(0, step, leaving);
    this.early.clear();
  }

  /** Notes which last-stage replicas sent the very logits step `step`'s token was sampled from. */
  private noteExactLogits(step: number, q: Quorum<Float32Array>): void {
    const st = q.state;
    if (!this.meshLoop || st.kind !== 'agreed') return;
    const exact = new Set<string>();
    for (const id of this.current[this.current.length - 1] ?? []) {
      const o = q.outcome(id);
      if (o?.status === 'fulfilled' && sameValues(o.value, st.value)) exact.add(id);
    }
    this.exactLogits.set(step, exact);
    this.exactLogits.delete(step - MESH_AHEAD - 2);
  }

  /**
   * The mesh tokens that fed `step`, as stage 0's replicas report them (a
   * majority of them needed, so a minority cannot frame a sender). Where stage
   * 0 computed on another token than the verified one (`broken`: the link from
   * the last stage to stage 0 did not hold), a last-stage replica that sent it
   * disagreed with the vote (counted in its record), and where its own logits
   * were the very value the token was sampled from, the sampler is
   * deterministic and the lie is proven: it is evicted as an equivocator. Where
   * the link held, the receivers' word alone convicts nobody: suspected.
   */
  private judgeMeshTokens(step: number, broken: boolean): void {
    const sent = this.inputs[step];
    if (!this.meshLoop || step === 0 || sent === undefined || this.meshJudged.has(step)) return;
    this.meshJudged.add(step);
    this.meshJudged.delete(step - KEPT_STEPS);
    const want = fingerprint(sent);
    const receivers = new Set(this.current[0] ?? []);
    const last = this.current.length - 1;
    for (const sender of this.current[last] ?? []) {
      const wrong = (this.heard.get(step)?.get(sender) ?? []).filter((r) => receivers.has(r.receiver) && !sameValues(r.digest, want));
      if (wrong.length < this.neededAt(0)) continue;
      if (!broken) {
        if (!this.suspects.some((x) => x.volunteer === sender)) this.suspects.push({ volunteer: sender, stage: last, step });
      } else if (this.exactLogits.get(step - 1)?.has(sender) === true && !this.policy.trusted?.(sender)) {
        if (!this.equivocators.some((e) => e.volunteer === sender) && !this.reported.some((e) => e.volunteer === sender))
          this.equivocators.push({ volunteer: sender, stage: last, step });
      } else this.audit.credit(sender, false);
      this.retry?.log?.(
        `session ${this.sessionId} step ${step}: receivers say ${sender} of stage ${last} sent stage 0 another token than the verified one${broken ? '' : ' (suspected; stage 0 computed on the verified one)'}`,
      );
    }
  }

  /** Runs the generation; `onToken` is called with each verified token as it is accepted. */
  async run(
    promptIds: readonly number[],
    maxTokens: number,
    sampling: SamplingParams,
    /** Returns true to end the generation after this token (a stop sequence appeared). */
    onToken: (token: number, record: StepRecord) => unknown,
    /** Tokens sampled before this session (a replay): the seeded generator goes on from where they left it. */
    sampledBefore = 0,
  ): Promise<{ tokens: number[]; finishReason: 'stop' | 'length' }> {
    const eos = this.manifest.model.eosTokenId;
    this.sampling = sampling;
    this.maxSteps = maxTokens;
    // A replay goes on with the draws that follow the tokens its requester has (randomAt's index).
    this.drawsBefore = sampledBefore;
    const tokens: number[] = [];
    const fresh = (): StepWait => ({ logits: this.logitsQuorum(), resolve: () => {}, settleExpired: false, settleTimer: null });
    try {
      await this.join();
      let input: readonly number[] = promptIds;
      for (let step = 0; step < maxTokens; step++) {
        const t0 = this.clock.now();
        const last = this.route.length - 1;
        this.currentStep = step;
        this.stepCompute = this.route.map(() => Number.POSITIVE_INFINITY);
        this.inputs[step] = [...input];
        let w = fresh();
        let meshRollBacks = 0;
        for (let attempt = 0; ; attempt++) {
          const decided = new Promise<void>((resolve) => {
            w.resolve = resolve;
          });
          this.wait = { step, w };
          if (attempt === 0) {
            for (const id of this.route[0] as string[]) this.transport.input(id, { sessionId: this.sessionId, step, tokens: [...input] });
            // Reports of this step that came while the one before was decided (the mesh loop runs ahead).
            this.release(step);
          }
          this.checkDecided();
          try {
            await this.within(
              decided,
              this.timeouts.stepMs,
              () =>
                new GenerationError(
                  'ERR_STEP_TIMEOUT',
                  `step ${step}: no majority (${this.needed} of ${this.policy.redundancy}) of stage ${last}'s logits within ${this.timeouts.stepMs} ms`,
                ),
            );
          } catch (e) {
            // A stage whose replicas went silent: the server computes it, where the operator allows, and the step goes on.
            if (e instanceof GenerationError && e.code === 'ERR_STEP_TIMEOUT' && this.serveLagging(step, w)) continue;
            throw e;
          }
          if (w.settleTimer !== null) this.clock.clearTimeout(w.settleTimer);
          // Stage 0 computed on a mesh token that is not the verified one: every stage goes back to before this step.
          if (this.meshMiss(step)) {
            this.rollBackPipeline(step);
            meshRollBacks += 1;
            w = fresh();
            continue;
          }
          const failing = this.failingStage(step, w);
          if (failing === null) {
            this.judgeMeshTokens(step, false);
            break;
          }
          // Logits of last-stage replicas that stay are carried into the new vote when the last stage is retried.
          const kept = failing.stage === last ? (this.route[last] ?? []).map((id) => w.logits.outcome(id)) : [];
          const retried = attempt - meshRollBacks < MAX_STEP_RETRIES && this.retryStage(failing.stage, step, failing.culprits);
          this.reportEquivocators();
          if (!retried) {
            const n = this.route[failing.stage]?.length ?? 0;
            throw new GenerationError(
              'ERR_NO_QUORUM',
              failing.culprits.size > 0
                ? `step ${step}: replicas of stage ${failing.stage} sent the next stage other outputs than they reported (${[...failing.culprits].join(', ')}), and no spare replicas could retry it`
                : `step ${step}: the ${n} replicas of stage ${failing.stage} did not agree (a majority of ${this.needed} of ${this.policy.redundancy} is needed), and no spare replicas could retry it`,
            );
          }
          w = fresh();
          for (const o of kept) if (o !== undefined && this.members.get(o.replica) === last) w.logits.add(o);
        }
        this.reportEquivocators();
        const digests = this.digestsOf(step);
        const state = w.logits.state;
        if (state.kind !== 'agreed') throw new GenerationError('ERR_NO_QUORUM', `step ${step}: no agreed logits`);
        // Step t's draw from (seed, t): the same as the last stage's replicas draw in the mesh loop and the reference runner's t-th.
        const token = sampleAt(state.value, sampling, this.drawsBefore + step);
        this.noteExactLogits(step, w.logits);
        if (token === eos) return { tokens, finishReason: 'stop' };
        const votes: StageVote[] = this.route.map((ids, stage) => {
          const q = stage === last ? w.logits.state : digests[stage]?.state;
          const r = this.policy.redundancy;
          return q?.kind === 'agreed'
            ? {
                stage,
                agreed: q.agreeing.length,
                disagreed: q.disagreeing.length,
                missing: Math.max(0, ids.length - q.agreeing.length - q.disagreeing.length),
                replicas: r,
                server: this.served(ids),
              }
            : { stage, agreed: 0, disagreed: 0, missing: ids.length, replicas: r, server: this.served(ids) };
        });
        tokens.push(token);
        if (onToken(token, { token, votes, ms: this.clock.now() - t0, computeMs: [...this.stepCompute], logits: state.value }) === true)
          return { tokens, finishReason: 'stop' };
        input = [token];
      }
      return { tokens, finishReason: 'length' };
    } finally {
      if (this.wait?.w.settleTimer != null) this.clock.clearTimeout(this.wait.w.settleTimer);
      this.wait = null;
      for (const id of this.members.keys()) this.transport.close(id, this.sessionId);
    }
  }
}
