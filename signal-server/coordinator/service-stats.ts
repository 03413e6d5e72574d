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
/**
 * Tokens' ms are counted, not kept: per slot of this many ms, in buckets 1 % wide (BUCKET_RATIO), each holding its
 * count and sum (a bucket's figure is the mean of its tokens: exact where they are equal, within 1 % always). Before,
 * every token's ms of the hour was kept and sorted at every GET /api/status, five times a /metrics scrape: a red-team
 * pass filled the hour within its rate limit (240 generations of 500 tokens) and a scrape then held the event loop
 * for 0.6–0.8 s, growing with the hour's tokens.
 */
export const SLOT_MS = 10_000;
const BUCKET_RATIO = 1.01;
const LOG_RATIO = Math.log(BUCKET_RATIO);
/** Below this (and zero), one bucket. */
const MIN_MS = 0.001;
/** How long computed figures are served again before they are computed anew (a new record computes them anew too). */
export const FIGURES_MAX_AGE_MS = 1_000;

/** The q-quantile (0..1) of sorted numbers, nearest rank; null when empty. */
export function quantile(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] as number;
}

const round = (v: number | null) => (v === null ? null : Math.round(v * 100) / 100);

function percentiles(xs: number[]): Percentiles {
  const s = xs.sort((a, b) => a - b);
  return { p50: round(quantile(s, 0.5)), p95: round(quantile(s, 0.95)), p99: round(quantile(s, 0.99)) };
}

/** Counts and sums of ms by bucket. */
type Histogram = Map<number, { count: number; sum: number }>;

function bucketOf(ms: number): number {
  return Math.round(Math.log(Math.max(ms, MIN_MS)) / LOG_RATIO);
}

/** The nearest-rank p50 / p95 / p99 of what the histograms counted: each its bucket's mean. */
function histogramPercentiles(hs: readonly Histogram[]): Percentiles {
  const merged: Histogram = new Map();
  let total = 0;
  for (const h of hs)
    for (const [b, { count, sum }] of h) {
      const m = merged.get(b);
      if (m === undefined) merged.set(b, { count, sum });
      else {
        m.count += count;
        m.sum += sum;
      }
      total += count;
    }
  const buckets = [...merged.entries()].sort((a, b) => a[0] - b[0]);
  const at = (q: number): number | null => {
    if (total === 0) return null;
    const rank = Math.min(total, Math.max(1, Math.ceil(q * total)));
    let seen = 0;
    for (const [, { count, sum }] of buckets) {
      seen += count;
      if (seen >= rank) return sum / count;
    }
    return null;
  };
  return { p50: round(at(0.5)), p95: round(at(0.95)), p99: round(at(0.99)) };
}

export class ServiceStats {
  private readonly records: Omit<RequestRecord, 'msPerToken'>[] = [];
  /** Tokens' ms by slot (Math.floor(at / SLOT_MS)), the last hour's. */
  private readonly slots = new Map<number, Histogram>();
  private cached: { at: number; figures: WindowFigures[] } | null = null;

  constructor(private readonly now: () => number = Date.now) {}

  record(r: Omit<RequestRecord, 'at'>): void {
    const at = this.now();
    const { msPerToken, ...rest } = r;
    this.records.push({ ...rest, at });
    if (this.records.length > MAX_KEPT_REQUESTS) this.records.splice(0, this.records.length - MAX_KEPT_REQUESTS);
    const horizon = at - 1000 * Math.max(...STATUS_WINDOWS_S);
    while ((this.records[0]?.at ?? Number.POSITIVE_INFINITY) < horizon) this.records.shift();
    const slot = Math.floor(at / SLOT_MS);
    let h = this.slots.get(slot);
    if (h === undefined) {
      h = new Map();
      this.slots.set(slot, h);
    }
    for (const ms of msPerToken) {
      const b = bucketOf(ms);
      const e = h.get(b);
      if (e === undefined) h.set(b, { count: 1, sum: ms });
      else {
        e.count += 1;
        e.sum += ms;
      }
    }
    for (const k of this.slots.keys()) if ((k + 1) * SLOT_MS <= horizon) this.slots.delete(k);
    this.cached = null;
  }

  /** The figures over the last `windowS` seconds (ms per token: over the slots that end within them). */
  window(windowS: number): WindowFigures {
    const since = this.now() - windowS * 1000;
    const rs = this.records.filter((r) => r.at >= since);
    const tokens = rs.reduce((a, r) => a + r.tokens, 0);
    const verified = rs.reduce((a, r) => a + r.verifiedTokens, 0);
    const served = rs.reduce((a, r) => a + r.serverTokens, 0);
    const slots = [...this.slots.entries()].filter(([k]) => (k + 1) * SLOT_MS > since).map(([, h]) => h);
    return {
      windowS,
      requests: rs.length,
      answered: rs.length === 0 ? null : rs.filter((r) => r.ok).length / rs.length,
      ttftMs: percentiles(rs.flatMap((r) => (r.ttftMs === null ? [] : [r.ttftMs]))),
      msPerToken: histogramPercentiles(slots),
      tokens,
      verifiedByVolunteers: tokens === 0 ? null : verified / tokens,
      computedByServer: tokens === 0 ? null : served / tokens,
    };
  }

  /** Both windows' figures; computed at most once a FIGURES_MAX_AGE_MS unless a request ended meanwhile. */
  windows(): WindowFigures[] {
    const now = this.now();
    if (this.cached !== null && now - this.cached.at < FIGURES_MAX_AGE_MS && now >= this.cached.at) return this.cached.figures;
    const figures = STATUS_WINDOWS_S.map((w) => this.window(w));
    this.cached = { at: now, figures };
    return figures;
  }
}
