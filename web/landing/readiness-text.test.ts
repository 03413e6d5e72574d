// The landing page's readiness sentence, for each state a swarm goes through.
import { describe, expect, it } from 'vitest';
import type { SwarmReadiness } from '../../shared/swarm/readiness.js';
import { readinessText } from './readiness-text.js';

const swarm = (ready: number[], loading: number[]): SwarmReadiness => ({
  stages: ready.map((r, i) => ({ ready: r, loading: loading[i] ?? 0 })),
  volunteers: [...ready, ...loading].reduce((a, b) => a + b, 0),
  ready: ready.reduce((a, b) => a + b, 0),
  canAnswer: ready.length > 0 && ready.every((r) => r > 0),
});

describe('readinessText', () => {
  it('counts ready volunteers per stage and names the stages still waited for', () => {
    expect(readinessText(swarm([0, 0, 0], [0, 0, 0]))).toBe('No volunteers yet: the swarm answers once every stage has a ready volunteer.');
    expect(readinessText(swarm([2, 1, 0], [1, 2, 3]))).toBe(
      '3 of 9 volunteers ready (per stage: 2 / 1 / 0): the swarm answers once every stage has a ready volunteer (waiting for stage 2).',
    );
    expect(readinessText(swarm([1, 0, 0], [0, 1, 0]))).toBe(
      '1 of 2 volunteers ready (per stage: 1 / 0 / 0): the swarm answers once every stage has a ready volunteer (waiting for stages 1, 2).',
    );
    expect(readinessText(swarm([1], [0]))).toBe('1 of 1 volunteer ready (per stage: 1): every stage has one, the swarm answers now.');
    expect(readinessText(swarm([], []))).toBe('No model is served here, so the swarm cannot answer.');
  });
});
