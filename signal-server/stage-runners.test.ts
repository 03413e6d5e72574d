// The re-partition builder over the real model folder: stage files built into
// a stage cache, served, and one served partition per cut (its oracle's runner
// holds the whole model: a swarm switching back and forth must not load one
// per switch).
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ServedPartition } from './coordinator/repartition.js';
import { ensureStages, loadStageSet } from './models/model-folder.js';
import { ThreadExecutor } from './reference/thread-executor.js';
import { KEEP_STALE_MS, KEPT_PARTITIONS, lazyOracle, partitionBuilder, removeUnlessKept } from './stage-runners.js';
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

describe('stage cache eviction', () => {
  it('keeps on disk the configured cut, the latest KEPT_PARTITIONS and the one served now; removes and unserves the others', async () => {
    const root = mkdtempSync(join(tmpdir(), 'webswarm-stage-evict-'));
    try {
      const served = await ensureStages(MODEL, { stages: 3 }, root);
      const unserved: string[] = [];
      const builder = partitionBuilder(
        { ...served, modelDir: MODEL },
        root,
        () => {},
        (baseUrl) => unserved.push(baseUrl),
      );
      if (builder === null) throw new Error('no builder');
      const cut = (...ends: number[]) => ends.map((end, i) => ({ start: i === 0 ? 0 : (ends[i - 1] as number), end }));
      const onDisk = () => new Set(readdirSync(dirname(served.dir)).filter((d) => d.startsWith('r')));
      const two = await builder.build(cut(2, 3));
      builder.switched?.(two);
      // Three other cuts built (none served): the one served now leaves the latest kept, and stays.
      const one = await builder.build(cut(3));
      const other = await builder.build(cut(1, 3));
      await builder.build(cut(1, 2, 3));
      await new Promise((r) => setTimeout(r, 50));
      expect(onDisk()).toEqual(new Set(['r0-2_2-3', 'r0-3', 'r0-1_1-3', 'r0-1_1-2_2-3']));
      expect(unserved).toEqual([]);
      // Served now: r0-1_1-3. The one served before is neither kept nor served: removed, and no longer served.
      builder.switched?.(other);
      expect(onDisk()).toEqual(new Set(['r0-3', 'r0-1_1-3', 'r0-1_1-2_2-3']));
      expect(unserved).toEqual([two.baseUrl]);
      // r0-2_2-3 again pushes r0-3 out (removed); then the configured cut leaves the kept, and is never removed.
      const again = await builder.build(cut(2, 3));
      await new Promise((r) => setTimeout(r, 50));
      expect(onDisk()).toEqual(new Set(['r0-2_2-3', 'r0-1_1-3', 'r0-1_1-2_2-3']));
      expect(unserved).toEqual([two.baseUrl, one.baseUrl]);
      await builder.build(cut(1, 3));
      await builder.build(cut(3));
      await new Promise((r) => setTimeout(r, 50));
      expect(onDisk()).toEqual(new Set(['r0-2_2-3', 'r0-1_1-3', 'r0-1_1-2_2-3', 'r0-3']));
      expect(unserved).toEqual([two.baseUrl, one.baseUrl]);
      expect(existsSync(join(served.dir, 'manifest.json'))).toBe(true);
      // A cut built again after its removal was built anew, complete.
      expect(again).not.toBe(two);
      expect(existsSync(join(dirname(served.dir), again.key, 'manifest.json'))).toBe(true);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("gives an evicted cut's oracle runner back (its onnxruntime sessions), refuses its challenges by name, and the rest on release", async () => {
    const root = mkdtempSync(join(tmpdir(), 'webswarm-stage-release-'));
    try {
      const served = await ensureStages(MODEL, { stages: 3 }, root);
      const builder = partitionBuilder({ ...served, modelDir: MODEL }, root, () => {});
      if (builder === null) throw new Error('no builder');
      const cut = (...ends: number[]) => ends.map((end, i) => ({ start: i === 0 ? 0 : (ends[i - 1] as number), end }));
      const before = ThreadExecutor.live;
      const two = await builder.build(cut(2, 3));
      builder.switched?.(two);
      await two.oracle.make(0);
      expect(ThreadExecutor.live).toBe(before + 1); // the cut's oracle
      await builder.build(cut(3));
      const other = await builder.build(cut(1, 3));
      await builder.build(cut(1, 2, 3));
      await other.oracle.make(1);
      expect(ThreadExecutor.live).toBe(before + 2);
      // Served no more and not among the kept: evicted, and its runner released (before: held until the process ended).
      builder.switched?.(other);
      await expect.poll(() => ThreadExecutor.live).toBe(before + 1);
      await expect(two.oracle.make(0)).rejects.toThrow(/released/);
      await builder.release?.();
      expect(ThreadExecutor.live).toBe(before);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('a stage cache two servers share (the processes of a cluster on one machine)', () => {
  const cut = (...ends: number[]) => ends.map((end, i) => ({ start: i === 0 ? 0 : (ends[i - 1] as number), end }));
  /** Three other cuts built and the last served: `builder` forgets every cut it had before. */
  async function moveOn(builder: NonNullable<ReturnType<typeof partitionBuilder>>): Promise<void> {
    await builder.build(cut(3));
    await builder.build(cut(1, 3));
    builder.switched?.(await builder.build(cut(1, 2, 3)));
    await new Promise((r) => setTimeout(r, 50));
  }

  it('a server that forgets a cut leaves its folder while the other keeps it; the last to forget it removes it', async () => {
    const root = mkdtempSync(join(tmpdir(), 'webswarm-stage-shared-'));
    try {
      const served = await ensureStages(MODEL, { stages: 3 }, root);
      const a = partitionBuilder({ ...served, modelDir: MODEL }, root, () => {});
      const b = partitionBuilder({ ...served, modelDir: MODEL }, root, () => {});
      if (a === null || b === null) throw new Error('no builder');
      const folder = join(dirname(served.dir), 'r0-2_2-3');
      // Both switch to the same cut (a plan every process follows); B serves it still when A has moved on.
      a.switched?.(await a.build(cut(2, 3)));
      b.switched?.(await b.build(cut(2, 3)));
      await moveOn(a);
      // Before: A removed the folder B served (its volunteers' downloads and B's challenge oracle found no files).
      expect(existsSync(join(folder, 'manifest.json'))).toBe(true);
      expect(readdirSync(folder).filter((f) => f.startsWith('.kept-by-'))).toHaveLength(1);
      await moveOn(b);
      expect(existsSync(folder)).toBe(false);
      await a.release?.();
      await b.release?.();
      // Released builders leave no marks.
      for (const d of readdirSync(dirname(served.dir)))
        expect(
          readdirSync(join(dirname(served.dir), d)).filter((f) => f.startsWith('.kept-by-')),
          d,
        ).toEqual([]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('a stale mark (a server stopped without releasing) keeps nothing', async () => {
    const root = mkdtempSync(join(tmpdir(), 'webswarm-stage-stale-'));
    try {
      const served = await ensureStages(MODEL, { stages: 3 }, root);
      const a = partitionBuilder({ ...served, modelDir: MODEL }, root, () => {});
      if (a === null) throw new Error('no builder');
      const two = await a.build(cut(2, 3));
      a.switched?.(two);
      const folder = join(dirname(served.dir), two.key);
      const stale = join(folder, '.kept-by-12345-deadbeef');
      writeFileSync(stale, '');
      const old = (Date.now() - KEEP_STALE_MS - 1_000) / 1000;
      utimesSync(stale, old, old);
      await moveOn(a);
      expect(existsSync(folder)).toBe(false);
      await a.release?.();
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('a kept cut whose folder is gone when asked for again is built anew and served again', async () => {
    const root = mkdtempSync(join(tmpdir(), 'webswarm-stage-gone-'));
    try {
      const served = await ensureStages(MODEL, { stages: 3 }, root);
      const urls: string[] = [];
      const unserved: string[] = [];
      const a = partitionBuilder(
        { ...served, modelDir: MODEL },
        root,
        (_s, url) => urls.push(url),
        (url) => unserved.push(url),
      );
      if (a === null) throw new Error('no builder');
      const two = await a.build(cut(2, 3));
      a.switched?.(await a.build(cut(3)));
      // Removed by hand, or by a server whose mark had gone stale.
      rmSync(join(dirname(served.dir), two.key), { recursive: true, force: true });
      const again = await a.build(cut(2, 3));
      expect(again).not.toBe(two);
      expect(again.key).toBe(two.key);
      expect(existsSync(join(dirname(served.dir), again.key, 'manifest.json'))).toBe(true);
      expect(unserved).toEqual([two.baseUrl]);
      expect(urls.filter((u) => u === two.baseUrl)).toHaveLength(2);
      // Before: the partition whose files were gone came back as it was; its oracle could load nothing.
      await expect(two.oracle.make(0)).rejects.toThrow(/released/);
      const challenge = await again.oracle.make(0);
      expect(challenge.stage).toBe(0);
      await a.release?.();
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('a stage cache with hostile timing and paths', () => {
  const cut = (...ends: number[]) => ends.map((end, i) => ({ start: i === 0 ? 0 : (ends[i - 1] as number), end }));
  type Builder = NonNullable<ReturnType<typeof partitionBuilder>>;

  /**
   * A fresh stage cache and a builder A that served r0-2_2-3 and built three cuts since (so that it forgets that cut
   * the moment it switches away); `body` gets them, the cut, the last cut built but one (`other`) and the cache's model folder.
   */
  async function aboutToForget(
    prefix: string,
    body: (c: {
      root: string;
      served: Awaited<ReturnType<typeof ensureStages>>;
      a: Builder;
      two: ServedPartition;
      other: ServedPartition;
      models: string;
    }) => Promise<void>,
    warn?: (line: string) => void,
  ): Promise<void> {
    const root = mkdtempSync(join(tmpdir(), prefix));
    try {
      const served = await ensureStages(MODEL, { stages: 3 }, root);
      const a = partitionBuilder(
        { ...served, modelDir: MODEL },
        root,
        () => {},
        () => {},
        warn,
      );
      if (a === null) throw new Error('no builder');
      const two = await a.build(cut(2, 3));
      a.switched?.(two);
      await a.build(cut(3));
      const other = await a.build(cut(1, 3));
      await a.build(cut(1, 2, 3));
      await body({ root, served, a, two, other, models: dirname(served.dir) });
      await a.release?.();
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }

  it('a cut one server is checking is not removed under it by another forgetting it (before: the mark came after the check)', async () => {
    await aboutToForget('webswarm-stage-race-', async ({ root, served, a, two, other, models }) => {
      // B comes to that cut; A switches away at B's serve call: after B found the cut complete, before B goes on.
      let aMoved = false;
      const b = partitionBuilder({ ...served, modelDir: MODEL }, root, () => {
        if (aMoved) return;
        aMoved = true;
        a.switched?.(other);
      });
      if (b === null) throw new Error('no builder');
      b.switched?.(await b.build(cut(2, 3)));
      expect(aMoved).toBe(true);
      expect(existsSync(join(models, two.key, 'manifest.json')), 'B serves a cut whose folder A removed').toBe(true);
      await b.release?.();
    });
  });

  it('a cut folder that became a file: a switch forgets it with a warning (before: ENOTDIR thrown mid-switch), and asked for again it is built anew', async () => {
    const warnings: string[] = [];
    await aboutToForget(
      'webswarm-stage-notdir-',
      async ({ a, two, other, models }) => {
        const folder = join(models, two.key);
        rmSync(folder, { recursive: true });
        writeFileSync(folder, 'not a folder');
        // Leaving the served cut evicts it: the switch goes through.
        expect(() => a.switched?.(other)).not.toThrow();
        expect(
          warnings.some((w) => w.includes(folder) && /ENOTDIR/.test(w)),
          warnings.join('\n'),
        ).toBe(true);
        // The cut served now (r0-1_1-3) whose folder became a file is built anew when asked for again.
        const kept = join(models, other.key);
        rmSync(kept, { recursive: true });
        writeFileSync(kept, 'not a folder');
        const again = await a.build(cut(1, 3));
        expect(again.key).toBe(other.key);
        expect(existsSync(join(kept, 'manifest.json'))).toBe(true);
      },
      (line) => warnings.push(line),
    );
  });
});

describe('removeUnlessKept: a cut another server marks while this one removes it', () => {
  it('moves the folder aside, finds the mark there and puts it back whole; with no mark it is gone, nothing left aside', () => {
    const root = mkdtempSync(join(tmpdir(), 'webswarm-stage-evict-'));
    try {
      const folder = join(root, 'r0-2_2-3');
      mkdirSync(folder);
      writeFileSync(join(folder, 'manifest.json'), '{}');
      writeFileSync(join(folder, 'stage-0.onnx'), 'bytes');
      const warnings: string[] = [];
      // B marks it after A's first look (before: A's rmSync went on, and B served a folder that was going).
      removeUnlessKept(
        folder,
        'a',
        (l) => warnings.push(l),
        () => writeFileSync(join(folder, '.kept-by-b'), ''),
      );
      expect(readdirSync(folder).sort()).toEqual(['.kept-by-b', 'manifest.json', 'stage-0.onnx']);
      // B's mark there from the start: not touched.
      removeUnlessKept(folder, 'a', (l) => warnings.push(l));
      expect(existsSync(join(folder, 'manifest.json'))).toBe(true);
      // A stale mark keeps nothing: removed, and nothing left beside it.
      const old = (Date.now() - KEEP_STALE_MS - 1_000) / 1000;
      utimesSync(join(folder, '.kept-by-b'), old, old);
      removeUnlessKept(folder, 'a', (l) => warnings.push(l));
      expect(readdirSync(root)).toEqual([]);
      // Gone already (another removed it): nothing to say.
      removeUnlessKept(folder, 'a', (l) => warnings.push(l));
      expect(warnings).toEqual([]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('lazyOracle', () => {
  it('makes challenges again after its runner thread died (a crash): without them no volunteer could become ready', async () => {
    const served = await ensureStages(MODEL, { stages: 3 }, cache);
    const oracle = lazyOracle(served.dir);
    try {
      const before = await oracle.make(2);
      expect(before.hidden.length).toBeGreaterThan(0);
      // Another runner on the same thread, to reach the thread and kill it from outside.
      const other = await ThreadExecutor.create((await loadStageSet(served.dir)).stageBytes);
      const dead = other.worker;
      await dead.terminate();
      expect(other.broken).toBe(true);
      const after = await oracle.make(2);
      expect(after.stage).toBe(2);
      expect(after.expected).toHaveLength(before.expected.length);
      const next = await ThreadExecutor.create((await loadStageSet(served.dir)).stageBytes);
      expect(next.worker).not.toBe(dead);
      await next.release();
    } finally {
      await oracle.release?.();
    }
  });
});
