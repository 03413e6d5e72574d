// The service figures as the dashboard shows them: pure functions over
// GET /api/status's body, kept apart from React so they are tested alone.
import type { Percentiles, ServiceStatus, WindowFigures } from '../../shared/protocol/http.js';

/** A window's length in words: "5 min", "1 h". */
export function windowName(windowS: number): string {
  return windowS % 3600 === 0 ? `${windowS / 3600} h` : `${Math.round(windowS / 60)} min`;
}

const dash = '–';

/** A share as a percentage with one decimal, or a dash when there was nothing to count. */
export function percent(share: number | null): string {
  return share === null ? dash : `${(share * 100).toFixed(1)} %`;
}

/** p50 / p95 / p99 in ms, or a dash each where there was no data. */
export function percentilesText(p: Percentiles): string {
  const ms = (v: number | null) => (v === null ? dash : v >= 100 ? v.toFixed(0) : v.toFixed(1));
  return `${ms(p.p50)} / ${ms(p.p95)} / ${ms(p.p99)}`;
}

/** The rows of the figures table: a label, then one cell per window. */
export function figureRows(windows: readonly WindowFigures[]): { label: string; cells: string[] }[] {
  const row = (label: string, cell: (w: WindowFigures) => string) => ({ label, cells: windows.map(cell) });
  return [
    row('requests', (w) => String(w.requests)),
    row('answered', (w) => percent(w.answered)),
    row('time to first token, ms (p50 / p95 / p99)', (w) => percentilesText(w.ttftMs)),
    row('ms per token (p50 / p95 / p99)', (w) => percentilesText(w.msPerToken)),
    row('tokens', (w) => String(w.tokens)),
    row('verified by volunteers', (w) => percent(w.verifiedByVolunteers)),
    row('computed in part by the server (fallback)', (w) => percent(w.computedByServer)),
  ];
}

/**
 * The volunteers ready per stage, and those a new route may take where fewer (two tabs of one client count once;
 * while a cluster's Redis is away, another server's volunteers are out of reach).
 */
export function readyText(s: ServiceStatus): string {
  const ready = `volunteers ready per stage: ${s.readyPerStage.join(' / ')}`;
  const fewer = s.routablePerStage.some((n, i) => n < (s.readyPerStage[i] ?? 0));
  return fewer ? `${ready} (a route may take ${s.routablePerStage.join(' / ')} now, one per client and within reach)` : ready;
}

/** The fallback in one line: its mode and how busy it is. */
export function fallbackText(s: ServiceStatus): string {
  const f = s.fallback;
  if (f.mode === 'off') return 'fallback off: a request that finds a stage short of volunteers fails';
  const what = f.mode === 'stage' ? 'the stages short of volunteers' : 'whole requests that find a stage short of volunteers';
  return `fallback ${f.mode}: the server computes ${what}; ${f.sessions} of ${f.maxSessions} sessions now`;
}
