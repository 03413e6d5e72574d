import { afterEach, describe, expect, it } from 'vitest';
import { benchGraph } from './env.js';

const AUSTEN = 'models/austen-2m';
/** Head size 8: onnxruntime's CPU GroupQueryAttention takes multiples of 16, so this model has no fused form. */
const NO_FUSED = 'fixtures/models/tiny-untied';

describe('benchGraph: the stage graphs a swarm bench runs', () => {
  const before = process.env.BENCH_GRAPH;
  afterEach(() => {
    if (before === undefined) delete process.env.BENCH_GRAPH;
    else process.env.BENCH_GRAPH = before;
  });

  it('runs what npm start runs when BENCH_GRAPH is unset: fused where the model has that form, else plain', () => {
    delete process.env.BENCH_GRAPH;
    expect(benchGraph(AUSTEN)).toBe('fused');
    expect(benchGraph(NO_FUSED)).toBe('plain');
  });

  it('takes a form by name, and a form the caller gives over the environment', () => {
    process.env.BENCH_GRAPH = 'plain';
    expect(benchGraph(AUSTEN)).toBe('plain');
    expect(benchGraph(AUSTEN, 'fused')).toBe('fused');
    process.env.BENCH_GRAPH = 'auto';
    expect(benchGraph(AUSTEN)).toBe('fused');
  });

  it('refuses an unknown form and a list by name', () => {
    process.env.BENCH_GRAPH = 'fast';
    expect(() => benchGraph(AUSTEN)).toThrow(/BENCH_GRAPH: "fast" is not one of auto, plain, fused/);
    process.env.BENCH_GRAPH = 'plain,fused';
    expect(() => benchGraph(AUSTEN)).toThrow(/BENCH_GRAPH: one of auto, plain, fused, not a list/);
  });
});
