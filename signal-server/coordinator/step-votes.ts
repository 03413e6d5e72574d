import type { TimerHandle } from '../../shared/clock.js';
import { randomAt } from '../../shared/model/sampling.js';
import type { ReceivedReport } from '../../shared/protocol/messages.js';
import { MESH_AHEAD, sampleAt } from '../../shared/swarm/mesh-loop.js';
import { SETTLE_MS } from '../../shared/swarm/replica-core.js';
import { agreeDrawnForms, drawnFormProblem, drawnParts, majorityDraw, medianOfDrawn } from '../../shared/vote/drawn-forms.js';
import { agreeFingerprints, fingerprint } from '../../shared/vote/fingerprint.js';
import { agreeLogitRows, identical, medianOf, Quorum } from '../../shared/vote/quorum.js';
import {
  agreeScoredForms,
  agreeTopLogits,
  medianOfScored,
  medianOfTop,
  scoredFormsProblem,
  topLogitsProblem,
} from '../../shared/vote/top-logits.js';
import { SessionRoute } from './session-route.js';
import { SilentMembers } from './silent-members.js';

/** What a replica reported for a step: the fingerprints of its output and of the input it computed on. */
export interface StageReport {
  readonly out: number[];
  readonly input: number[];
}

const agreeReports = (a: StageReport, b: StageReport) => agreeFingerprints(a.out, b.out) && agreeFingerprints(a.input, b.input);

export interface StepWait {
  /** Made anew when the server takes over a stage mid-step. */
  logits: Quorum<Float32Array>;
  resolve: () => void;
  /** Set once the logits had SETTLE_MS to settle after their majority. */
  settleExpired: boolean;
  settleTimer: TimerHandle | null;
  /** Set while established replicas still to answer hold one of the step's votes back (serveStalled). */
  stallTimer: TimerHandle | null;
}

/** The same numbers, bit for bit (token ids, logits a token was sampled from): no tolerance. */
export function sameValues(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
  return true;
}

/** A receiver's fingerprint of a frame is the sender's own: the same bytes (NaN included), or within the tolerance. */
function sameFrame(a: readonly number[], b: readonly number[]): boolean {
  return sameValues(a, b) || agreeFingerprints([...a], [...b]);
}

/** How many steps' digest votes are kept for stragglers' late reports. */
export const KEPT_STEPS = 64;

/**
 * The votes of each step: every stage's digests and the last stage's logits,
 * the evidence of what was sent (for the audit), and reports that came early.
 */
export abstract class StepVotes extends SessionRoute {
  protected wait: { step: number; w: StepWait } | null = null;
  /** Digest votes per step and stage, kept after the step for late reports. */
  protected readonly digestVotes = new Map<number, Quorum<StageReport>[]>();
  /** Per step: each replica's own fingerprint of its output, and what receivers said they got from it. */
  private readonly own = new Map<number, Map<string, number[][]>>();
  protected readonly heard = new Map<number, Map<string, { receiver: string; digest: readonly number[] }[]>>();
  /** Per step, the replicas that said their inputs had no majority. */
  protected readonly noQuorum = new Map<number, Set<string>>();
  /**
   * Per step, each stage's digest votes that a retry or the server's takeover started again before they had a
   * majority (revote), judged against the step's decided output once there is one (judgeSuperseded).
   */
  private readonly superseded = new Map<number, { stage: number; vote: Quorum<StageReport> }[]>();

  /** Steps stage 0 computed before they began here (on the last stage's token, or a scored prompt's sent ahead). */
  protected readonly ahead = new Set<number>();
  /** Reports of steps after the one being decided (stages run ahead: runsAhead), per step, until that step begins. */
  protected readonly early = new Map<number, Map<string, () => void>>();
  /**
   * Members that send no results (SilentMembers): heard here (a report their stage's majority agrees with: the
   * step in flight's, or a decided step's against `agreedOutputs`), judged once a step is decided.
   */
  protected readonly silence = new SilentMembers(this.clock, this.timeouts.stepMs);
  /**
   * Per decided step, the fingerprint of each stage's agreed output, for the whole session (33 numbers a stage
   * and step): what a late or replayed report must agree with to be heard.
   */
  protected readonly agreedOutputs = new Map<number, (readonly number[] | undefined)[]>();
  /** When each step began here: no compute time claimed for a step is longer than the time since (MESH_AHEAD before). */
  protected readonly stepStarted = new Map<number, number>();
  /** The completion so far (the session's, as generation.ts keeps it), for the penalties of a draw from a replica's row. */
  protected generated: readonly number[] = [];
  /** Each replica's draw from its whole row (rowsMajorityDraw), made once a row. */
  private readonly rowDraws = new WeakMap<Float32Array, number>();

  private digestQuorum(ids: readonly string[]): Quorum<StageReport> {
    return new Quorum<StageReport>([...ids], agreeReports, {
      needed: this.served(ids) ? 1 : this.needed,
      established: (id) => this.policy.established(id),
    });
  }

  /** The number of the seeded sampler's draw that step `step` makes (a scored prompt's steps draw nothing). */
  protected drawNumberAt(step: number): number {
    return this.drawsBefore + step - (this.plan?.steps ?? 0);
  }

  /** The vote on the last stage's logits of `step`, by the rule of the form they come in (logitsFormAt). */
  protected logitsQuorum(step: number): Quorum<Float32Array> {
    const last = this.current.length - 1;
    const form = this.logitsFormAt(step).kind;
    const [agree, combine] =
      form === 'scored'
        ? [agreeScoredForms, medianOfScored]
        : form === 'top'
          ? [agreeTopLogits, medianOfTop]
          : form === 'drawn' && this.sampling !== null
            ? [agreeDrawnForms, medianOfDrawn(this.sampling, randomAt(this.sampling.seed, this.drawNumberAt(step)))]
            : [agreeLogitRows(this.manifest.model.vocabSize), medianOf];
    return new Quorum(this.current[last] as string[], agree, {
      needed: this.neededAt(last),
      combine,
      established: (id) => this.policy.established(id),
    });
  }

  /** Puts `replacement` in `left`'s place in the route and in the open votes; returns the stage, or undefined. */
  protected swap(left: string, replacement: string, joinedAlready = true): number | undefined {
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

  /** Votes on `step` from `stage` on start again, and so does the evidence of what was sent; returns the stage's old vote. */
  protected revote(stage: number, step: number, leaving: readonly string[]): Quorum<StageReport> | undefined {
    for (const id of new Set(this.current.slice(stage).flat().concat(leaving))) this.heard.get(step)?.delete(id);
    const qs = this.digestsOf(step);
    const before = qs[stage];
    for (let k = stage; k < qs.length; k++) {
      const old = qs[k];
      if (old !== undefined && old.state.kind !== 'agreed') {
        const list = this.superseded.get(step) ?? [];
        list.push({ stage: k, vote: old });
        this.superseded.set(step, list);
      }
      qs[k] = this.digestQuorum(this.current[k] as string[]);
    }
    return before;
  }

  /**
   * Once `step` is decided: the reports of its votes that started again before a majority (an established liar
   * against two newcomers has none, and newcomers never outvote it) by replicas no longer in their stage (they left
   * for spares, or the server took the stage) are judged against what the stage's new vote agreed on (a majority by
   * the same rules, or the server's own replica), each replica once: on the decided input, another output is a
   * disagreement and the same output an agreement. Before, such a liar was never classified: the server took the
   * stage, and it lied again in the next session with its record whole. Replicas still in the stage are judged by
   * its new vote, whenever their report comes (a retry carries the answers of those that stay into it); only one
   * that computed the step again (a roll-back) and gave another output on the same input counts a disagreement here.
   *
   * The input a report names is its own claim. Where a majority (of r) of the old vote's reports name the decided
   * input, its senders' frames were that input for every receiver (each takes the majority of its senders' frames),
   * so a report naming another input is out of line, and a disagreement: before, a liar that named another input
   * with its lie was not judged. Where they do not (the old vote computed on a token of the mesh loop since rolled
   * back, or on frames of a stage since retried), a report on another input is not judged. Stage 0's input is the
   * token ids this server sent, fingerprinted here and compared exactly (the tolerance of hidden states would take
   * 5000 for 5004, and a member's claim could set it).
   */
  protected judgeSuperseded(step: number): void {
    const replaced = this.superseded.get(step);
    if (replaced === undefined) return;
    this.superseded.delete(step);
    const qs = this.digestsOf(step);
    const judged = new Set<string>();
    const twice = new Set<string>();
    for (const { stage, vote } of replaced) {
      const now = qs[stage];
      const decided = now?.state;
      if (now === undefined || decided?.kind !== 'agreed') continue;
      for (const id of [...decided.agreeing, ...decided.disagreeing]) judged.add(id);
      // Against every member of the winning group, not its first answer alone: a first reporter at the tolerance's
      // edge would otherwise push an honest leaver on another backend just past it.
      const winners = decided.agreeing.flatMap((id) => {
        const o = now.outcome(id);
        return o?.status === 'fulfilled' ? [o.value] : [];
      });
      // Stage 0's input is what this server sent it, fingerprinted here: no member's claim sets it.
      const sentTokens = stage === 0 ? this.inputs[step] : undefined;
      const sent = sentTokens === undefined ? undefined : fingerprint(sentTokens);
      const onDecided = (input: readonly number[]) =>
        sent !== undefined ? sameValues(input, sent) : winners.some((w) => agreeFingerprints([...input], w.input));
      const reports = vote.outcomesSoFar.flatMap((o) => (o.status === 'fulfilled' ? [{ id: o.replica, report: o.value, ...o.value }] : []));
      const inLine = reports.filter((r) => onDecided(r.input)).length >= vote.threshold;
      for (const r of reports) {
        if (this.served([r.id])) continue;
        const sameInput = onDecided(r.input);
        const agreed = sameInput && winners.some((w) => agreeFingerprints(r.out, w.out));
        if (this.members.get(r.id) === stage) {
          // One that stays computed the step again where stages run ahead (a roll-back): two outputs on one input is
          // a lie once (before, one that lied at its first compute and answered honestly after the roll-back was
          // never counted: a red-team find). Its answer carried into the new vote (a retry where stages do not run
          // ahead), or one the new vote counted against it already, is judged there. Compared with its own new
          // report where it has one (the same input, bit for bit), else with the winners where its input is theirs
          // bit for bit: inputs within the tolerance (spares on another backend) could grow apart in the output.
          const again = now.outcome(r.id);
          if (again?.status === 'fulfilled' && again.value === r.report) continue;
          if (decided.disagreeing.includes(r.id) || twice.has(r.id)) continue;
          const lied =
            again?.status === 'fulfilled'
              ? sameValues(r.input, again.value.input) && !agreeFingerprints(r.out, again.value.out)
              : (sent !== undefined ? sameInput : winners.some((w) => sameValues(r.input, w.input))) && !agreed;
          if (lied) {
            twice.add(r.id);
            this.retry?.log?.(
              `session ${this.sessionId} step ${step}: ${r.id} of stage ${stage} reported another output on the same input before its vote started again (a disagreement)`,
            );
            this.audit.credit(r.id, false);
          }
          continue;
        }
        if (judged.has(r.id) || (!sameInput && !inLine)) continue;
        judged.add(r.id);
        if (!agreed)
          this.retry?.log?.(
            `session ${this.sessionId} step ${step}: ${r.id} of stage ${stage} reported ${sameInput ? 'another output than the one decided' : 'another input than a majority of its stage'} in a vote started again before its majority (a disagreement)`,
          );
        this.audit.credit(r.id, agreed);
      }
    }
  }

  protected digestsOf(step: number): Quorum<StageReport>[] {
    let qs = this.digestVotes.get(step);
    if (qs === undefined) {
      qs = this.route.map((ids) => this.digestQuorum(ids));
      this.digestVotes.set(step, qs);
      for (const old of this.digestVotes.keys()) if (old < step - KEPT_STEPS) this.digestVotes.delete(old);
      for (const m of [this.own, this.heard, this.noQuorum, this.superseded])
        for (const old of m.keys()) if (old < step - KEPT_STEPS) m.delete(old);
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
      // Stage 0 computed this step before it began here: the mesh loop at work, or a scored prompt sent ahead (only
      // within the reach of a report held: a member naming steps far ahead grows nothing).
      if (stage === 0 && this.runsAhead && step <= this.currentStep + MESH_AHEAD + 1) this.ahead.add(step);
      this.hold(step, `digest ${volunteer}`, () => this.onDigest(volunteer, step, digest, computeMs, input, received, resets));
      return;
    }
    // Computed before a roll-back that this replica has since been told of: stale evidence.
    if (resets < (this.resetsSent.get(volunteer) ?? 0)) return;
    // A report of a past step is heard where it agrees with the agreed one; of the step in flight, once it is in
    // its stage's agreeing group (below): noise is audited, but the audit bites only after 3 disagreements and a
    // score under 0.4, and a member with a record could keep itself heard with one noise report per limit.
    const agreed = this.agreedOutputs.get(step)?.[stage];
    if (step < this.currentStep && agreed !== undefined && agreeFingerprints(agreed, digest))
      this.silence.heard(volunteer, step, this.currentStep);
    if (this.wait?.step === step) this.stepCompute[stage] = Math.min(this.stepCompute[stage] ?? Number.POSITIVE_INFINITY, computeMs);
    const q = this.digestsOf(step)[stage];
    if (q === undefined) return;
    if (!q.add({ status: 'fulfilled', replica: volunteer, value: { out: digest, input } })) return;
    if (this.wait?.step === step) {
      const since = this.stepStarted.get(Math.max(0, step - MESH_AHEAD - 1));
      this.silence.computed(stage, since === undefined ? computeMs : Math.min(computeMs, this.clock.now() - since));
    }
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
    const st = q.state;
    if (step >= this.currentStep && st.kind === 'agreed') for (const id of st.agreeing) this.silence.heard(id, step, this.currentStep);
    this.checkDecided();
  }

  /**
   * Replicas of `stage` whose frames, as a majority (of r) of the next stage's
   * receivers report them, differ from what they reported here: equivocators.
   */
  protected equivocatorsOf(stage: number, step: number): Set<string> {
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
  protected brokenLink(step: number): number {
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
  protected checkDecided(): void {
    if (this.wait === null) return;
    this.serveStalled();
    const w = this.wait.w;
    const logits = w.logits.state;
    // Agreed logits that may still move (a majority, but not of identical values) get SETTLE_MS for the others to come.
    if (logits.kind === 'agreed' && !logits.settled && !w.settleExpired && w.settleTimer === null) {
      w.settleTimer = this.clock.setTimeout(() => {
        w.settleExpired = true;
        this.checkDecided();
      }, SETTLE_MS);
    }
    if (this.decidedNow()) w.resolve();
  }

  /**
   * A vote of the step in wait wins only with a strict majority of its established replicas, those still to answer
   * counted (quorum.ts: before, a colluder with a record and its newcomer outvoted an honest established replica),
   * so one that stays silent holds it back. Once the step has run for the stage's silence limit (SilentMembers.limitMs,
   * 5 s at least; half the step's timeout at most) with a group of the majority's size waiting only on established
   * replicas, the server computes the stage (the fallback, where FALLBACK allows; else the step's timeout comes).
   * Never the answers in: a first version counted the silent ones as timed out, and colluders that answered at once
   * won against an honest established replica slower than the limit, or against spares a retry had just brought
   * (a review's finds), and the replicas that answered went unheard and were struck.
   */
  private serveStalled(): void {
    const wait = this.wait;
    if (wait === null) return;
    const now = this.clock.now();
    const began = this.stepStarted.get(wait.step) ?? now;
    const votes: [number, Quorum<Float32Array> | Quorum<StageReport>][] = [
      ...(this.digestVotes.get(wait.step) ?? []).map((q, stage): [number, Quorum<StageReport>] => [stage, q]),
      [this.current.length - 1, wait.w.logits],
    ];
    let next = Number.POSITIVE_INFINITY;
    for (const [stage, q] of votes) {
      if (!q.waitsOnlyOn((id) => this.policy.established(id))) continue;
      const limit = Math.min(this.silence.limitMs(stage), this.timeouts.stepMs / 2);
      if (now < began + limit) next = Math.min(next, began + limit);
      else if (
        this.serve(stage, `step ${wait.step}: stage ${stage}'s established replicas did not all answer within ${Math.round(limit)} ms`)
      )
        return;
    }
    if (next === Number.POSITIVE_INFINITY || wait.w.stallTimer !== null) return;
    wait.w.stallTimer = this.clock.setTimeout(() => {
      wait.w.stallTimer = null;
      if (this.wait?.w === wait.w) this.checkDecided();
    }, next - now);
  }

  /** The server takes `stage` over (session-repair.ts); false where it may not. */
  abstract serve(stage: number, why: string, short?: boolean): boolean;

  /** Whether the step in wait is decided: a stage split, or the logits done (settled) and every stage's fingerprints voted. */
  protected decidedNow(): boolean {
    if (this.wait === null) return false;
    const w = this.wait.w;
    const digests = this.digestVotes.get(this.wait.step) ?? [];
    if (digests.some((q) => q.state.kind === 'no-majority')) return true;
    const logits = w.logits.state;
    const logitsDone =
      logits.kind === 'no-majority' ||
      (logits.kind === 'agreed' && (logits.settled || (w.settleExpired && this.mayTakeUnsettled(this.wait.step, w.logits))));
    return logitsDone && digests.every((q) => q.state.kind !== 'pending');
  }

  /**
   * Whether agreed but unsettled logits may be taken once SETTLE_MS ran out: not where no token has a majority of
   * the replicas' draws (a drawn form's, or each one's from its whole row: rowsMajorityDraw). A draw again from the
   * median is not the replicas' (drawn-forms.ts), and with some still to answer, liars that answered first would
   * have it made from their values: the rest are waited for (to the step timeout: an error, never their draw).
   */
  private mayTakeUnsettled(step: number, vote: Quorum<Float32Array>): boolean {
    const state = vote.state;
    if (state.kind !== 'agreed') return false;
    if (this.logitsFormAt(step).kind === 'drawn') return drawnParts(state.value).drawn >= 0;
    const won = this.rowsMajorityDraw(step, vote);
    return won !== null && won !== 'contested';
  }

  /** The token a replica's whole row `row` gave where rowsMajorityDraw drew from it, else undefined. */
  protected rowDrawOf(row: Float32Array): number | undefined {
    return this.rowDraws.get(row);
  }

  /**
   * Where the last stage sends whole rows (a `logit_bias` or penalties) and `step` draws a token: the token that a
   * majority of the agreeing replicas' own rows give with the session's sampler, `'contested'` where only newcomers
   * drew it against an established replica's draw (majorityDraw: the stage is retried), or null where no token has
   * that many; undefined where the step draws nothing from whole rows. The median row's draw is not theirs: each of
   * its values is a median on its own, so a liar within the tolerance of two honest replicas that round differently
   * picks, token by token, whose value is taken, and moves the draw (as a drawn form's weights could be).
   */
  protected rowsMajorityDraw(step: number, vote: Quorum<Float32Array>): number | 'contested' | null | undefined {
    const { plan, sampling } = this;
    if (plan === null || sampling === null || step < plan.steps || this.logitsFormAt(step).kind !== 'rows') return undefined;
    const state = vote.state;
    if (state.kind !== 'agreed') return null;
    const vocab = this.manifest.model.vocabSize;
    const number = this.drawNumberAt(step);
    const draws: number[] = [];
    const established: boolean[] = [];
    const rows: Float32Array[] = [];
    for (const id of state.agreeing) {
      const o = vote.outcome(id);
      if (o?.status !== 'fulfilled') continue;
      // A draw is 2–5 ms at a 49 152-token vocabulary; replicas on one backend send bit-identical rows, drawn once.
      let token = this.rowDraws.get(o.value);
      if (token === undefined) {
        const twin = rows.findIndex((r) => identical(r, o.value));
        token = twin >= 0 ? (draws[twin] as number) : sampleAt(o.value.subarray(o.value.length - vocab), sampling, number, this.generated);
        this.rowDraws.set(o.value, token);
      }
      rows.push(o.value);
      draws.push(token);
      established.push(this.policy.established(id));
    }
    const won = majorityDraw(draws, this.neededAt(this.current.length - 1), established, vote.establishedInVote());
    return won === null || won === 'contested' ? won : won.token;
  }

  onLogits(volunteer: string, step: number, logits: Float32Array, resets = 0): void {
    if (this.members.get(volunteer) !== this.route.length - 1 || this.wait === null) return;
    if (step > this.wait.step) {
      this.hold(step, `logits ${volunteer}`, () => this.onLogits(volunteer, step, logits, resets));
      return;
    }
    // Computed on a path since rolled back (a speculative step of the mesh loop): stale.
    if (this.wait.step !== step || resets < (this.resetsSent.get(volunteer) ?? 0)) return;
    // Not heard: logits are audited nowhere (noise of the right size would do); the last stage's digest is.
    const reason = this.logitsProblem(step, logits);
    if (reason !== null) {
      this.retry?.log?.(`session ${this.sessionId}: ${volunteer} sent ${reason}`);
      this.wait.w.logits.add({ status: 'rejected', replica: volunteer, reason });
    } else this.wait.w.logits.add({ status: 'fulfilled', replica: volunteer, value: logits });
    this.checkDecided();
  }

  /** Why `logits` are not what `step` asks of the last stage (logitsFormAt), or null where they are. */
  private logitsProblem(step: number, logits: Float32Array): string | null {
    const vocab = this.manifest.model.vocabSize;
    const form = this.logitsFormAt(step);
    if (form.kind === 'rows')
      return logits.length === form.rows * vocab ? null : `${logits.length / vocab} rows of logits where step ${step} has ${form.rows}`;
    if (form.kind === 'scored') {
      const problem = scoredFormsProblem(logits, form.targets, vocab);
      return problem && `logits that are no scored forms of its rows (${problem})`;
    }
    const problem =
      form.kind === 'top'
        ? topLogitsProblem(logits, form.k, vocab)
        : drawnFormProblem(logits, form.k, vocab, this.sampling?.temperature ?? 1);
    const what = `${form.kind} form of ${form.k} tokens`;
    return problem && `logits that are no ${what} (${problem})`;
  }

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

  /**
   * Keeps a report of a step still to come, within MESH_AHEAD of the step in
   * flight (stages run ahead: the mesh loop, a scored prompt's tokens): one
   * per replica and kind (`key`), the latest (a replica's recomputed step
   * after a retry supersedes its earlier report), so a replica flooding
   * reports of steps to come holds only its own place and cannot crowd out
   * the others' (their reports are not sent again).
   */
  protected hold(step: number, key: string, report: () => void): void {
    if (!this.runsAhead || this.currentStep < 0 || step > this.currentStep + MESH_AHEAD + 1) return;
    let held = this.early.get(step);
    if (held === undefined) {
      held = new Map();
      this.early.set(step, held);
    }
    held.set(key, report);
  }

  /** Counts the held reports of `step`, which begins now. */
  protected release(step: number): void {
    const held = [...(this.early.get(step)?.values() ?? [])];
    for (const k of [...this.early.keys()]) if (k <= step) this.early.delete(k);
    for (const report of held) report();
  }
}
