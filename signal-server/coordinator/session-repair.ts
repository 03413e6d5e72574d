import { majority } from '../../shared/vote/quorum.js';
import { NewcomerJoins } from './newcomer-joins.js';
import { StepVotes } from './step-votes.js';

/**
 * Repairs of a running session: a replica replaced, a stage retried on spares
 * or taken over by the server, every stage rolled back; and what is told to whom.
 */
export abstract class SessionRepair extends StepVotes {
  /** The session's era: bumped by each roll-back of the whole pipeline; frames carry it (mod 256). */
  private era = 0;
  /**
   * Newcomers of the running session not joined yet, held to join it as the route's first replicas are
   * (SessionJoin). Before, only the first replicas were: a spare could take repair after repair and never join one.
   */
  protected readonly awaitedJoins = new NewcomerJoins(
    this.clock,
    this.timeouts,
    (id, why) => {
      this.retry?.log?.(
        `session ${this.sessionId}: ${id}, a newcomer at step ${this.currentStep}, ${why === 'full' ? 'refused it as full' : 'did not join it'}`,
      );
      this.retry?.noShow?.(id, why);
    },
    (id) => this.retry?.showed?.(id),
  );

  /** Also judges a newcomer that leaves the route unjoined (NewcomerJoins.takenOut). */
  protected override swap(left: string, replacement: string, joinedAlready = true): number | undefined {
    const stage = super.swap(left, replacement, joinedAlready);
    if (stage !== undefined) this.awaitedJoins.takenOut(left);
    return stage;
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
    // One that is still there (moved to another stage) hears it is out, as any replica replaced is: its server
    // counts the sessions sent it and not closed (OpenSessions, RemoteSessions), and it drops them with its stage.
    this.closeOn(left);
    this.announce(stage, [replacement], resetFrom);
    return true;
  }

  /**
   * Tells everyone concerned of the newcomers in `stage`, in one message each:
   * the newcomers open the session and replay it; the previous stage resends
   * its outputs to them (for stage 0 the coordinator resends the token ids);
   * the next stage learns its new inputs (and, after a retry, forgets its votes
   * from `resetFrom` on). One update per neighbour: several in a row could
   * reach a replica out of step with the frames they announce.
   */
  protected announce(stage: number, newcomers: readonly string[], resetFrom?: number): void {
    const ids = this.current[stage] as string[];
    const step = Math.max(0, this.currentStep);
    const prev = this.current[stage - 1] ?? [];
    const next = this.current[stage + 1] ?? [];
    // Before the session starts, SessionJoin waits for every replica it opens; from then on, this does.
    if (this.currentStep >= 0) for (const id of newcomers) this.awaitedJoins.expect(id);
    for (const id of newcomers)
      this.transport.open(id, {
        sessionId: this.sessionId,
        stage,
        replica: ids.indexOf(id),
        prev,
        next,
        replayTo: step,
        steps: this.maxSteps,
        ...this.loopOf(stage),
        ...this.fanoutOf(stage),
        ...this.rowsOf(stage),
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
  protected retryStage(stage: number, step: number, culprits: ReadonlySet<string> = new Set()): boolean {
    if (this.retry === null) return false;
    const ids = this.current[stage] as string[];
    // The server's own replica failed: nobody can do better.
    if (this.served(ids)) return false;
    const count = Math.max(majority(ids.length), culprits.size);
    // Proven equivocators first, then newcomers before established replicas, then the worst record.
    const isEst = (id: string) => this.policy.established(id);
    const est = (id: string) => Number(isEst(id));
    const worstFirst = [...ids].sort((a, b) => {
      const ca = this.audit.get(a);
      const cb = this.audit.get(b);
      return Number(culprits.has(b)) - Number(culprits.has(a)) || est(a) - est(b) || cb.disagreed - ca.disagreed || ca.agreed - cb.agreed;
    });
    const leaving = worstFirst.slice(0, count);
    const staying = ids.filter((id) => !leaving.includes(id));
    // An established replica that leaves while another stays: the new vote would forget its answer, and the one that
    // stays (its answer carried) would be the only established replica beside newcomer spares, which it and one
    // colluding spare outvote (a review's find, against the rule that newcomers never decide between established
    // replicas): the server computes the stage instead, or the step fails by name.
    if (leaving.some(isEst) && staying.some(isEst))
      return this.serve(stage, `step ${step}: stage ${stage} had no majority (${this.votesOn(stage, step)}) between established replicas`);
    const spares = this.retry.spares(stage, this.notCandidates(), staying);
    if (spares.length < count)
      return this.serve(stage, `step ${step}: stage ${stage} had no majority (${this.votesOn(stage, step)}) and too few spares are ready`);
    const newcomers: string[] = [];
    for (const [i, old] of leaving.entries()) {
      const neu = spares[i] as string;
      this.retry.link(stage, neu);
      if (this.swap(old, neu) === undefined) continue;
      newcomers.push(neu);
      this.closeOn(old);
    }
    this.retry.log?.(
      `session ${this.sessionId} step ${step}: stage ${stage} had no majority (${this.votesOn(stage, step)}); retrying it on ${newcomers.join(', ')} in place of ${leaving.join(', ')}`,
    );
    if (this.runsAhead) {
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

  /** How a stage's votes on `step` stand, replica by replica (the last stage's logits too), for the log. */
  private votesOn(stage: number, step: number): string {
    const digests = `fingerprints ${this.digestsOf(step)[stage]?.describe() ?? 'none'}`;
    const logits = stage === this.current.length - 1 && this.wait?.step === step ? `; logits ${this.wait.w.logits.describe()}` : '';
    return digests + logits;
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

  /**
   * The server takes `stage` over (the fallback, where a stage is short of
   * volunteers): its replica replaces every volunteer of the stage, rebuilds
   * its KV cache from the agreed inputs and computes the step in flight; the
   * later stages roll back to before that step. False where the server may
   * not (FALLBACK=off, or the fallback has no room). `short`: taken because its
   * volunteers left with no spare, not because they failed the vote
   * (keptByServer).
   */
  serve(stage: number, why: string, short = false): boolean {
    const ids = this.current[stage];
    if (ids === undefined || this.served(ids)) return false;
    const server = this.retry?.serve?.(stage) ?? null;
    if (server === null || this.members.has(server)) return false;
    if (!short) this.keptByServer.add(stage);
    this.retry?.link(stage, server);
    const started = this.currentStep >= 0;
    const step = Math.max(0, this.currentStep);
    const leaving = [...ids];
    for (const id of leaving) {
      this.members.delete(id);
      this.joined.delete(id);
      this.awaitedJoins.takenOut(id);
      this.closeOn(id);
      this.replacements.push({ stage, left: id, joined: server, atStep: step });
    }
    this.current[stage] = [server];
    this.members.set(server, stage);
    this.joined.add(server);
    if (started && this.runsAhead) {
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
      wait.w.logits = this.logitsQuorum(wait.step);
      this.checkDecided();
    }
    return true;
  }

  /**
   * Where stages run ahead of the coordinator (the mesh loop, a scored
   * prompt's tokens sent ahead), a roll-back is of the whole pipeline: every
   * replica but the `newcomers` (which open in the new era) forgets the steps
   * from `step` on, frames still in flight from the undone path are told by
   * their era and dropped, and stage 0 is fed `step`'s verified token again
   * (the steps after it again on the tokens it was given for them, where it
   * has them); every stage's vote on `step` starts again.
   */
  protected rollBack(step: number, newcomers: ReadonlySet<string>, leaving: readonly string[]): void {
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

  onFailure(volunteer: string, step: number, code: string, message: string, resets = 0): void {
    const stage = this.members.get(volunteer);
    if (stage === undefined) return;
    // A newcomer's refusal of the session counts now, whatever roll-backs came meanwhile (below).
    if (!this.awaitedJoins.has(volunteer)) {
      // Of a step computed before a roll-back this replica has since been told of: of the path undone, as its reports.
      if (resets < (this.resetsSent.get(volunteer) ?? 0)) return;
      // A failure of a step still to come (stages run ahead) counts when its step begins, as its reports would.
      if (this.runsAhead && this.currentStep >= 0 && step > this.currentStep) {
        this.hold(step, `failed ${volunteer}`, () => this.onFailure(volunteer, step, code, message, resets));
        return;
      }
    }
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
    // A newcomer that refuses the session it was brought into (full, or it could not link): a no-show now, as a
    // replica that refuses it before it starts is (below; "no majority of inputs", above, is not a refusal); the
    // failure still counts against the step it names.
    if (this.awaitedJoins.has(volunteer)) {
      // It could not link to a majority of a neighbouring stage with a dead slot (a replica gone that no spare
      // replaced, or a newcomer not joined itself): one hostile replica there could then keep an honest newcomer
      // out. Not judged (the replicas of a session's start have no such dead neighbours).
      const neighbours = [...(this.current[stage - 1] ?? []), ...(this.current[stage + 1] ?? [])];
      const dead = (id: string) => this.departed.has(id) || this.awaitedJoins.has(id);
      if (code === 'ERR_NOT_LINKED' && neighbours.some(dead)) this.awaitedJoins.forget(volunteer);
      else this.awaitedJoins.miss(volunteer, code === 'ERR_REPLICA_FULL' ? 'full' : 'absent');
    }
    if (this.currentStep < 0 && !this.joined.has(volunteer)) {
      // It refused the session (full, or could not link): a no-show now rather than after the join timeout.
      this.refused.add(volunteer);
      if (code === 'ERR_REPLICA_FULL') this.refusedFull.add(volunteer);
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

  /** Tells the coordinator of the equivocators found so far (after they left the route). */
  protected reportEquivocators(): void {
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
}
