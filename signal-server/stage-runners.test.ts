// The re-partition builder over the real model folder: stage files built into
// a stage cache, served, and one served partition per cut (its oracle's runner
// holds the whole model: a swarm switching back and forth must not load one
// per switch).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureStages } from './models/model-folder.js';
import { KEPT_PARTITIONS, partitionBuilder } from './stage-runners.js';
import { MODEL } from './testing/http-swarm.js';

const cache = mkdtempSync(join(tmpdir(), 'webswarm-stage-runners-'));
afterAll(() => rmSync(cache, { recursive: true, force: true }));

describe('partitionBuilder', () => {
  it('builds each cut once and serves it; a cut built again is the same served partition, with the same oracle', async () => {
    const served = await ensureStages(MODEL, { stages: 3 }, cache);
    const urls: string[] = [];
    const builder = partitionBuilder({ ...served, modelDir: MODEL }, cache, (_stages, baseUrl) => urls.push(baseUrl));
    if (builder === null) throw new Error('no builder');
    const a = await builder.build([
      { start: 0, end: 2 },
      { start: 2, end: 3 },
    ]);
    expect(a.key).toBe('r0-2_2-3');
    expect(a.manifest.stages.map((s) => [s.layers.start, s.layers.end])).toEqual([
      [0, 2],
      [2, 3],
    ]);
    const b = await builder.build([{ start: 0, end: 3 }]);
    expect(b.key).toBe('r0-3');
    const again = await builder.build([
      { start: 0, end: 2 },
      { start: 2, end: 3 },
    ]);
    expect(again).toBe(a);
    expect(again.oracle).toBe(a.oracle);
    expect(urls).toEqual([a.baseUrl, b.baseUrl]);
    // Cuts that vary are not all kept: with KEPT_PARTITIONS (3) others built since, the first is built anew.
    expect(KEPT_PARTITIONS).toBe(3);
    expect(await builder.build([{ start: 0, end: 3 }])).toBe(b);
    await builder.build([
      { start: 0, end: 1 },
      { start: 1, end: 3 },
    ]);
    await builder.build([
      { start: 0, end: 1 },
      { start: 1, end: 2 },
      { start: 2, end: 3 },
    ]);
    const rebuilt = await builder.build([
      { start: 0, end: 2 },
      { start: 2, end: 3 },
    ]);
    expect(rebuilt).not.toBe(a);
    expect(rebuilt.key).toBe(a.key);
  });
});
