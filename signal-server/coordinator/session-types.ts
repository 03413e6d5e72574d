import type { WireErrorCode } from '../../shared/protocol/errors.js';
import type { SessionOpen, SessionUpdate, StageVote, StepInput } from '../../shared/protocol/messages.js';
import type { SilenceCarry } from './silent-members.js';

/**
 * Why a replica counted as a no-show: it did not join, or its neighbours could not reach it; or it refused the
 * session as full, which its own server judges (a strike only if it held fewer sessions than a replica keeps);
 * or it joined and then sent too few results while its stage decided steps (`silent`: SilentMembers).
 */
export type NoShow = 'absent' | 'unreached' | 'full' | 'silent';

/** What a session needs from the transport: send to one volunteer. */
export interface SessionTransport {
  open(volunteer: string, m: SessionOpen): void;
  update(volunteer: string, m: SessionUpdate): void;
  input(volunteer: string, m: StepInput): void;
  /** `steps`: how many steps the session ran (SessionClose.steps). */
  close(volunteer: string, sessionId: number, steps: number): void;
}

/** Where a session finds spare replicas, and whom it reports misbehaviour to. */
export interface RetryHooks {
  /** Ready volunteers of `stage` that may join it next to `alongside` (not in `exclude`), best first. */
  spares(stage: number, exclude: ReadonlySet<string>, alongside: readonly string[]): string[];
  /** Called before `volunteer` joins `stage` of the route (link it to its neighbours). */
  link(stage: number, volunteer: string): void;
  /** Hears what a retry did, for the server's log. */
  log?(line: string): void;
  /**
   * A replica did not join the session in time or refused it (`absent`; `full`: refused as full), a majority
   * of a stage beside it joined without reaching it (`unreached`), or it joined and then sent too few results
   * (`silent`): counts against its record.
   */
  noShow?(volunteer: string, why?: NoShow): void;
  /**
   * A member sent too few results while its stage decided steps (SilentMembers): it leaves the route as one that
   * left does (a ready spare takes its place; with none, the stage goes on without it, or the server takes it).
   */
  takeOut?(volunteer: string): void;
  /** A replica left with no spare ready then (its slot dead): a spare ready now takes its place, if there is one. */
  refill?(volunteer: string): void;
  /** What `volunteer`'s silence in its sessions before left (SilentMembers.carry), for this session to go on from. */
  silenceBefore?(volunteer: string): SilenceCarry | undefined;
  /**
   * What its silence leaves for its next session, at this one's end (null: nothing, it was judged or not watched),
   * and what `silenceBefore` gave this session (null: nothing), for sessions it holds at once (`carriedOn`).
   */
  silenceAfter?(volunteer: string, carry: SilenceCarry | null, before: SilenceCarry | null): void;
  /**
   * The session began deciding `step`, with these members: in a cluster, the servers of its members on others hear
   * where it stands now and then (Cluster.stepBegan), to bound the reports they let go free.
   */
  stepBegan?(step: number, members: Iterable<string>): void;
  /** A replica joined the session in time (its record of showing up). */
  showed?(volunteer: string): void;
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

export interface SessionTimeouts {
  /** Until every replica of the route has its data channels open. */
  readonly joinMs: number;
  /** Until the last stage's logits reach a majority for one step. */
  readonly stepMs: number;
}

/**
 * How a generation ended: its tokens and why, and where the end-of-text token ended it, that step's record (its draw
 * is no token of the completion, but it was sampled from agreed logits as one is: best_of ranks by it too).
 */
export interface GenerationResult {
  readonly tokens: number[];
  readonly finishReason: 'stop' | 'length';
  readonly end?: StepRecord;
}

export interface StepRecord {
  readonly token: number;
  readonly votes: StageVote[];
  /** From sending the input to stage 0 until the token was accepted. */
  readonly ms: number;
  /** Per stage, the fastest compute time a replica reported for this step. */
  readonly computeMs: number[];
  /**
   * The agreed logits the token was sampled from (the last position); from a top form (top-logits.ts), its row with
   * the tokens left out at −Infinity.
   */
  readonly logits: Float32Array;
  /** Of logits from a top form: the whole row's log-sum-exp, which log-probabilities need (absent: the row is whole). */
  readonly logSumExp?: number;
  /** A forced step's (a prompt scored position by position): the token was given, not sampled. */
  readonly forced?: boolean;
}
