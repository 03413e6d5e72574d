import { describe, expect, it } from 'vitest';
import type { ServiceStatus, WindowFigures } from '../../shared/protocol/http.js';
import { fallbackText, figureRows, percent, percentilesText, readyText, windowName } from './figures.js';

const window = (over: Partial<WindowFigures>): WindowFigures => ({
  windowS: 300,
  requests: 0,
  answered: null,
  ttftMs: { p50: null, p95: null, p99: null },
  msPerToken: { p50: null, p95: null, p99: null },
  tokens: 0,
  verifiedByVolunteers: null,
  computedByServer: null,
  ...over,
});

describe('the dashboard figures', () => {
  it('name windows and format shares and percentiles, with a dash where nothing was counted', () => {
    expect([windowName(300), windowName(3600)]).toEqual(['5 min', '1 h']);
    expect([percent(null), percent(1), percent(0.1234)]).toEqual(['–', '100.0 %', '12.3 %']);
    expect(percentilesText({ p50: 3.04, p95: 120.4, p99: null })).toBe('3.0 / 120 / –');
  });

  it('give one cell per window for every figure, fallback share included', () => {
    const rows = figureRows([
      window({ requests: 4, answered: 0.75, tokens: 10, verifiedByVolunteers: 0.6, computedByServer: 0.4 }),
      window({ windowS: 3600 }),
    ]);
    expect(rows.map((r) => r.label)).toContain('computed in part by the server (fallback)');
    expect(rows.find((r) => r.label === 'answered')?.cells).toEqual(['75.0 %', '–']);
    expect(rows.find((r) => r.label.startsWith('computed'))?.cells).toEqual(['40.0 %', '–']);
    expect(rows.every((r) => r.cells.length === 2)).toBe(true);
  });

  it('say what the fallback does', () => {
    const s = (mode: 'off' | 'stage' | 'whole'): ServiceStatus => ({
      modelId: 'm',
      redundancy: 3,
      volunteers: 0,
      readyPerStage: [0],
      routablePerStage: [0],
      fallback: { mode, maxSessions: 4, sessions: 1 },
      windows: [],
    });
    expect(fallbackText(s('off'))).toContain('fails');
    expect(fallbackText(s('stage'))).toBe('fallback stage: the server computes the stages short of volunteers; 1 of 4 sessions now');
    expect(fallbackText(s('whole'))).toContain('whole requests');
  });

  it('say how many ready volunteers a route may take, where fewer', () => {
    const s = (ready: number[], routable: number[]): ServiceStatus => ({
      modelId: 'm',
      redundancy: 3,
      volunteers: 9,
      readyPerStage: ready,
      routablePerStage: routable,
      fallback: { mode: 'stage', maxSessions: 4, sessions: 0 },
      windows: [],
    });
    expect(readyText(s([3, 3], [3, 3]))).toBe('volunteers ready per stage: 3 / 3');
    expect(readyText(s([3, 3], [0, 3]))).toBe(
      'volunteers ready per stage: 3 / 3 (a route may take 0 / 3 now, one per client and within reach)',
    );
  });
});
