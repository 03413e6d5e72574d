import type { WireErrorCode } from '../../shared/protocol/errors.js';
import { describeValue } from '../../shared/protocol/json-shape.js';
import type { ChallengeProof, StageReady } from '../../shared/protocol/messages.js';
import { agreeFingerprints } from '../../shared/vote/fingerprint.js';
import { KeyedBuckets, type KeyedBucketsOptions } from '../keyed-buckets.js';
import { ChallengeMoot, type ChallengeOracle } from './challenge.js';
import { type Member, refuse, type SwarmState } from './swarm-state.js';

export const DEFAULT_CHALLENGE_TIMEOUT_MS = 60_000;
export const DEFAULT_SPOT_CHECK_RATE = 0.1;
/**
 * Challenges a client (an address; on this machine's own addresses a client
 * key) may make the server compute on its `ready`: each is a forward pass of
 * the stages up to the one tested, on the server's one runner, queued before
 * honest joiners' own. 32 at once (an address holds at most 16 volunteers: a
 * join and a move each), then 16 a minute; a `ready` over it is answered when
 * the client's bucket has a token again. Spot checks, and the challenges of
 * a volunteer that passed one here already (after a move or a re-partition),
 * are the server's own doing and are not counted.
 */
export const DEFAULT_CHALLENGE_BUDGET: KeyedBucketsOptions = { burst: 32, perMinute: 16 };
/** How long after a proof the coordinator looks whether the configured partition serves again. */
const PROOF_RECHECK_MS = 1_000;

/** What readiness needs of the coordinator's other parts. */
export interface ReadinessHooks {
  /** Evicts a volunteer (a wrong or missing answer). */
  expel(id: string, code: WireErrorCode, reason: string, ban: boolean): void;
  /** Looks again later whether the configured partition serves (a proof may make it). */
  recheckLater(ms: number): void;
}

/**
 * Earned readiness: a volunteer that says it loaded its stage is sent a
 * challenge step and counts as ready once its answer matches the reference;
 * ready ones are spot-checked again after sessions.
 */
export class Readiness {
  private nextChallengeId = 1;
  private readonly budget: KeyedBuckets;

  constructor(
    private readonly s: SwarmState,
    private readonly h: ReadinessHooks,
  ) {
    this.budget = new KeyedBuckets(s.options.challengeBudget ?? DEFAULT_CHALLENGE_BUDGET);
  }

  /**
   * A volunteer says it loaded its stage. Its word is not enough: it is sent a
   * challenge step and counts as ready once its answer matches the reference.
   */
  ready(id: string, m: StageReady): void {
    const v = this.s.registry.get(id);
    const member = this.s.members.get(id);
    if (v === undefined || member === undefined) return;
    // A late ready for the partition before a re-partition: the volunteer is loading the new one.
    if (m.partition !== undefined && this.s.model.partition !== undefined && m.partition !== this.s.model.partition) {
      // The partition is the volunteer's own text: described, never echoed, and the line is limited per sender (server.ts's
      // senderOf; before, a volunteer sending readies of any partition wrote a line each, 278 KiB/s from one address).
      this.s.log(`volunteer ${id}: a ready for partition ${describeValue(m.partition)}, not ${this.s.model.partition}: ignored`);
      return;
    }
    if (m.modelId !== this.s.model.modelId || v.stage !== m.stage) {
      refuse(this.s, id, 'ERR_NOT_ASSIGNED', `ready: ${m.modelId} stage ${m.stage} is not the stage assigned`);
      return;
    }
    if (v.ready || member.challenge !== null) return;
    // Its word on how many sessions it holds is about itself alone (see Volunteer.sessionLimit), and taken only with
    // the ready that loads the stage: a ready volunteer cannot change it between the sessions it is sent.
    if (m.sessions === undefined) delete v.sessionLimit;
    else v.sessionLimit = m.sessions;
    this.challengeWithinBudget(member, m.stage);
  }

  /**
   * A challenge the volunteer asked for (its `ready`), taken from its client's
   * budget; over it, deferred until the budget has a token (one timer, on the
   * member: a departure or a move clears it with the challenge).
   */
  private challengeWithinBudget(member: Member, stage: number): void {
    // One that passed a challenge here once asks again only after the server moved it or re-cut the model:
    // the server's doing, not a lever (a re-partition re-challenges everyone, a NAT's sixteen tabs too).
    const waitMs = member.vouched ? 0 : this.budget.take(clientOf(member));
    if (waitMs === 0) {
      void this.sendChallenge(member, stage);
      return;
    }
    const id = this.nextChallengeId++;
    const timer = setTimeout(() => {
      if (member.challenge?.id !== id || this.s.members.get(member.id) !== member || this.s.closing) return;
      member.challenge = null;
      this.challengeWithinBudget(member, stage);
    }, Math.ceil(waitMs));
    // Not sent: sentAt stays infinite, and no proof is taken for it.
    member.challenge = { id, stage, expected: [], sentAt: Number.POSITIVE_INFINITY, timer };
    this.s.log(`volunteer ${member.id}: its client's challenges are spent; challenged in ${Math.ceil(waitMs)} ms`);
  }

  private async sendChallenge(member: Member, stage: number): Promise<void> {
    const oracle = this.s.oracle;
    const epoch = this.s.epoch;
    if (member.challenge !== null) return;
    const challengeId = this.nextChallengeId++;
    // Claimed at once, so that a second `ready` does not start another.
    member.challenge = { id: challengeId, stage, expected: [], sentAt: Number.POSITIVE_INFINITY, timer: null };
    let made: Awaited<ReturnType<ChallengeOracle['make']>>;
    try {
      // Asked again when its turn comes: nothing is computed for a volunteer that left (a flood of hello-ready-leave).
      made = await oracle.make(
        stage,
        () => this.s.members.get(member.id) === member && this.s.registry.get(member.id)?.stage === stage && this.s.epoch === epoch,
      );
    } catch (e) {
      // Its own claim only: a move meanwhile dropped it, and a ready for the new stage may have claimed another.
      if (member.challenge?.id === challengeId) member.challenge = null;
      if (!(e instanceof ChallengeMoot)) this.s.log(`challenge for stage ${stage} could not be made: ${(e as Error).message}`);
      return;
    }
    // Made for another partition (a re-partition came meanwhile), the challenge is no test of this one.
    if (
      this.s.members.get(member.id) !== member ||
      this.s.registry.get(member.id)?.stage !== stage ||
      this.s.epoch !== epoch ||
      member.challenge?.id !== challengeId
    ) {
      if (member.challenge?.id === challengeId) member.challenge = null;
      return;
    }
    const timeoutMs = this.s.options.challengeTimeoutMs ?? DEFAULT_CHALLENGE_TIMEOUT_MS;
    const timer = setTimeout(() => {
      if (member.challenge?.id !== challengeId) return;
      member.challenge = null;
      this.h.expel(member.id, 'ERR_CHALLENGE_FAILED', `no answer to a challenge step within ${timeoutMs} ms`, false);
    }, timeoutMs);
    member.challenge = { id: challengeId, stage, expected: made.expected, sentAt: performance.now(), timer };
    const hidden = made.hidden.buffer.slice(made.hidden.byteOffset, made.hidden.byteOffset + made.hidden.byteLength) as ArrayBuffer;
    member.link.send('volunteer:challenge', { challengeId, stage, tokens: made.tokens, hidden });
  }

  /** A volunteer's answer to its challenge: right, and it is ready (or stays so); wrong, and it is evicted. */
  proof(id: string, m: ChallengeProof): void {
    const member = this.s.members.get(id);
    const v = this.s.registry.get(id);
    const c = member?.challenge;
    // The answer to a challenge a move or a switch withdrew while it was computed (ids are never reused, so never the
    // one open now): nothing to judge, nothing wrong.
    if (member !== undefined && member.withdrawn === m.challengeId) {
      member.withdrawn = null;
      return;
    }
    if (
      member === undefined ||
      v === undefined ||
      c === null ||
      c === undefined ||
      c.id !== m.challengeId ||
      c.timer === null ||
      c.sentAt === Number.POSITIVE_INFINITY
    ) {
      refuse(this.s, id, 'ERR_BAD_MESSAGE', `proof: challenge ${m.challengeId} is not open for you`);
      return;
    }
    clearTimeout(c.timer);
    member.challenge = null;
    // A challenge of a stage it has left (moved before it answered): right or wrong, it proves nothing of this one.
    if (c.stage !== v.stage) {
      this.s.log(`volunteer ${id}: an answer to a challenge of stage ${c.stage}, after its move to stage ${v.stage}: ignored`);
      return;
    }
    if (!agreeFingerprints([...m.digest], c.expected)) {
      this.h.expel(id, 'ERR_CHALLENGE_FAILED', `its answer to a challenge step of stage ${v.stage} is wrong`, true);
      return;
    }
    member.proven = true;
    member.vouched = true;
    if (!v.ready) {
      // Its time per step as measured here, never as it says.
      this.s.registry.markReady(id, v.stage, performance.now() - c.sentAt);
      this.s.log(`volunteer ${id} passed its challenge for stage ${v.stage}: ready`);
      // Only a proven volunteer counts towards going back to the configured partition: now it may
      // (proofs come in bursts, each volunteer's after a switch: they are looked at together).
      this.h.recheckLater(PROOF_RECHECK_MS);
      this.s.options.statusChanged?.();
    }
  }

  /** After a session, each of its replicas is challenged again with probability spotCheckRate. */
  spotCheck(ids: readonly string[]): void {
    const rate = this.s.options.spotCheckRate ?? DEFAULT_SPOT_CHECK_RATE;
    if (this.s.closing || rate <= 0) return;
    for (const id of new Set(ids)) {
      const member = this.s.members.get(id);
      const v = this.s.registry.get(id);
      if (member === undefined || v === undefined || !v.ready || member.challenge !== null) continue;
      if (this.s.random() >= rate) continue;
      if (member.remote) this.s.cluster?.challenge(id);
      else void this.sendChallenge(member, v.stage);
    }
  }

  /** Another server asks for a spot check of a volunteer of this server. */
  challengeAgain(id: string): void {
    const member = this.s.members.get(id);
    const v = this.s.registry.get(id);
    if (member === undefined || member.remote || v === undefined || !v.ready || member.challenge !== null || this.s.closing) return;
    void this.sendChallenge(member, v.stage);
  }
}

/** Whom a volunteer's challenges are counted against: its address, or on this machine's own addresses its client key. */
function clientOf(member: Member): string {
  return member.keys.find((k) => k.startsWith('addr:')) ?? member.keys[0] ?? member.id;
}
