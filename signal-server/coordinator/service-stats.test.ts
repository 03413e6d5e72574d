import { describe, expect, it } from 'vitest';
import { MAX_KEPT_REQUESTS, quantile, ServiceStats } from './service-stats.js';

describe('service figures', () => {
  it('nearest-rank quantiles', () => {
    const xs = Array.from({ length: 100 }, (_, i) => i + 1);
    expect([quantile(xs, 0.5), quantile(xs, 0.95), quantile(xs, 0.99), quantile(xs, 1)]).toEqual([50, 95, 99, 100]);
    expect(quantile([], 0.5)).toBeNull();
  });

  it('reports each window apart: what left the 5 minutes still counts in the hour', () => {
    let now = 0;
    const s = new ServiceStats(() => now);
    s.record({ ok: true, ttftMs: 100, msPerToken: [10, 20], tokens: 3, verifiedTokens: 3, serverTokens: 0 });
    now += 10 * 60_000;
    s.record({ ok: false, ttftMs: null, msPerToken: [], tokens: 0, verifiedTokens: 0, serverTokens: 0 });
    s.record({ ok: true, ttftMs: 300, msPerToken: [30], tokens: 2, verifiedTokens: 0, serverTokens: 2 });
    const [five, hour] = s.windows();
    expect(five).toMatchObject({ windowS: 300, requests: 2, answered: 0.5, tokens: 2, verifiedByVolunteers: 0, computedByServer: 1 });
    expect(five?.ttftMs).toEqual({ p50: 300, p95: 300, p99: 300 });
    expect(hour).toMatchObject({ windowS: 3600, requests: 3, tokens: 5, verifiedByVolunteers: 0.6, computedByServer: 0.4 });
    expect(hour?.answered).toBeCloseTo(2 / 3);
    expect(hour?.msPerToken).toEqual({ p50: 20, p95: 30, p99: 30 });
    // After an hour, the first is gone from both.
    now += 55 * 60_000;
    s.record({ ok: true, ttftMs: 5, msPerToken: [], tokens: 1, verifiedTokens: 1, serverTokens: 0 });
    expect(s.window(3600).requests).toBe(3);
  });

  it('no request: figures are null, not zero', () => {
    expect(new ServiceStats(() => 0).window(300)).toEqual({
      windowS: 300,
      requests: 0,
      answered: null,
      ttftMs: { p50: null, p95: null, p99: null },
      msPerToken: { p50: null, p95: null, p99: null },
      tokens: 0,
      verifiedByVolunteers: null,
      computedByServer: null,
    });
  });

  it('keeps a bounded number of requests under any load', () => {
    const s = new ServiceStats(() => 0);
    for (let i = 0; i < MAX_KEPT_REQUESTS + 500; i++)
      s.record({ ok: true, ttftMs: 1, msPerToken: [], tokens: 1, verifiedTokens: 1, serverTokens: 0 });
    expect(s.window(300).requests).toBe(MAX_KEPT_REQUESTS);
  });
});
