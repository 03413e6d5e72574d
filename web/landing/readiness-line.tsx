import { readinessText } from './readiness-text.js';
import { useSwarmReadiness } from './use-readiness.js';

/** /api/swarm again this often: volunteers becoming ready is not pushed to this page. */
const POLL_MS = 2000;

/** One line: volunteers ready per stage, and whether the swarm can answer yet. */
export function ReadinessLine() {
  const { readiness, problem } = useSwarmReadiness(POLL_MS);
  return (
    <p data-testid="readiness">
      {readiness !== null
        ? readinessText(readiness)
        : problem !== null
          ? `Readiness unknown (${problem}).`
          : 'Checking which volunteers are ready…'}
    </p>
  );
}
