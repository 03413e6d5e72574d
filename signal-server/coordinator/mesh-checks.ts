import { MESH_AHEAD } from '../../shared/swarm/mesh-loop.js';
import { drawnParts } from '../../shared/vote/drawn-forms.js';
import { fingerprint } from '../../shared/vote/fingerprint.js';
import type { Quorum } from '../../shared/vote/quorum.js';
import { SessionRepair } from './session-repair.js';
import { KEPT_STEPS, sameValues } from './step-votes.js';

/**
 * The mesh loop's checks: stage 0 computes on tokens the last stage sent it,
 * before they are verified here; a step computed on another token rolls back,
 * and the senders of such tokens are judged.
 */
export abstract class MeshLoopChecks extends SessionRepair {
  /** Steps rolled back once because stage 0 computed on a mesh token other than the verified one. */
  private readonly meshRolled = new Set<number>();
  /** Steps whose mesh tokens were judged. */
  private readonly meshJudged = new Set<number>();
  /** Per step, the last-stage replicas whose logits were the very value the token was sampled from. */
  private readonly exactLogits = new Map<number, Set<string>>();
  /**
   * Per step, the token each last-stage replica's own logits give with the session's sampler, where they say it: a
   * drawn form names its draw, and a whole row was drawn from (rowsMajorityDraw). Its mesh token must be that one.
   */
  private readonly ownDraws = new Map<number, Map<string, number>>();

  /** Steps rolled back because stage 0 computed them on another token than the verified one. */
  get meshRollBacks(): number {
    return this.meshRolled.size;
  }

  /** How many steps stage 0 computed before they began here (on a mesh token, or a scored prompt's token sent ahead). */
  get stepsAhead(): number {
    return this.ahead.size;
  }

  /**
   * Whether stage 0 computed `step` on another token than the verified one (a
   * mesh token from a lying or diverging last stage): some replica of stage 0
   * reported another input, and its stage's vote does not hold on the verified
   * one. Once per step: a stage-0 liar cannot make every step roll back twice.
   */
  protected meshMiss(step: number): boolean {
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
  protected rollBackPipeline(step: number): void {
    this.meshRolled.add(step);
    this.judgeMeshTokens(step, true);
    this.rollBack(step, new Set(), []);
    this.retry?.log?.(
      `session ${this.sessionId} step ${step}: stage 0 computed on another token than the verified one; every stage rolls back to step ${step}`,
    );
    this.reportEquivocators();
  }

  /** Notes which last-stage replicas sent the very logits step `step`'s token was sampled from. */
  protected noteExactLogits(step: number, q: Quorum<Float32Array>): void {
    const st = q.state;
    if (!this.meshLoop || st.kind !== 'agreed') return;
    const exact = new Set<string>();
    const own = new Map<string, number>();
    const kind = this.logitsFormAt(step).kind;
    for (const id of this.current[this.current.length - 1] ?? []) {
      const o = q.outcome(id);
      if (o?.status !== 'fulfilled') continue;
      if (sameValues(o.value, st.value)) exact.add(id);
      const drew = kind === 'drawn' ? drawnParts(o.value).drawn : kind === 'rows' ? this.rowDrawOf(o.value) : undefined;
      if (drew !== undefined) own.set(id, drew);
    }
    this.exactLogits.set(step, exact);
    this.exactLogits.delete(step - MESH_AHEAD - 2);
    this.ownDraws.set(step, own);
    this.ownDraws.delete(step - MESH_AHEAD - 2);
  }

  /**
   * The mesh tokens that fed `step`, as stage 0's replicas report them (a
   * majority of them needed, so a minority cannot frame a sender). Where stage
   * 0 computed on another token than the verified one (`broken`: the link from
   * the last stage to stage 0 did not hold), a last-stage replica that sent it
   * disagreed with the vote (counted in its record), and where its own logits
   * were the very value the token was sampled from, or give another token than
   * it sent (a drawn form's draw, a whole row's: the served token is the
   * majority's draw, not the accepted value's), the sampler is deterministic
   * and the lie is proven: it is evicted as an equivocator. A replica that sent
   * what its own logits give is judged for nothing: an honest replica on the
   * other side of a boundary from the majority's draw. Where the link held,
   * the receivers' word alone convicts nobody: suspected.
   */
  protected judgeMeshTokens(step: number, broken: boolean): void {
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
      const own = this.ownDraws.get(step - 1)?.get(sender);
      // What its own logits give, as a majority of the receivers say (a minority of them cannot frame it).
      if (own !== undefined && wrong.filter((r) => !sameValues(r.digest, fingerprint([own]))).length < this.neededAt(0)) continue;
      if (!broken) {
        if (!this.suspects.some((x) => x.volunteer === sender)) this.suspects.push({ volunteer: sender, stage: last, step });
      } else if ((own !== undefined || this.exactLogits.get(step - 1)?.has(sender) === true) && !this.policy.trusted?.(sender)) {
        if (!this.equivocators.some((e) => e.volunteer === sender) && !this.reported.some((e) => e.volunteer === sender))
          this.equivocators.push({ volunteer: sender, stage: last, step });
      } else this.audit.credit(sender, false);
      this.retry?.log?.(
        `session ${this.sessionId} step ${step}: receivers say ${sender} of stage ${last} sent stage 0 another token than the verified one${broken ? '' : ' (suspected; stage 0 computed on the verified one)'}`,
      );
    }
  }
}
