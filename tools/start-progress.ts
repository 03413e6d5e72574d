/**
 * npm start's progress line while the local swarm comes up: volunteers ready
 * per stage and what is being waited for, from `GET /api/swarm`.
 */
import { parseSwarmReadiness, type SwarmReadiness } from '../shared/swarm/readiness.js';

const POLL_MS = 1000;
const FETCH_TIMEOUT_MS = 2000;

const tabs = (n: number): string => `${n} tab${n === 1 ? '' : 's'}`;

/** e.g. `[35 s] ready per stage 2/3 · 3/3 · 0/3 (5 of 9): waiting for 4 tabs to load their stage`. */
export function progressLine(
  r: SwarmReadiness,
  o: { readonly expected: number; readonly redundancy: number; readonly elapsedMs: number },
): string {
  const perStage = r.stages.map((s) => `${s.ready}/${o.redundancy}`).join(' · ');
  const loading = r.stages.reduce((n, s) => n + s.loading, 0);
  const joining = Math.max(0, o.expected - r.volunteers);
  const waits: string[] = [];
  if (joining > 0) waits.push(`${tabs(joining)} to open and join`);
  if (loading > 0) waits.push(`${tabs(loading)} to load their stage`);
  const waiting = waits.length === 0 ? 'all ready' : `waiting for ${waits.join(' and ')}`;
  return `[${Math.round(o.elapsedMs / 1000)} s] ready per stage ${perStage || '—'} (${r.ready} of ${o.expected}): ${waiting}`;
}

/** Polls the server once a second and hands each progress line to `show` until stopped. */
export function watchProgress(
  serverUrl: string,
  o: { readonly expected: number; readonly redundancy: number },
  show: (line: string) => void,
): { stop(): void } {
  const t0 = performance.now();
  let stopped = false;
  const poll = async (): Promise<void> => {
    try {
      const res = await fetch(`${serverUrl}/api/swarm`, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
      const parsed = parseSwarmReadiness(await res.json());
      if (stopped) return;
      show(parsed.ok ? progressLine(parsed.value, { ...o, elapsedMs: performance.now() - t0 }) : `progress unknown: ${parsed.reason}`);
    } catch (e) {
      if (!stopped) show(`progress unknown: ${(e as Error).message}`);
    }
  };
  const timer = setInterval(() => void poll(), POLL_MS);
  void poll();
  return {
    stop() {
      stopped = true;
      clearInterval(timer);
    },
  };
}
