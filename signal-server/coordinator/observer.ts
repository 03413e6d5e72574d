import type { WireErrorCode } from '../../shared/protocol/errors.js';
import type { StageVote } from '../../shared/protocol/messages.js';

/** How a generation ended: "ok", or the error code it failed with. */
export type GenerationOutcome = 'ok' | WireErrorCode | 'ERR_INTERNAL';

/** Hears what the coordinator does, for metrics and the dashboard; must not throw. */
export interface SwarmObserver {
  /** One verified token: the step's time and every stage's vote. */
  onToken?(stepMs: number, votes: readonly StageVote[]): void;
  onGeneration?(outcome: GenerationOutcome, tokens: number): void;
}
