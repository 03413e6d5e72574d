import { ModelError } from './errors.js';
import type { LayerRange } from './stage-graph.js';

/** How to cut a model: a number of stages (layers spread evenly), or explicit consecutive layer ranges. */
export type Partition = { readonly stages: number } | { readonly ranges: readonly LayerRange[] };

/**
 * Resolves a partition into layer ranges that cover [0, numLayers) in order,
 * each with at least one layer. Even splits put the extra layers first.
 */
export function resolvePartition(numLayers: number, p: Partition, file = 'partition'): LayerRange[] {
  const bad = (detail: string): ModelError => new ModelError('ERR_MODEL_BAD_PARTITION', file, detail);
  if ('stages' in p) {
    const n = p.stages;
    if (!Number.isInteger(n) || n < 1 || n > numLayers) throw bad(`cannot cut ${numLayers} layers into ${n} stages (1..${numLayers})`);
    const base = Math.floor(numLayers / n);
    const extra = numLayers % n;
    const out: LayerRange[] = [];
    let start = 0;
    for (let i = 0; i < n; i++) {
      const len = base + (i < extra ? 1 : 0);
      out.push({ start, end: start + len });
      start += len;
    }
    return out;
  }
  const ranges = p.ranges;
  if (ranges.length === 0) throw bad('no layer ranges given');
  let expect = 0;
  for (const r of ranges) {
    if (!Number.isInteger(r.start) || !Number.isInteger(r.end) || r.start !== expect || r.end <= r.start) {
      throw bad(`layer ranges must be consecutive, non-empty and start at 0: got [${r.start}, ${r.end}) after layer ${expect}`);
    }
    expect = r.end;
  }
  if (expect !== numLayers) throw bad(`layer ranges end at ${expect}, but the model has ${numLayers} layers`);
  return ranges.map((r) => ({ start: r.start, end: r.end }));
}

/** Parses "0-2,2-4,4-6" (half-open ranges) as used on the command line. */
export function parseRanges(text: string): LayerRange[] {
  return text.split(',').map((part) => {
    const m = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(part);
    if (m === null) throw new ModelError('ERR_MODEL_BAD_PARTITION', '--layers', `"${part}" is not a range like 0-3`);
    return { start: Number(m[1]), end: Number(m[2]) };
  });
}
