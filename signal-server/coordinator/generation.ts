import type { StageManifest } from '../../shared/model/manifest.js';
import { type SamplingParams, sampleToken, seededRandom } from '../../shared/model/sampling.js';
import type { WireErrorCode } from '../../shared/protocol/errors.js';
import type { SessionOpen, SessionUpdate, StageVote, StepInput } from '../../shared/protocol/messages.js';
import { agreeFingerprints } from '../../shared/vote/fingerprint.js';
import { agreeLogits, majority, Quorum } from '../../shared/vote/quorum.js';
import type { Audit } from './audit.js';

/** What a session needs from the transport: send to one volunteer. */
export interface SessionTransport {
  open(volunteer: string, m: SessionOpen): void;
  update(volunteer: string, m: SessionUpdate): void;
  input(volunteer: string, m: StepInput): void;
  close(volunteer: string, sessionId: number): void;
}

/** Where a session finds spare replicas to retry a stage that lost its majority. */
export interface RetryHooks {
  /** Ready volunteers of `stage` that are not in `exclude`, best first. */
  spares(stage: number, exclude: ReadonlySet<string>): string[];
  /** Called before `volunteer` joins `stage` of the route (link it to its neighbours). */
  link(stage: number, volunteer: string): void;
  /** Hears what a retry did, for the server's log. */
  log?(line: string): void;
}

/** How often one step may be retried on other replicas. */
export const MAX_STEP_RETRIES = 2;

export class GenerationError extends Error {
  constructor(
    readonly code: WireErrorCode,
    message: string,
  ) {
    super(message);
  }
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

interface StepWait {
  readonly logits: Quorum<Float32Array>;
  resolve: () => void;
}

/** How many steps' digest votes are kept for stragglers' late reports. */
const KEPT_STEPS = 64;

/**
 * One generation through the swarm: the coordinator's side of the data path.
 * Token ids go to stage 0's replicas; each stage's replicas pass their output
 * to the next stage's; the last stage's replicas send logits here, where the
 * first majority that agrees is taken, a token sampled (seeded) and fed back.
 */
export class GenerationSession {
  private readonly members = new Map<string, number>();
  /** The route, changed in place when a replica is replaced. */
  private readonly current: string[][];
  /** Token ids sent to stage 0 at each step, replayed to a stage-0 replacement. */
  private readonly inputs: number[][] = [];
  /** Replicas that joined mid-generation, in the order they came. */
  readonly replacements: { readonly stage: number; readonly left: string; readonly joined: string; readonly atStep: number }[] = [];
  private readonly joined = new Set<string>();
  private joinedAll: (() => void) | null = null;
  private wait: { step: number; w: StepWait } | null = null;
  /** Digest votes per step and stage, kept after the step for late reports. */
  private readonly digestVotes = new Map<number, Quorum<number[]>[]>();

  constructor(
    readonly sessionId: number,
    route: readonly (readonly string[])[],
    private readonly manifest: StageManifest,
    private readonly transport: SessionTransport,
    private readonly timeouts: SessionTimeouts,
    private readonly audit: Audit,
    private readonly retry: RetryHooks | null = null,
  ) {
    this.current = route.map((ids) => [...ids]);
    for (const [stage, ids] of route.entries()) for (const id of ids) this.members.set(id, stage);
  }

  /** Volunteer ids per stage, as the route stands now. */
  get route(): readonly (readonly string[])[] {
    return this.current;
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

  /** Puts `replacement` in `left`'s place in the route and in the open votes; returns the stage, or undefined. */
  private swap(left: string, replacement: string): number | undefined {
    const stage = this.members.get(left);
    if (stage === undefined || this.members.has(replacement)) return undefined;
    const ids = this.current[stage] as string[];
    ids[ids.indexOf(left)] = replacement;
    this.members.delete(left);
    this.members.set(replacement, stage);
    this.joined.add(replacement);
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
      this.transport.open(id, { sessionId: this.sessionId, stage, replica: ids.indexOf(id), prev, next, replayTo: step });
    for (const p of prev)
      this.transport.update(p, { sessionId: this.sessionId, prev: this.current[stage - 2] ?? [], next: ids, resendTo: [...newcomers] });
    for (const n of next)
      this.transport.update(n, {
        sessionId: this.sessionId,
        prev: ids,
        next: this.current[stage + 2] ?? [],
        resendTo: [],
        ...(resetFrom === undefined ? {} : { resetFrom }),
      });
    if (stage === 0)
      for (const id of newcomers)
        for (const [s, tokens] of this.inputs.entries()) this.transport.input(id, { sessionId: this.sessionId, step: s, tokens });
  }

  /**
   * A stage lost its majority at `step`: replace a majority of its replicas by
   * spares (the ones with the worst record first), which rebuild their KV
   * caches and recompute the step; the next stage forgets its votes on it.
   */
  private retryStage(stage: number, step: number): boolean {
    if (this.retry === null) return false;
    const ids = this.current[stage] as string[];
    const need = majority(ids.length);
    const spares = this.retry.spares(stage, new Set(this.current.flat()));
    if (spares.length < need) return false;
    const worstFirst = [...ids].sort((a, b) => {
      const ca = this.audit.get(a);
      const cb = this.audit.get(b);
      return cb.disagreed - ca.disagreed || ca.agreed - cb.agreed;
    });
    const newcomers: string[] = [];
    for (const [i, old] of worstFirst.slice(0, need).entries()) {
      const neu = spares[i] as string;
      this.retry.link(stage, neu);
      if (this.swap(old, neu) === undefined) continue;
      newcomers.push(neu);
      this.transport.close(old, this.sessionId);
    }
    this.announce(stage, newcomers, step);
    this.retry.log?.(
      `session ${this.sessionId} step ${step}: stage ${stage} had no majority; retrying it on ${newcomers.join(', ')} in place of ${worstFirst.slice(0, need).join(', ')}`,
    );
    // Votes on this step from this stage on start again.
    const qs = this.digestsOf(step);
    for (let k = stage; k < qs.length; k++) qs[k] = new Quorum<number[]>([...(this.current[k] as string[])], agreeFingerprints);
    return true;
  }

  /** The stage a volunteer holds in this session, or undefined when it is not a member. */
  stageOf(volunteer: string): number | undefined {
    return this.members.get(volunteer);
  }

  onJoined(volunteer: string): void {
    if (!this.members.has(volunteer)) return;
    this.joined.add(volunteer);
    if (this.joined.size === this.members.size) this.joinedAll?.();
  }

  private digestsOf(step: number): Quorum<number[]>[] {
    let qs = this.digestVotes.get(step);
    if (qs === undefined) {
      qs = this.route.map((ids) => new Quorum<number[]>([...ids], agreeFingerprints));
      this.digestVotes.set(step, qs);
      for (const old of this.digestVotes.keys()) if (old < step - KEPT_STEPS) this.digestVotes.delete(old);
    }
    return qs;
  }

  /** A replica's fingerprint of its output for a step: evidence for the audit, also after the step. */
  onDigest(volunteer: string, step: number, digest: number[], computeMs = 0): void {
    const stage = this.members.get(volunteer);
    if (stage === undefined || step > this.currentStep) return;
    if (this.wait?.step === step) this.stepCompute[stage] = Math.min(this.stepCompute[stage] ?? Number.POSITIVE_INFINITY, computeMs);
    const q = this.digestsOf(step)[stage];
    if (q === undefined) return;
    q.add({ status: 'fulfilled', replica: volunteer, value: digest });
    this.audit.observe(q);
    this.checkDecided();
  }

  /** A step is decided once the last stage's logits and every stage's fingerprints have a majority (or cannot). */
  private checkDecided(): void {
    if (this.wait === null) return;
    const digests = this.digestVotes.get(this.wait.step) ?? [];
    const split = digests.some((q) => q.state.kind === 'no-majority');
    if (split || (this.wait.w.logits.state.kind !== 'pending' && digests.every((q) => q.state.kind !== 'pending'))) this.wait.w.resolve();
  }

  private currentStep = -1;
  private stepCompute: number[] = [];

  onLogits(volunteer: string, step: number, logits: Float32Array): void {
    if (this.members.get(volunteer) !== this.route.length - 1 || this.wait === null || this.wait.step !== step) return;
    this.wait.w.logits.add({ status: 'fulfilled', replica: volunteer, value: logits });
    this.checkDecided();
  }

  onFailure(volunteer: string, step: number, code: string, message: string): void {
    const stage = this.members.get(volunteer);
    // "My inputs had no majority" is evidence about the previous stage, which the
    // coordinator sees in that stage's own fingerprints, not a failure of this replica.
    if (stage === undefined || code === 'ERR_NO_QUORUM') return;
    if (stage === this.route.length - 1 && this.wait !== null && this.wait.step === step) {
      this.wait.w.logits.add({ status: 'rejected', replica: volunteer, reason: `${code}: ${message}` });
    }
    if (this.wait !== null && this.wait.step === step)
      this.digestVotes.get(step)?.[stage]?.add({ status: 'rejected', replica: volunteer, reason: code });
    this.checkDecided();
  }

  /** A member left: the session cannot be trusted to finish on this route. */
  onLeft(volunteer: string): void {
    const stage = this.members.get(volunteer);
    if (stage === undefined) return;
    if (this.wait === null) return;
    if (stage === this.route.length - 1) this.wait.w.logits.add({ status: 'disconnected', replica: volunteer });
    this.digestVotes.get(this.wait.step)?.[stage]?.add({ status: 'disconnected', replica: volunteer });
    this.checkDecided();
  }

  private async join(): Promise<void> {
    const all = new Promise<void>((resolve) => {
      this.joinedAll = resolve;
    });
    for (const [stage, ids] of this.route.entries()) {
      ids.forEach((id, replica) => {
        this.transport.open(id, {
          sessionId: this.sessionId,
          stage,
          replica,
          prev: this.route[stage - 1] ?? [],
          next: this.route[stage + 1] ?? [],
          replayTo: 0,
        });
      });
    }
    await this.within(all, this.timeouts.joinMs, () => {
      const missing = [...this.members.keys()].filter((id) => !this.joined.has(id));
      return new GenerationError(
        'ERR_NO_ROUTE',
        `${missing.length} replica(s) did not connect within ${this.timeouts.joinMs} ms: ${missing.join(', ')}`,
      );
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
      const timer = setTimeout(() => reject(onTimeout()), ms);
      this.onAbort = (e) => {
        clearTimeout(timer);
        reject(e);
      };
      p.then(
        () => {
          clearTimeout(timer);
          resolve();
        },
        (e: unknown) => {
          clearTimeout(timer);
          reject(e);
        },
      );
    });
  }

  /** Runs the generation; `onToken` is called with each verified token as it is accepted. */
  async run(
    promptIds: readonly number[],
    maxTokens: number,
    sampling: SamplingParams,
    /** Returns true to end the generation after this token (a stop sequence appeared). */
    onToken: (token: number, record: StepRecord) => unknown,
  ): Promise<{ tokens: number[]; finishReason: 'stop' | 'length' }> {
    const eos = this.manifest.model.eosTokenId;
    const random = seededRandom(sampling.seed);
    const tokens: number[] = [];
    try {
      await this.join();
      let input: readonly number[] = promptIds;
      for (let step = 0; step < maxTokens; step++) {
        const t0 = performance.now();
        const last = this.route.length - 1;
        this.currentStep = step;
        this.stepCompute = this.route.map(() => Number.POSITIVE_INFINITY);
        this.inputs[step] = [...input];
        let w: StepWait = { logits: new Quorum(this.route[last] as string[], agreeLogits), resolve: () => {} };
        for (let attempt = 0; ; attempt++) {
          const decided = new Promise<void>((resolve) => {
            w.resolve = resolve;
          });
          this.wait = { step, w };
          if (attempt === 0)
            for (const id of this.route[0] as string[]) this.transport.input(id, { sessionId: this.sessionId, step, tokens: [...input] });
          this.checkDecided();
          await this.within(
            decided,
            this.timeouts.stepMs,
            () =>
              new GenerationError(
                'ERR_STEP_TIMEOUT',
                `step ${step}: no majority of stage ${last}'s logits within ${this.timeouts.stepMs} ms`,
              ),
          );
          const digestStates = this.digestsOf(step).map((q) => q.state.kind);
          let failing = digestStates.indexOf('no-majority');
          if (failing < 0 && w.logits.state.kind !== 'agreed') failing = last;
          if (failing < 0) failing = digestStates.findIndex((k) => k !== 'agreed');
          if (failing < 0) break;
          if (attempt >= MAX_STEP_RETRIES || !this.retryStage(failing, step)) {
            const n = this.route[failing]?.length ?? 0;
            throw new GenerationError(
              'ERR_NO_QUORUM',
              `step ${step}: the ${n} replicas of stage ${failing} did not agree (a majority of ${majority(n)} is needed), and no spare replicas could retry it`,
            );
          }
          w = { logits: new Quorum(this.route[last] as string[], agreeLogits), resolve: () => {} };
        }
        const digests = this.digestsOf(step);
        const state = w.logits.state;
        if (state.kind !== 'agreed') throw new GenerationError('ERR_NO_QUORUM', `step ${step}: no agreed logits`);
        const token = sampleToken(state.value, sampling, random);
        if (token === eos) return { tokens, finishReason: 'stop' };
        const votes: StageVote[] = this.route.map((ids, stage) => {
          const q = stage === last ? w.logits.state : digests[stage]?.state;
          return q?.kind === 'agreed'
            ? {
                stage,
                agreed: q.agreeing.length,
                disagreed: q.disagreeing.length,
                missing: ids.length - q.agreeing.length - q.disagreeing.length,
                replicas: ids.length,
              }
            : { stage, agreed: 0, disagreed: 0, missing: ids.length, replicas: ids.length };
        });
        tokens.push(token);
        if (onToken(token, { token, votes, ms: performance.now() - t0, computeMs: [...this.stepCompute], logits: state.value }) === true)
          return { tokens, finishReason: 'stop' };
        input = [token];
      }
      return { tokens, finishReason: 'length' };
    } finally {
      this.wait = null;
      for (const id of this.members.keys()) this.transport.close(id, this.sessionId);
    }
  }
}
