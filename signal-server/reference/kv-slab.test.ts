// Decode steps on slabs (shared/model/kv-slab.ts), on onnxruntime-web's WASM
// backend in Node: the fused graph's new.* outputs are present.* at each row's
// last position; sessions whose caches live in one batch-major buffer give
// bit for bit what each gets alone (one call per step, present.* fetched),
// through growth past a slab's capacity, a roll-back inside a slab, a closed
// session's slot taken by a newcomer, a poisoned row and garbage past a row's
// length, and on stage files built before new.* existed; a runtime returning
// a malformed output changes no cache.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { slabCapacity } from '../../shared/model/kv-slab.js';
import { CachingExecutor, type Feeds, type Float32Tensor, KvCache, type TensorData } from '../../shared/model/pipeline.js';
import { STAGE_IO } from '../../shared/model/stage-graph.js';
import { FUSED_IO } from '../../shared/model/stage-graph-fused.js';
import { StepBatcher } from '../../shared/model/step-batcher.js';
import { goldenModelDir, readGolden } from '../../testing/golden.js';
import { ReferenceRunner } from './reference-runner.js';

const STAGES = 3;
const cacheRoot = mkdtempSync(join(tmpdir(), 'webswarm-slab-'));
afterAll(() => rmSync(cacheRoot, { recursive: true, force: true }));

function ids(tokens: readonly number[]): TensorData {
  return { dtype: 'int64', dims: [1, tokens.length], data: BigInt64Array.from(tokens, (t) => BigInt(t)) };
}

describe.each(['austen-2m', 'tiny-gqa-bias'] as const)('%s, fused stage graphs: decode steps on slabs', (modelId) => {
  let runner: ReferenceRunner;
  const prompts = readGolden(modelId).prompts.map((p) => p.ids);

  beforeAll(async () => {
    runner = await ReferenceRunner.fromModelDir(goldenModelDir(modelId), { stages: STAGES }, cacheRoot, { graph: 'fused' });
  });
  afterAll(async () => {
    await runner?.close();
  });

  /** A session's caches of every stage, held here so that the test can look into them. */
  const caches = () => runner.manifest.stages.map((s) => new KvCache(runner.manifest.model, s.layers, 'fused'));
  /** A step of every stage through the batcher; each stage's output. */
  async function step(b: StepBatcher, cs: KvCache[], tokens: readonly number[]): Promise<Float32Array[]> {
    let carry: TensorData = ids(tokens);
    const outs: Float32Array[] = [];
    for (let s = 0; s < STAGES; s++) {
      carry = await b.step(s, cs[s] as KvCache, carry);
      outs.push((carry as Float32Tensor).data.slice());
    }
    return outs;
  }
  /** The oracle: a session alone, one call per step, present.* fetched. */
  async function alone(script: readonly (readonly number[] | number)[]): Promise<Float32Array[][]> {
    const exec = new CachingExecutor(runner.manifest, runner.stageExecutor, { maxBatch: 1 });
    const outs: Float32Array[][] = [];
    for (const op of script) {
      if (typeof op === 'number') {
        await exec.truncate(1, op);
        continue;
      }
      const row: Float32Array[] = [];
      let carry: TensorData = ids(op);
      for (let s = 0; s < STAGES; s++) {
        carry = await exec.step(1, s, carry);
        row.push((carry as Float32Tensor).data.slice());
      }
      outs.push(row);
    }
    exec.dispose();
    return outs;
  }
  const same = (got: readonly Float32Array[], wanted: readonly Float32Array[] | undefined, what: string) => {
    const want = wanted ?? [];
    expect(want.length, what).toBe(got.length);
    for (const [s, out] of got.entries())
      expect(Buffer.from(out.buffer).equals(Buffer.from((want[s] as Float32Array).buffer)), `${what}, stage ${s}`).toBe(true);
  };
  const pastOf = (c: KvCache, l: number) => c.feeds(1)[STAGE_IO.pastKey(l)] as Float32Tensor;

  it("new.* are present.* at each row's last position, rows of different lengths in one call", async () => {
    const { model } = runner.manifest;
    const entry = runner.manifest.stages[1];
    if (entry === undefined) throw new Error('no stage 1');
    const [b, heads, hd, cap] = [3, model.numKvHeads, model.headDim, 20];
    const lengths = [0, 7, 19];
    const feeds: Feeds = {
      [STAGE_IO.hiddenIn]: {
        dtype: 'float32',
        dims: [b, 1, model.hiddenSize],
        data: Float32Array.from({ length: b * model.hiddenSize }, (_, i) => Math.sin(i)),
      },
      [FUSED_IO.seqlensK]: { dtype: 'int32', dims: [b], data: Int32Array.from(lengths) },
      [FUSED_IO.totalSequenceLength]: { dtype: 'int32', dims: [], data: Int32Array.of(20) },
    };
    for (let l = entry.layers.start; l < entry.layers.end; l++)
      for (const n of [STAGE_IO.pastKey(l), STAGE_IO.pastValue(l)])
        feeds[n] = {
          dtype: 'float32',
          dims: [b, heads, cap, hd],
          data: Float32Array.from({ length: b * heads * cap * hd }, (_, i) => Math.cos(i) / 4),
        };
    const names = entry.outputs.map((o) => o.name);
    const out = await runner.stageExecutor.run(1, feeds, names);
    // Unasked, they are not fetched: a run without a list returns what it always did.
    expect(Object.keys(await runner.stageExecutor.run(1, feeds)).some((n) => n.startsWith('new.'))).toBe(false);
    for (let l = entry.layers.start; l < entry.layers.end; l++) {
      for (const [present, fresh] of [
        [STAGE_IO.presentKey(l), FUSED_IO.newKey(l)],
        [STAGE_IO.presentValue(l), FUSED_IO.newValue(l)],
      ] as const) {
        const p = out[present] as Float32Tensor;
        const n = out[fresh] as Float32Tensor;
        expect(n.dims).toEqual([b, heads, 1, hd]);
        for (let i = 0; i < b; i++)
          for (let h = 0; h < heads; h++) {
            const at = ((i * heads + h) * cap + (lengths[i] as number)) * hd;
            expect([...n.data.subarray((i * heads + h) * hd, (i * heads + h + 1) * hd)]).toEqual([...p.data.subarray(at, at + hd)]);
          }
      }
    }
  });

  it('three sessions in one slab, bit for bit alone, past its capacity, a roll-back inside it, a closed slot taken by a newcomer', async () => {
    const batcher = new StepBatcher(runner.manifest, runner.stageExecutor, 16);
    const [pa, pb] = prompts as [number[], number[]];
    const pc = [5];
    const tok = (seed: number, i: number) => [(seed * 31 + i * 17) % 200];
    const steps = slabCapacity(pa.length + 1) + 4;
    const A = caches();
    const B = caches();
    const C = caches();
    const want = {
      a: await alone([pa, ...Array.from({ length: steps }, (_, i) => tok(1, i))]),
      b: await alone([
        pb,
        ...Array.from({ length: 6 }, (_, i) => tok(2, i)),
        pb.length + 2,
        ...Array.from({ length: 6 }, (_, i) => tok(3, i)),
      ]),
      c: await alone([pc, ...Array.from({ length: steps }, (_, i) => tok(4, i))]),
      d: await alone([pb, ...Array.from({ length: steps - 12 }, (_, i) => tok(5, i))]),
    };
    same(await step(batcher, A, pa), want.a[0], 'A prompt');
    same(await step(batcher, B, pb), want.b[0], 'B prompt');
    same(await step(batcher, C, pc), want.c[0], 'C prompt');
    const slabs0 = batcher.stats.slabSteps;
    for (let i = 0; i < 6; i++) {
      const [a, b, c] = await Promise.all([step(batcher, A, tok(1, i)), step(batcher, B, tok(2, i)), step(batcher, C, tok(4, i))]);
      same(a, want.a[i + 1], `A step ${i}`);
      same(b, want.b[i + 1], `B step ${i}`);
      same(c, want.c[i + 1], `C step ${i}`);
    }
    // Every decode step ran on slabs, the three sessions in one call per stage: their caches are rows of one buffer.
    expect(batcher.stats.slabSteps - slabs0).toBe(6 * 3 * STAGES);
    const slab = pastOf(A[0] as KvCache, 0).data.buffer;
    expect(pastOf(B[0] as KvCache, 0).data.buffer).toBe(slab);
    expect(pastOf(C[0] as KvCache, 0).data.buffer).toBe(slab);
    // B rolls back inside its slot, then steps on with the others.
    for (const c of B) await c.truncate(pb.length + 2);
    for (let i = 0; i < 6; i++) {
      const [a, b, c] = await Promise.all([step(batcher, A, tok(1, i + 6)), step(batcher, B, tok(3, i)), step(batcher, C, tok(4, i + 6))]);
      same(a, want.a[i + 7], `A step ${i + 6}`);
      same(b, want.b[i + 7], `B after its roll-back, step ${i}`);
      same(c, want.c[i + 7], `C step ${i + 6}`);
    }
    // B closes; what its slot holds is now garbage (as a hostile session could have left it), and D takes B's place.
    const old = pastOf(B[0] as KvCache, 0);
    old.data.fill(Number.NaN);
    for (const c of B) c.dispose();
    const D = caches();
    same(await step(batcher, D, pb), want.d[0], 'D prompt');
    for (let i = 0; i < steps - 12; i++) {
      const [a, d, c] = await Promise.all([
        step(batcher, A, tok(1, i + 12)),
        step(batcher, D, tok(5, i)),
        step(batcher, C, tok(4, i + 12)),
      ]);
      same(a, want.a[i + 13], `A step ${i + 12}`);
      same(d, want.d[i + 1], `D step ${i}`);
      same(c, want.c[i + 13], `C step ${i + 12}`);
    }
    // A newcomer is gathered into a new slab: never a view of the closed session's.
    expect(pastOf(D[0] as KvCache, 0).data.buffer).not.toBe(old.data.buffer);
    // A outgrew the slab's first capacity on the way: its slab was gathered again, larger.
    expect(pastOf(A[0] as KvCache, 0).dims[2]).toBeGreaterThan(slabCapacity(pa.length + 1));
  });

  it("garbage past a row's length and a NaN row never reach another row, nor the row's own next steps past what it holds", async () => {
    const batcher = new StepBatcher(runner.manifest, runner.stageExecutor, 16);
    const [pa] = prompts as [number[]];
    const want = await alone([pa, [7], [8], [9]]);
    const [A, B, P] = [caches(), caches(), caches()];
    for (const cs of [A, B, P]) same(await step(batcher, cs, pa), want[0], 'prompt');
    await Promise.all([A, B, P].map((cs) => step(batcher, cs, [7])));
    // Past every row's length in the shared slab: NaN (a stale tail, or another session's left-overs, must never be read).
    for (const cs of [A, B, P])
      for (const [s, c] of cs.entries()) {
        const entry = runner.manifest.stages[s];
        for (let l = entry?.layers.start ?? 0; l < (entry?.layers.end ?? 0); l++) {
          for (const name of [STAGE_IO.pastKey(l), STAGE_IO.pastValue(l)]) {
            const t = c.feeds(1)[name] as Float32Tensor;
            const [, heads, cap, hd] = t.dims as [number, number, number, number];
            for (let h = 0; h < heads; h++) t.data.fill(Number.NaN, (h * cap + c.length) * hd, (h + 1) * cap * hd);
          }
        }
      }
    // P's own cache is poisoned through its input: NaN and 3e38 hidden states into stage 1.
    const d = runner.manifest.model.hiddenSize;
    const poison: TensorData = {
      dtype: 'float32',
      dims: [1, 1, d],
      data: Float32Array.from({ length: d }, (_, i) => (i % 2 ? Number.NaN : 3e38)),
    };
    const h0 = await Promise.all([A, B, P].map((cs) => batcher.step(0, cs[0] as KvCache, ids([8]))));
    const before = batcher.stats.batchedSteps;
    const h1 = await Promise.all([
      batcher.step(1, A[1] as KvCache, h0[0] as Float32Tensor),
      batcher.step(1, B[1] as KvCache, h0[1] as Float32Tensor),
      batcher.step(1, P[1] as KvCache, poison),
    ]);
    expect(batcher.stats.batchedSteps - before, 'the poisoned row shared the call').toBe(3);
    const h2 = await Promise.all([0, 1, 2].map((i) => batcher.step(2, [A, B, P][i]?.[2] as KvCache, h1[i] as Float32Tensor)));
    same(
      [h0[0], h1[0], h2[0]].map((t) => (t as Float32Tensor).data.slice()),
      want[2],
      'A beside the poisoned row',
    );
    same(
      [h0[1], h1[1], h2[1]].map((t) => (t as Float32Tensor).data.slice()),
      want[2],
      'B beside the poisoned row',
    );
    expect(h1[2]?.data.some((v) => !Number.isFinite(v))).toBe(true);
    const [a2, b2] = await Promise.all([step(batcher, A, [9]), step(batcher, B, [9]), step(batcher, P, [9])]);
    same(a2, want[3], 'A next to it again');
    same(b2, want[3], 'B next to it again');
  });

  /** Two sessions' prompts, then three decode steps of both at once: each output bit for bit the same step run alone. */
  async function twoSessionsAsAlone(batcher: StepBatcher): Promise<void> {
    const [pa, pb] = prompts as [number[], number[]];
    const wa = await alone([pa, [3], [4], [5]]);
    const wb = await alone([pb, [6], [7], [8]]);
    const [A, B] = [caches(), caches()];
    same(await step(batcher, A, pa), wa[0], 'A prompt');
    same(await step(batcher, B, pb), wb[0], 'B prompt');
    for (let i = 0; i < 3; i++) {
      const [a, b] = await Promise.all([step(batcher, A, [3 + i]), step(batcher, B, [6 + i])]);
      same(a, wa[i + 1], `A step ${i}`);
      same(b, wb[i + 1], `B step ${i}`);
    }
  }

  it('stages built before new.* (a cached build): slab steps fetch present.* and take each new position from it, bit for bit', async () => {
    const m = runner.manifest;
    const old = { ...m, stages: m.stages.map((e) => ({ ...e, outputs: e.outputs.filter((o) => !o.name.startsWith('new.')) })) };
    const asked: string[][] = [];
    const recording = {
      run: async (stage: number, feeds: Feeds, fetches?: readonly string[]) => {
        asked.push([...(fetches ?? [])]);
        return runner.stageExecutor.run(stage, feeds, fetches);
      },
    };
    const batcher = new StepBatcher(old, recording, 16);
    await twoSessionsAsAlone(batcher);
    expect(batcher.stats.slabSteps).toBe(2 * 3 * STAGES);
    const slabCalls = asked.filter((f) => f.length > 0);
    expect(slabCalls.length).toBeGreaterThan(0);
    for (const f of slabCalls) {
      expect(f.some((n) => n.startsWith('new.'))).toBe(false);
      expect(f.some((n) => n.startsWith('present.'))).toBe(true);
    }
  });

  it('a runtime returning a malformed new.* changes no cache: the steps run again alone, each bit for bit', async () => {
    let broken = 0;
    const lying = {
      run: async (stage: number, feeds: Feeds, fetches?: readonly string[]) => {
        const out = await runner.stageExecutor.run(stage, feeds, fetches);
        const key = Object.keys(out).find((n) => n.startsWith('new.'));
        if (key === undefined) return out;
        broken++;
        const t = out[key] as Float32Tensor;
        return { ...out, [key]: { ...t, dims: [t.dims[0] as number, 1, 1, 1], data: t.data.subarray(0, t.dims[0]) } };
      },
    };
    const batcher = new StepBatcher(runner.manifest, lying, 16);
    await twoSessionsAsAlone(batcher);
    expect(broken).toBeGreaterThan(0);
    expect(batcher.stats.slabSteps).toBe(0);
  });
});
