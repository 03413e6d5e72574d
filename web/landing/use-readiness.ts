import { useEffect, useState } from 'react';
import { parseSwarmReadiness, type SwarmReadiness } from '../../shared/swarm/readiness.js';

/** `GET /api/swarm`, read again every `pollMs` while `enabled` (volunteers becoming ready is not pushed to pages). */
export function useSwarmReadiness(
  pollMs: number,
  enabled = true,
): { readonly readiness: SwarmReadiness | null; readonly problem: string | null } {
  const [readiness, setReadiness] = useState<SwarmReadiness | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  useEffect(() => {
    if (!enabled) return;
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
    const timer = setInterval(() => void poll(), pollMs);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [pollMs, enabled]);
  return { readiness, problem };
}
