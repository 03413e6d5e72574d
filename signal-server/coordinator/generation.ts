import { randomAt, type SamplingParams } from '../../shared/model/sampling.js';
import type { StageVote } from '../../shared/protocol/messages.js';
import { MESH_AHEAD, sampleAt } from '../../shared/swarm/mesh-loop.js';
import { CONTESTED_DRAW, drawFromDrawnForm, drawnLogitsFor, drawnParts, expandDrawnForm } from '../../shared/vote/drawn-forms.js';
import { agreedTokens, expandScoredRow, expandTopLogits, scoredFormsFit, topLogitsFor, topParts } from '../../shared/vote/top-logits.js';
import { ForcedPlan } from './forced-plan.js';
import { GenerationError } from './generation-error.js';
import { ReportAllowance, type ReportKind } from './report-allowance.js';
import { SessionJoin } from './session-join.js';
import type { GenerationResult, StepRecord } from './session-types.js';
import type { StepWait } from './step-votes.js';

export { GenerationError, INTERNAL_ERROR_MESSAGE, wireErrorOf } from './generation-error.js';
export { JOIN_GRACE_MS } from './session-join.js';
export type { RetryHooks, SessionTimeouts, SessionTransport, StepRecord, VotePolicy } from './session-types.js';

/** How often one step may be retried on other replicas. */
export const MAX_STEP_RETRIES = 2;

/**
 * One generation through the swarm: the coordinator's side of the data path.
 * Token ids go to stage 0's replicas; each stage's replicas pass their output
 * to the next stage's; the last stage's replicas send logits here, where the
 * first majority (of the configured redundancy) that agrees is taken, a token
 * sampled (seeded) from a value no minority can move, and fed back.
 */
export class GenerationSession extends SessionJoin {
  private readonly allowance = new ReportAllowance();
  /** The last step whose input went to stage 0 before the step began (sendAhead), or -1. */
  private sentAhead = -1;

  /** Steps whose input went to stage 0 before they began (a scored prompt's, sent ahead). */
  get inputsAhead(): number {
    return Math.max(this.sentAhead, 0);
  }

  /** Whether `volunteer` owes this report (report-allowance.ts): if so, its socket's event budget does not count it. */
  owesReport(volunteer: string, kind: ReportKind, step: number): boolean {
    const stage = this.members.get(volunteer);
    const member = stage !== undefined && (kind === 'digest' || stage === this.current.length - 1);
    return this.allowance.admit(volunteer, kind, step, member, this.currentStep);
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
    /**
     * Tokens given after the prompt, scored before any is sampled (a scored prompt): each one's agreed logits go
     * to `onToken` with `record.forced`, in order. They draw nothing, are no part of the completion, and never end
     * it; `maxTokens` counts the steps after them. Fed `chunk` a step (ForcedPlan), each row of a step's logits
     * scoring the token after its position; the last one goes alone with the first sampling step.
     */
    forced: readonly number[] = [],
    /**
     * A scored prompt's first positions in one step: step 0 runs `promptIds` (these many, ≥ 2, with `forced`
     * not empty), and its logits have a row for each; the rows before the last go to `onToken` first, as forced
     * records of the prompt's tokens 1 … scoreRows − 1, then the last row as forced[0]'s. 1: one row.
     */
    scoreRows = 1,
    /** The most given tokens a step after step 0 (ForcedPlan's chunk); 1: one a step. */
    chunk = 1,
  ): Promise<GenerationResult> {
    const eos = this.manifest.model.eosTokenId;
    const vocab = this.manifest.model.vocabSize;
    if (scoreRows > 1 && sampledBefore > 0) throw new RangeError(`scoreRows ${scoreRows} needs a fresh prompt`);
    const plan = new ForcedPlan(promptIds, forced, scoreRows, chunk);
    this.plan = plan;
    this.sampling = sampling;
    // Where the draw reads only the most likely tokens, the last stage sends those (top-logits.ts), not whole rows;
    // a scored prompt's rows, where the vocabulary allows, each row's top tokens and the value of the token it scores.
    // At a temperature the top form carries each replica's draw, and the majority's is served (drawn-forms.ts).
    const drawn = drawnLogitsFor(sampling, vocab);
    this.topLogits = drawn ?? topLogitsFor(sampling, vocab);
    this.drawnForms = drawn !== null;
    this.scoredForms = plan.steps > 0 && scoredFormsFit(vocab);
    this.maxSteps = plan.steps + maxTokens;
    // A replay goes on with the draws that follow the tokens its requester has (randomAt's index).
    this.drawsBefore = sampledBefore;
    const tokens: number[] = [];
    // The completion so far, for the penalties: a replay's prompt ends with the tokens sampled before it.
    const generated = promptIds.slice(promptIds.length - sampledBefore);
    this.generated = generated;
    const fresh = (step: number): StepWait => ({
      logits: this.logitsQuorum(step),
      resolve: () => {},
      settleExpired: false,
      settleTimer: null,
      stallTimer: null,
    });
    try {
      await this.join();
      // Judged over its sessions one after another: its watch goes on from what its sessions before left.
      for (const id of this.members.keys()) this.silence.watch(id, 0, this.retry?.silenceBefore?.(id));
      let input: readonly number[] = promptIds;
      for (let step = 0; step < this.maxSteps; step++) {
        const t0 = this.clock.now();
        const last = this.route.length - 1;
        this.currentStep = step;
        this.retry?.stepBegan?.(step, this.members.keys());
        this.stepCompute = this.route.map(() => Number.POSITIVE_INFINITY);
        this.inputs[step] = [...input];
        this.stepStarted.set(step, t0);
        // Members that sent nothing while the steps before were decided leave before this one begins, and places
        // left with no spare ready then are taken by spares ready now.
        if (step > 0) {
          this.judgeSilence(true);
          this.refillDeadSlots();
        }
        let w = fresh(step);
        let meshRollBacks = 0;
        let restarts = 0;
        for (let attempt = 0; ; attempt++) {
          const decided = new Promise<void>((resolve) => {
            w.resolve = resolve;
          });
          this.wait = { step, w };
          if (attempt === 0) {
            if (step > this.sentAhead)
              for (const id of this.route[0] as string[]) this.transport.input(id, { sessionId: this.sessionId, step, tokens: [...input] });
            this.sendAhead(step);
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
          // Decided, and then a repair started this step's votes again before this turn came (the server took
          // a stage over when the replica whose report decided the step left in the same task): wait for the new votes.
          if (!this.decidedNow()) {
            if (++restarts > this.route.length)
              throw new GenerationError('ERR_NO_QUORUM', `step ${step}: its votes started again too often`);
            continue;
          }
          if (w.settleTimer !== null) this.clock.clearTimeout(w.settleTimer);
          if (w.stallTimer !== null) this.clock.clearTimeout(w.stallTimer);
          w.stallTimer = null;
          // Stage 0 computed on a mesh token that is not the verified one: every stage goes back to before this step.
          if (this.meshMiss(step)) {
            this.rollBackPipeline(step);
            meshRollBacks += 1;
            w = fresh(step);
            continue;
          }
          const failing = this.failingStage(step, w);
          if (failing === null) {
            this.judgeMeshTokens(step, false);
            break;
          }
          // Logits of last-stage replicas that stay are carried into the new vote when the last stage is retried.
          const kept = failing.stage === last ? (this.route[last] ?? []).map((id) => w.logits.outcome(id)) : [];
          const retried = attempt - meshRollBacks - restarts < MAX_STEP_RETRIES && this.retryStage(failing.stage, step, failing.culprits);
          this.reportEquivocators();
          if (!retried) {
            const n = this.route[failing.stage]?.length ?? 0;
            throw new GenerationError(
              'ERR_NO_QUORUM',
              failing.stage === last && this.contested(step, w)
                ? `step ${step}: newcomers among the last stage's replicas drew another token than an established replica (newcomers never decide between established replicas, nor does one win alone), and no spare replicas could retry it`
                : failing.culprits.size === 0
                  ? `step ${step}: the ${n} replicas of stage ${failing.stage} did not agree (a majority of ${this.needed} of ${this.policy.redundancy} is needed), and no spare replicas could retry it`
                  : failing.stage === last
                    ? `step ${step}: the logits of ${[...failing.culprits].join(', ')} (stage ${failing.stage}) were refused, too few of its ${n} replicas agree (a majority of ${this.needed} of ${this.policy.redundancy} is needed), and no spare replicas could retry it`
                    : `step ${step}: replicas of stage ${failing.stage} sent the next stage other outputs than they reported (${[...failing.culprits].join(', ')}), and no spare replicas could retry it`,
            );
          }
          w = fresh(step);
          for (const o of kept) if (o !== undefined && this.members.get(o.replica) === last) w.logits.add(o);
        }
        this.reportEquivocators();
        this.silence.stepDecided(step, this.needed);
        const digests = this.digestsOf(step);
        this.agreedOutputs.set(
          step,
          digests.map((q) => (q.state.kind === 'agreed' ? q.state.value.out : undefined)),
        );
        this.judgeSuperseded(step);
        const state = w.logits.state;
        if (state.kind !== 'agreed') throw new GenerationError('ERR_NO_QUORUM', `step ${step}: no agreed logits`);
        const isForced = step < plan.steps;
        const given = isForced ? plan.targets(step) : [];
        // Step t's draw from (seed, t): the same as the last stage's replicas draw in the mesh loop and the reference
        // runner's t-th (forced steps draw nothing).
        const form = this.logitsFormAt(step);
        // The accepted form keeps only tokens a majority named: a draw from fewer than it reads would not be the row's.
        const needs = sampling.temperature === 0 ? 1 : sampling.topK;
        if (form.kind === 'top' && !isForced && agreedTokens(state.value) < needs)
          throw new GenerationError(
            'ERR_NO_QUORUM',
            `step ${step}: the last stage's replicas agree on only ${agreedTokens(state.value)} of the ${needs} most likely tokens the draw reads`,
          );
        // A top form's draw is from its row with the tokens left out at −Infinity: the same as from the whole row.
        // A drawn form's, the token a majority drew, else from its agreed tokens where it lands among them. Whole
        // rows', the token a majority of the replicas' own rows give (rowsMajorityDraw), else the median row's.
        const top =
          form.kind === 'top'
            ? { row: expandTopLogits(state.value, vocab), logSumExp: topParts(state.value).logSumExp }
            : form.kind === 'drawn'
              ? { row: expandDrawnForm(state.value, vocab), logSumExp: topParts(drawnParts(state.value).form).logSumExp }
              : null;
        const drawNumber = this.drawNumberAt(step);
        const drawnToken =
          form.kind === 'drawn' && !isForced ? drawFromDrawnForm(state.value, sampling, randomAt(sampling.seed, drawNumber)) : null;
        // A contested draw never gets here: failingStage retries it, or the step failed above.
        const rowsDrawn = form.kind === 'rows' ? this.rowsMajorityDraw(step, w.logits) : undefined;
        if (form.kind === 'drawn' && !isForced && drawnToken === null)
          throw new GenerationError(
            'ERR_NO_QUORUM',
            `step ${step}: the draw lands beyond the most likely tokens the last stage's replicas agree on, and no majority of them drew one token there`,
          );
        // A scored step's rows, each as a row of the vocabulary (its top tokens and the scored one) and its log-sum-exp.
        const scored = (row: number) =>
          form.kind === 'scored'
            ? expandScoredRow(state.value, row, form.targets[row] as number, vocab)
            : { row: state.value.subarray(row * vocab, (row + 1) * vocab) };
        const token = isForced
          ? (given[given.length - 1] as number)
          : (drawnToken ??
            (typeof rowsDrawn === 'number' ? rowsDrawn : sampleAt(top?.row ?? state.value, sampling, drawNumber, generated)));
        this.noteExactLogits(step, w.logits);
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
        const rows = this.logitsRows(step);
        const lastRow = top ?? scored(rows - 1);
        const record = { token, votes, ms: this.clock.now() - t0, computeMs: [...this.stepCompute], ...rowFields(lastRow) };
        if (token === eos && !isForced) return { tokens, finishReason: 'stop', end: record };
        input = step + 1 < plan.steps ? plan.input(step + 1) : [token];
        if (isForced) {
          // A scored step's rows before its last: the given tokens after its positions, in order, with the step's votes.
          for (let row = 0; row + 1 < rows; row++) {
            const t = given[row] as number;
            onToken(t, { ...record, token: t, ...rowFields(scored(row)), forced: true });
          }
          onToken(token, { ...record, forced: true });
          continue;
        }
        tokens.push(token);
        generated.push(token);
        if (onToken(token, record) === true) return { tokens, finishReason: 'stop' };
      }
      return { tokens, finishReason: 'length' };
    } finally {
      this.judgeSilence(false);
      this.carrySilence();
      if (this.wait?.w.settleTimer != null) this.clock.clearTimeout(this.wait.w.settleTimer);
      if (this.wait?.w.stallTimer != null) this.clock.clearTimeout(this.wait.w.stallTimer);
      this.wait = null;
      this.awaitedJoins.forgetAll();
      for (const id of this.members.keys()) this.closeOn(id);
    }
  }

  /**
   * A scored prompt (`scoreAhead`): the tokens of the steps after `step` whose input the prompt gives go to stage 0
   * now, up to MESH_AHEAD steps beyond it, so that the stages compute them one after the other, as a pipeline,
   * while the coordinator votes on each in turn. Newcomers of stage 0 get them with the rest (`inputs`).
   */
  private sendAhead(step: number): void {
    const plan = this.plan;
    if (!this.scoreAhead || plan === null) return;
    // Step s ≥ 1 computes on given tokens for s ≤ plan.steps (the last of them with the first sampling step).
    const last = Math.min(step + MESH_AHEAD, plan.steps, this.maxSteps - 1);
    for (let s = Math.max(step, this.sentAhead) + 1; s <= last; s++) {
      const tokens = plan.input(s);
      this.inputs[s] = tokens;
      for (const id of this.route[0] as string[]) this.transport.input(id, { sessionId: this.sessionId, step: s, tokens: [...tokens] });
      this.sentAhead = s;
    }
  }

  /**
   * Members silent up to the last decided step (SilentMembers) are no-shows and, while the session goes on
   * (`takeOut`), leave the route as one that left does: a ready spare takes the place, rebuilding its cache.
   */
  private judgeSilence(takeOut: boolean): void {
    const dead = (id: string) => this.departed.has(id) || this.awaitedJoins.has(id);
    // Its senders are short: a dead slot among them (a replica gone that no spare replaced, a newcomer not
    // joined), or one unheard for this stage's limit itself (stalled, not judged yet: its own stage's limit may
    // be longer). One hostile sender beside it could then keep a majority of inputs from an honest member: its
    // members are not judged, and their watch starts again. Read for every stage before any member is judged: a
    // sender judged silent in this pass (forgotten, and at the session's end not taken out) still starved them.
    const excused = this.current.map((_, stage) => {
      const limit = this.silence.limitMs(stage);
      const short = (id: string) => dead(id) || (this.silence.unheardFor(id) ?? Number.NEGATIVE_INFINITY) >= limit;
      return stage > 0 && (this.current[stage - 1] ?? []).some(short);
    });
    for (const [stage, ids] of this.current.entries()) {
      if (this.served(ids)) continue;
      for (const id of [...ids]) {
        if (dead(id)) continue;
        if (excused[stage] === true) {
          this.silence.watch(id, this.currentStep);
          continue;
        }
        const how = this.silence.silentFor(id, stage);
        if (how === null) continue;
        this.silence.forget(id);
        this.retry?.log?.(`session ${this.sessionId}: ${id} of stage ${stage} ${how} while its stage decided steps`);
        this.retry?.noShow?.(id, 'silent');
        // A spare takes its place; with none, the stage goes on without it (it hears of the session's end, as a
        // replica moved to another stage does).
        if (takeOut) this.retry?.takeOut?.(id);
      }
    }
  }

  /**
   * At the session's end, what each member's silence leaves for its next session (SilentMembers.carry): a member
   * silent in sessions shorter than its limit is judged once their time adds up. Not for members that left, nor
   * of stages the server computed (not judged there); one judged here starts again from nothing.
   */
  private carrySilence(): void {
    const after = this.retry?.silenceAfter;
    if (after === undefined) return;
    for (const [stage, ids] of this.current.entries()) {
      if (this.served(ids)) continue;
      for (const id of ids)
        if (!this.departed.has(id) && !this.awaitedJoins.has(id)) after(id, this.silence.carry(id, stage), this.silence.carriedFrom(id));
    }
  }

  /**
   * A replica that left (or was taken out) when no spare was ready leaves a dead slot for the rest of the session:
   * one fault fewer the stage can take, and its next stage excused from silence. A spare ready since takes it.
   */
  private refillDeadSlots(): void {
    const refill = this.retry?.refill;
    if (refill === undefined) return;
    for (const ids of this.current) if (!this.served(ids)) for (const id of ids.filter((x) => this.departed.has(x))) refill(id);
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

  /** Whether `step`'s accepted logits hold a contested draw (majorityDraw): newcomers' token against an established replica's. */
  private contested(step: number, w: StepWait): boolean {
    const st = w.logits.state;
    if (this.plan === null || step < this.plan.steps || st.kind !== 'agreed') return false;
    const kind = this.logitsFormAt(step).kind;
    return kind === 'drawn'
      ? drawnParts(st.value).drawn === CONTESTED_DRAW
      : kind === 'rows' && this.rowsMajorityDraw(step, w.logits) === 'contested';
  }

  /** The stage to retry at this step and whom to replace first, or null when every vote holds. */
  private failingStage(step: number, w: StepWait): { stage: number; culprits: Set<string> } | null {
    const last = this.route.length - 1;
    const digestStates = this.digestsOf(step).map((q) => q.state.kind);
    let failing = digestStates.indexOf('no-majority');
    if (failing < 0 && w.logits.state.kind !== 'agreed') failing = last;
    if (failing < 0) failing = digestStates.findIndex((k) => k !== 'agreed');
    // A contested draw (newcomers' against an established replica's): decided by neither, the last stage is retried
    // on spares (newcomers leave first), or the server takes it where the operator allows.
    if (failing < 0 && this.contested(step, w)) failing = last;
    // Last-stage replicas whose own logits message was refused (rows of another count than the step's, or their own
    // failure) go first: nobody else could have made them so.
    if (failing === last)
      return { stage: last, culprits: new Set((this.route[last] ?? []).filter((id) => w.logits.outcome(id)?.status === 'rejected')) };
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
}

/** A step record's `logits` and, where they come from a form, `logSumExp`. */
function rowFields(r: { readonly row: Float32Array; readonly logSumExp?: number }): { logits: Float32Array; logSumExp?: number } {
  return r.logSumExp === undefined ? { logits: r.row } : { logits: r.row, logSumExp: r.logSumExp };
}
