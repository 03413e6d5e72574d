// Checkpoints people have: seeded random checkpoints with the config.json key
// sets of SmolLM, Qwen2.5, TinyLlama and Llama-3.2 (sizes cut down) are loaded,
// cut into stages and run by the reference runner, and compared with the plain
// float64 reference of testing/plain-llama.ts, which shares no code with the
// builder. The plain reference itself is first checked against PyTorch's golden
// logits, so that it is an oracle worth the name.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildStages } from '../../shared/model/build-stages.js';
import { parseModelConfig } from '../../shared/model/config.js';
import type { StageExecutor } from '../../shared/model/pipeline.js';
import { PipelineSession } from '../../shared/model/pipeline.js';
import { ropeInverseFrequencies } from '../../shared/model/rope.js';
import { toFloat32 } from '../../shared/model/safetensors.js';
import { GREEDY } from '../../shared/model/sampling.js';
import { maxAbs, maxAbsDifference } from '../../shared/vote/tolerance.js';
import { GOLDEN_MODEL_IDS, goldenModelDir, readGolden } from '../../testing/golden.js';
import { type PlainConfig, plainForward, plainGreedy, plainInverseFrequencies } from '../../testing/plain-llama.js';
import {
  CHECKPOINT_SHAPES,
  type HfConfig,
  LLAMA32_1B,
  QWEN25_05B,
  randomCheckpoint,
  randomIds,
  writeCheckpointFolder,
} from '../../testing/random-checkpoint.js';
import { readModelFolder } from '../models/model-folder.js';
import { OrtExecutor } from './ort-executor.js';
import { ReferenceRunner } from './reference-runner.js';

/** Stages against the plain reference: float32 against float64, relative to the largest logit. */
const RELATIVE_BOUND = 1e-4;
const PROMPT_TOKENS = 12;
const GREEDY_TOKENS = 8;
/** Building and running a few MB of random weights on a shared 2-core machine. */
const SLOW_MS = 120_000;

const work = mkdtempSync(join(tmpdir(), 'webswarm-checkpoints-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function relDiff(a: ArrayLike<number>, ref: ArrayLike<number>): number {
  return maxAbsDifference(a, ref) / Math.max(1, maxAbs(ref));
}

/** The plain reference's logits [S, vocab] at the last position: the row the stages' head computes. */
function lastLogits(logits: Float64Array, vocab: number): Float64Array {
  return logits.subarray(logits.length - vocab);
}

describe('the plain reference', () => {
  it.each(GOLDEN_MODEL_IDS)("gives PyTorch's logits for %s (within 1e-4)", (id) => {
    const folder = readModelFolder(goldenModelDir(id));
    const config = JSON.parse(readFileSync(join(folder.dir, 'config.json'), 'utf8')) as PlainConfig;
    const weights = new Map([...folder.tensors].map(([n, t]) => [n, toFloat32(t)]));
    for (const p of readGolden(id).prompts) {
      expect(maxAbsDifference(plainForward(config, weights, p.ids).logits, p.logits), `${id}: "${p.text}"`).toBeLessThan(1e-4);
    }
  });

  it("computes llama3 inverse frequencies by its own path, equal to the builder's for Llama-3.2-1B's head_dim 64", () => {
    const full = { ...LLAMA32_1B, head_dim: 64, hidden_size: 2048 };
    const builder = ropeInverseFrequencies(parseModelConfig('config.json', full));
    const plain = plainInverseFrequencies(full);
    expect(builder.length).toBe(32);
    expect(relDiff(builder, plain)).toBeLessThan(1e-6);
    // All three bands are there: kept (fastest), divided by 32 (slowest), blended between.
    expect(builder[0]).toBe(1);
    expect(builder[31]).toBeCloseTo(500000 ** (-62 / 64) / 32, 12);
    const unscaled = plainInverseFrequencies({ ...full, rope_scaling: null });
    const ratio = plain.map((f, i) => f / (unscaled[i] as number));
    expect(ratio.filter((r) => r === 1).length).toBeGreaterThan(0);
    expect(ratio.filter((r) => Math.abs(r - 1 / 32) < 1e-12).length).toBeGreaterThan(0);
    expect(ratio.filter((r) => r < 1 && r > 1 / 32 + 1e-9).length).toBeGreaterThan(0);
  });
});

/** Writes a seeded random checkpoint of `config` into its own folder; returns the folder and the weights. */
function makeCheckpoint(name: string, config: HfConfig, seed: number): { dir: string; weights: Map<string, Float32Array> } {
  const ckpt = randomCheckpoint(config, seed);
  const dir = join(work, name);
  writeCheckpointFolder(dir, ckpt);
  return { dir, weights: ckpt.weights };
}

/** Stages of the folder against the plain reference: prompt logits and greedy tokens. */
async function expectLikePlain(
  label: string,
  dir: string,
  config: HfConfig,
  weights: Map<string, Float32Array>,
  stages: number,
): Promise<void> {
  const ids = randomIds(config.vocab_size, PROMPT_TOKENS, 7);
  const plain = plainForward(config, weights, ids);
  const runner = await ReferenceRunner.fromModelDir(dir, { stages }, join(work, 'stages'));
  try {
    const logits = await runner.session().forward(ids);
    expect(logits.length, `${label}: one row`).toBe(config.vocab_size);
    expect(relDiff(logits, lastLogits(plain.logits, config.vocab_size)), `${label}, ${stages} stages: logits`).toBeLessThan(RELATIVE_BOUND);
    const r = await runner.generateIds(ids, GREEDY_TOKENS, GREEDY);
    const expected = plainGreedy(config, weights, ids, GREEDY_TOKENS);
    // A random checkpoint may hit its end-of-sequence token: the runner stops there.
    const eos = runner.manifest.model.eosTokenId;
    const cut = r.finishReason === 'stop' ? expected.indexOf(eos ?? -1) : expected.length;
    expect(r.tokens, `${label}, ${stages} stages: greedy`).toEqual(expected.slice(0, cut));
  } finally {
    await runner.close();
  }
}

describe.each(Object.entries(CHECKPOINT_SHAPES))('a %s-shaped random checkpoint', (name, config) => {
  it(
    "loads, and its stages give the plain reference's logits and greedy tokens (2 stages, one layer per stage)",
    async () => {
      const { dir, weights } = makeCheckpoint(name, config, 11);
      expect(() => parseModelConfig('config.json', config)).not.toThrow();
      await expectLikePlain(name, dir, config, weights, 2);
      await expectLikePlain(name, dir, config, weights, config.num_hidden_layers);
    },
    SLOW_MS,
  );
});

describe('llama3 rope scaling', () => {
  // Llama-3.2's scaling keeps the fastest frequencies, so over a short prompt it
  // moves little; an original context of 64 positions puts the blend and the
  // division where a dozen positions feel them.
  const stretched: HfConfig = {
    ...LLAMA32_1B,
    rope_scaling: { ...(LLAMA32_1B.rope_scaling as Record<string, unknown>), original_max_position_embeddings: 64 },
  };

  it(
    'is computed alike by the stages and the plain reference, and a reference without it disagrees',
    async () => {
      const { dir, weights } = makeCheckpoint('llama3-stretched', stretched, 5);
      await expectLikePlain('stretched llama3', dir, stretched, weights, 2);
      const ids = randomIds(stretched.vocab_size, PROMPT_TOKENS, 7);
      const runner = await ReferenceRunner.fromModelDir(dir, { stages: 1 }, join(work, 'stages'));
      try {
        const logits = await runner.session().forward(ids);
        const unscaled = lastLogits(plainForward({ ...stretched, rope_scaling: null }, weights, ids).logits, stretched.vocab_size);
        const real = lastLogits(plainForward(LLAMA32_1B, weights, ids).logits, stretched.vocab_size);
        // The test can fail: scaling matters here by far more than the bound.
        expect(relDiff(logits, unscaled)).toBeGreaterThan(100 * RELATIVE_BOUND);
        expect(relDiff(logits, real)).toBeGreaterThan(100 * RELATIVE_BOUND);
      } finally {
        await runner.close();
      }
    },
    SLOW_MS,
  );
});

describe('a Qwen2.5-0.5B-shaped random checkpoint (hidden 896, 14/2 heads, MLP 4864; 3 layers, vocab cut to 1024)', () => {
  const config: HfConfig = { ...QWEN25_05B, hidden_size: 896, intermediate_size: 4864, num_hidden_layers: 3, vocab_size: 1024 };

  it(
    'matches the plain reference layer by layer: one stage per layer, each output against that layer',
    async () => {
      const { dir, weights } = makeCheckpoint('qwen2.5-0.5b-full-width', config, 3);
      const folder = readModelFolder(dir);
      const { manifest, files } = await buildStages({
        modelId: folder.modelId,
        config: folder.config,
        weightsFile: folder.weightsFile,
        tensors: folder.tensors,
        tokenizerJson: folder.tokenizerJson,
        tokenizerConfigJson: null,
        partition: { stages: 3 },
      });
      const ort = await OrtExecutor.create(manifest.stages.map((s) => files.get(s.file) as Uint8Array));
      try {
        const outputs: Float32Array[] = [];
        const recording: StageExecutor = {
          async run(stage, feeds) {
            const out = await ort.run(stage, feeds);
            const main = out[stage === 2 ? 'logits' : 'hidden_states'];
            outputs[stage] = main?.data as Float32Array;
            return out;
          },
        };
        const ids = randomIds(config.vocab_size, 8, 9);
        await new PipelineSession(manifest, recording).forward(ids);
        const plain = plainForward(config, weights, ids);
        for (let l = 0; l < 2; l++) {
          expect(relDiff(outputs[l] as Float32Array, plain.hidden[l] as Float64Array), `layer ${l} hidden states`).toBeLessThan(
            RELATIVE_BOUND,
          );
        }
        expect(
          relDiff(outputs[2] as Float32Array, lastLogits(plain.logits, config.vocab_size)),
          'layer 2 + norm + head: logits',
        ).toBeLessThan(RELATIVE_BOUND);
      } finally {
        await ort.release();
      }
    },
    SLOW_MS,
  );
});
