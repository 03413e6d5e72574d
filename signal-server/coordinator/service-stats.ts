/**
 * Figures people can hold the swarm to, over the last 5 minutes and the last
 * hour: time to first token and ms per token (p50 / p95 / p99), the share of
 * requests answered, and the shares of tokens verified by a majority of
 * volunteers and computed in part by the server (the fallback). Pure: fed by the coordinator, clock injected.
 */
import type { Percentiles, WindowFigures } from '../../shared/protocol/http.js';

export type { Percentiles, ServiceStatus, WindowFigures } from '../../shared/protocol/http.js';

/** One request as it ended. */
export interface RequestRecord {
  /** ms since the epoch when it ended. */
  readonly at: number;
  readonly ok: boolean;
  /** From the request to its first token; null when none came. */
  readonly ttftMs: number | null;
  /** Per token after the first, ms (the steps' times). */
  readonly msPerToken: readonly number[];
  readonly tokens: number;
  /** Tokens verified by a majority of r volunteers at every stage. */
  readonly verifiedTokens: number;
  /** Tokens a stage of which the server computed (the fallback). */
  readonly serverTokens: number;
}

/** The windows reported: 5 minutes and an hour. */
export const STATUS_WINDOWS_S = [300, 3600] as const;
/** Requests kept at most (the oldest go first): bounds memory under any load. */
export const MAX_KEPT_REQUESTS = 20_000;

/** The q-quantile (0..1) of sorted numbers, nearest rank; null when empty. */
export function quantile(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] as number;
}

function percentiles(xs: number[]): Percentiles {
  const s = xs.sort((a, b) => a - b);
  const round = (v: number | null) => (v === null ? null : Math.round(v * 100) / 100);
  return { p50: round(quantile(s, 0.5)), p95: round(quantile(s, 0.95)), p99: round(quantile(s, 0.99)) };
}

export class ServiceStats {
  private readonly records: RequestRecord[] = [];

  constructor(private readonly now: () => number = Date.now) {}

  record(r: Omit<RequestRecord, 'at'>): void {
    this.records.push({ ...r, at: this.now() });
    if (this.records.length > MAX_KEPT_REQUESTS) this.records.splice(0, this.records.length - MAX_KEPT_REQUESTS);
    const horizon = this.now() - 1000 * Math.max(...STATUS_WINDOWS_S);
    while ((this.records[0]?.at ?? Number.POSITIVE_INFINITY) < horizon) this.records.shift();
  }

  /** The figures over the last `windowS` seconds. */
  window(windowS: number): WindowFigures {
    const since = this.now() - windowS * 1000;
    const rs = this.records.filter((r) => r.at >= since);
    const tokens = rs.reduce((a, r) => a + r.tokens, 0);
    const verified = rs.reduce((a, r) => a + r.verifiedTokens, 0);
    const served = rs.reduce((a, r) => a + r.serverTokens, 0);
    return {
      windowS,
      requests: rs.length,
      answered: rs.length === 0 ? null : rs.filter((r) => r.ok).length / rs.length,
      ttftMs: percentiles(rs.flatMap((r) => (r.ttftMs === null ? [] : [r.ttftMs]))),
      msPerToken: percentiles(rs.flatMap((r) => [...r.msPerToken])),
      tokens,
      verifiedByVolunteers: tokens === 0 ? null : verified / tokens,
      computedByServer: tokens === 0 ? null : served / tokens,
    };
  }

  windows(): WindowFigures[] {
    return STATUS_WINDOWS_S.map((w) => this.window(w));
  }
}
