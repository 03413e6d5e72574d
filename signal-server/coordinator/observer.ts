import type { WireErrorCode } from '../../shared/protocol/errors.js';
import type { StageVote } from '../../shared/protocol/messages.js';
import type { NoShow } from './session-types.js';

/** How a generation ended: "ok", or the error code it failed with. */
export type GenerationOutcome = 'ok' | WireErrorCode | 'ERR_INTERNAL';

/** Hears what the coordinator does, for metrics and the dashboard; must not throw. */
export interface SwarmObserver {
  /**
   * One verified step: its time and every stage's vote; `scored` when it scored a prompt's position (echo)
   * rather than generated a token.
   */
  onToken?(stepMs: number, votes: readonly StageVote[], scored?: boolean): void;
  onGeneration?(outcome: GenerationOutcome): void;
  /** A volunteer's hello refused, by the code it was told (a ban, its address's budget, no stage fits, …). */
  onHelloRefused?(code: WireErrorCode): void;
  /** A volunteer of this server refused a session as full: its due (it held 16), or a no-show. */
  onFullRefusal?(due: boolean): void;
  /** A strike recorded here against a volunteer (three among its last 20 sessions evict it). */
  onNoShow?(why: NoShow): void;
}

/**
 * Replica outputs of one token's votes: agreed with the majority, disagreed, or not yet answered when it was
 * accepted. A stage the server computed (the fallback) asked no volunteer: its output is counted, the r − 1 seats
 * no volunteer held are not missing (before, a token the server computed alone at r = 3 counted 6 missing votes, and
 * the dashboard showed volunteers failing to answer when none was asked).
 */
export function voteCounts(votes: readonly StageVote[]): { agreed: number; disagreed: number; missing: number } {
  let agreed = 0;
  let disagreed = 0;
  let missing = 0;
  for (const v of votes) {
    agreed += v.agreed;
    disagreed += v.disagreed;
    if (!v.server) missing += Math.max(0, v.replicas - v.agreed - v.disagreed);
  }
  return { agreed, disagreed, missing };
}
