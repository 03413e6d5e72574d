// A WebGPU volunteer's stage graph (shared/model/onnx-prune.ts through
// stageGraphFor): the fused form without its new.* outputs and the nodes only
// they need, cut from the file's bytes. Run here on onnxruntime-web's WASM
// backend (the same graph WebGPU loads; e2e/gpu-kv-cache.spec.ts runs it on
// WebGPU): every stage's output bit for bit the unpruned graph's, through a
// prompt and decode steps, and the golden tokens. Bytes that are not a
// well-formed model are refused with a clear error.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-web';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StageManifest } from '../../shared/model/manifest.js';
import { MAX_FIELDS, pruneOutputs } from '../../shared/model/onnx-prune.js';
import { CachingExecutor, type Float32Tensor, type TensorData } from '../../shared/model/pipeline.js';
import { isNewKvOutput, stageGraphFor } from '../../shared/model/session-options.js';
import { goldenModelDir, readGolden } from '../../testing/golden.js';
import { ensureStages } from '../models/model-folder.js';
import { OrtExecutor } from './ort-executor.js';

const MODEL = 'austen-2m';
const STAGES = 3;
const cacheRoot = mkdtempSync(join(tmpdir(), 'webswarm-prune-'));
afterAll(() => rmSync(cacheRoot, { recursive: true, force: true }));

/** The stage files of a build, as bytes. */
function stageFiles(dir: string, manifest: StageManifest): Uint8Array[] {
  return manifest.stages.map((s) => new Uint8Array(readFileSync(join(dir, s.file))));
}

/** A model's output names, as onnxruntime reads them. */
function outputNames(bytes: Uint8Array): Promise<readonly string[]> {
  return ort.InferenceSession.create(bytes, { executionProviders: ['wasm'], logSeverityLevel: 3 }).then(async (s) => {
    const names = [...s.outputNames];
    await s.release();
    return names;
  });
}

describe('a WebGPU stage graph without new.* (onnx-prune.ts)', () => {
  let fused: { dir: string; manifest: StageManifest };
  let files: Uint8Array[];

  beforeAll(async () => {
    // One thread, as OrtExecutor runs it (several take Node tens of seconds to start).
    ort.env.wasm.numThreads = 1;
    fused = await ensureStages(goldenModelDir(MODEL), { stages: STAGES }, cacheRoot, { graph: 'fused' });
    files = stageFiles(fused.dir, fused.manifest);
  });

  it('drops new.* and the nodes that computed only them: two a layer and two a stage', async () => {
    for (const [i, entry] of fused.manifest.stages.entries()) {
      const layers = entry.layers.end - entry.layers.start;
      const bytes = files[i] as Uint8Array;
      const pruned = pruneOutputs(bytes, isNewKvOutput);
      expect(pruned.outputs, `stage ${i}`).toBe(2 * layers);
      // GatherElements of present.key and .value a layer; the Unsqueeze and Expand of seqlens_k a stage.
      expect(pruned.nodes, `stage ${i}`).toBe(2 * layers + 2);
      expect(pruned.model.length).toBeLessThan(bytes.length);
      expect(Buffer.from(stageGraphFor('webgpu', bytes)).equals(pruned.model)).toBe(true);
      const names = await outputNames(pruned.model);
      expect(names.filter(isNewKvOutput)).toEqual([]);
      expect(names).toEqual(entry.outputs.map((o) => o.name).filter((n) => !isNewKvOutput(n)));
      expect((await outputNames(bytes)).filter(isNewKvOutput)).toHaveLength(2 * layers);
    }
  });

  it('leaves the bytes as they are where there is nothing to drop: WASM, the plain form, a pruned graph', async () => {
    const bytes = files[1] as Uint8Array;
    expect(stageGraphFor('wasm', bytes)).toBe(bytes);
    const plain = await ensureStages(goldenModelDir(MODEL), { stages: STAGES }, cacheRoot, { graph: 'plain' });
    const plainBytes = stageFiles(plain.dir, plain.manifest)[1] as Uint8Array;
    expect(stageGraphFor('webgpu', plainBytes)).toBe(plainBytes);
    const once = stageGraphFor('webgpu', bytes);
    expect(stageGraphFor('webgpu', once)).toBe(once);
  });

  it("every stage's output is the unpruned graph's, bit for bit, through a prompt and decode steps; the golden tokens", async () => {
    const golden = readGolden(MODEL);
    const full = await OrtExecutor.create(files);
    const pruned = await OrtExecutor.create(files.map((b) => stageGraphFor('webgpu', b)));
    try {
      // One call a step each, present.* fed back (the path a WebGPU volunteer's cache takes; new.* are never asked for).
      const a = new CachingExecutor(fused.manifest, full, { maxBatch: 1 });
      const b = new CachingExecutor(fused.manifest, pruned, { maxBatch: 1 });
      for (const [k, prompt] of golden.prompts.slice(0, 2).entries()) {
        let tokens = [...prompt.ids];
        const greedy: number[] = [];
        for (let step = 0; step < 6; step++) {
          let x: TensorData = { dtype: 'int64', dims: [1, tokens.length], data: BigInt64Array.from(tokens, BigInt) };
          let y: TensorData = x;
          for (let s = 0; s < STAGES; s++) {
            const want = (await a.step(k, s, x)) as Float32Tensor;
            const got = (await b.step(k, s, y)) as Float32Tensor;
            expect(got.dims).toEqual(want.dims);
            expect(Buffer.from(got.data.buffer).equals(Buffer.from(want.data.buffer)), `prompt ${k}, step ${step}, stage ${s}`).toBe(true);
            x = want;
            y = got;
          }
          const logits = (y as Float32Tensor).data;
          const vocab = fused.manifest.model.vocabSize;
          const row = logits.subarray(logits.length - vocab);
          let best = 0;
          for (let v = 1; v < vocab; v++) if ((row[v] as number) > (row[best] as number)) best = v;
          greedy.push(best);
          tokens = [best];
        }
        expect(greedy).toEqual(prompt.greedy.slice(0, greedy.length));
      }
      a.dispose();
      b.dispose();
    } finally {
      await full.release();
      await pruned.release();
    }
  });

  it('random damage to a stage file is pruned or refused by name, never another error (300 damaged copies)', () => {
    const bytes = files[1] as Uint8Array;
    let seed = 7;
    const next = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    let refused = 0;
    for (let i = 0; i < 300; i++) {
      // The protobuf's structure is in its first bytes and between the weights: damage there, or cut the file short.
      const copy = i % 3 === 0 ? bytes.slice(0, next(bytes.length)) : bytes.slice();
      if (i % 3 !== 0) for (let k = 0; k <= next(8); k++) copy[next(i % 3 === 1 ? 4096 : copy.length)] = next(256);
      try {
        expect(pruneOutputs(copy, isNewKvOutput).model).toBeInstanceOf(Uint8Array);
      } catch (e) {
        expect(e, String(e)).toBeInstanceOf(RangeError);
        expect(String(e)).toMatch(/not a well-formed ONNX model: .* at byte \d+/);
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(50);
  });

  it('refuses bytes that are not a well-formed model with a clear error, and names the place', () => {
    const bytes = files[0] as Uint8Array;
    // Cut inside the graph: its length runs past the end.
    expect(() => pruneOutputs(bytes.subarray(0, 1000), isNewKvOutput)).toThrow(/not a well-formed ONNX model: field 7 running past/);
    // A varint that never ends.
    expect(() => pruneOutputs(new Uint8Array(12).fill(0xff), isNewKvOutput)).toThrow(/not a well-formed ONNX model/);
    // Wire types 3 and 4 (groups), 6 and 7 are not in an ONNX model.
    expect(() => pruneOutputs(Uint8Array.of(0x0b), isNewKvOutput)).toThrow(/wire type 3 at byte 0/);
    // Field number 0.
    expect(() => pruneOutputs(Uint8Array.of(0x00, 0x01), isNewKvOutput)).toThrow(/field number 0/);
    // No graph at all: nothing to drop.
    const empty = Uint8Array.of(0x08, 0x08);
    expect(pruneOutputs(empty, isNewKvOutput).model).toBe(empty);
    // A name that is not UTF-8.
    const badName = Uint8Array.of(0x3a, 0x05, 0x62, 0x03, 0x0a, 0x01, 0xff);
    expect(() => pruneOutputs(badName, () => true)).toThrow(/a name that is not UTF-8 at byte 6/);
  });

  it('refuses a message of more than MAX_FIELDS fields, in the model or in its graph, before it holds them (a crafted file cost ~40× its size in heap)', () => {
    // Two-byte fields (field 1, varint 0): a few MB of them were a few hundred MB of objects.
    const tiny = (n: number) => {
      const b = new Uint8Array(2 * n);
      for (let i = 0; i < b.length; i += 2) b[i] = 0x08;
      return b;
    };
    expect(() => pruneOutputs(tiny(MAX_FIELDS + 1), () => true)).toThrow(
      new RegExp(`more than ${MAX_FIELDS} fields in one message at byte ${2 * MAX_FIELDS}`),
    );
    const inner = tiny(MAX_FIELDS + 1);
    // The graph (field 7) holding them: its length as a varint.
    const length: number[] = [];
    for (let v = inner.length; ; v = Math.floor(v / 128)) {
      length.push(v >= 128 ? (v % 128) | 0x80 : v);
      if (v < 128) break;
    }
    const model = new Uint8Array(1 + length.length + inner.length);
    model.set([0x3a, ...length]);
    model.set(inner, 1 + length.length);
    expect(() => pruneOutputs(model, () => true)).toThrow(/more than \d+ fields in one message/);
    // At the bound, accepted: nothing to drop, the same bytes.
    const atBound = tiny(MAX_FIELDS);
    expect(pruneOutputs(atBound, () => true).model).toBe(atBound);
  });
});
