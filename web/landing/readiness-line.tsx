import { useEffect, useState } from 'react';
import { parseSwarmReadiness, type SwarmReadiness } from '../../shared/swarm/readiness.js';
import { readinessText } from './readiness-text.js';

/** /api/swarm again this often: volunteers becoming ready is not pushed to this page. */
const POLL_MS = 2000;

/** One line: volunteers ready per stage, and whether the swarm can answer yet. */
export function ReadinessLine() {
  const [readiness, setReadiness] = useState<SwarmReadiness | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    const poll = () =>
      fetch('/api/swarm')
        .then((res) => res.json() as Promise<unknown>)
        .then((raw) => {
          const parsed = parseSwarmReadiness(raw);
          if (!live) return;
          setReadiness(parsed.ok ? parsed.value : null);
          setProblem(parsed.ok ? null : parsed.reason);
        })
        .catch((e: unknown) => live && setProblem(`/api/swarm: ${(e as Error).message}`));
    void poll();
    const timer = setInterval(() => void poll(), POLL_MS);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, []);
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
