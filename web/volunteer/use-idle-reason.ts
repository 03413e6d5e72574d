import { idleTexts } from '../landing/readiness-text.js';
import { useSwarmReadiness } from '../landing/use-readiness.js';
import type { ReplicaStatus } from './replica.js';

/** While the tab is ready and idle, /api/swarm again this often: whether its stage, or another, is short of volunteers. */
const IDLE_POLL_MS = 5_000;

/** Why this ready, idle volunteer gets no work (idleTexts), read from /api/swarm while it is so; null otherwise. */
export function useIdleReason(status: ReplicaStatus | null): ReturnType<typeof idleTexts> {
  const idleStage = status?.state === 'ready' && status.openSessions === 0 ? status.stage : null;
  const { readiness } = useSwarmReadiness(IDLE_POLL_MS, idleStage !== null);
  return idleStage === null || readiness === null ? null : idleTexts(readiness, idleStage);
}
