// A seeded random checkpoint in Hugging Face's format, of a real model's
// shape, for benchmarks: written once into .cache/ (never committed), with
// the default model's tokenizer (its 2048 tokens are the cut vocabulary).
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { layerWeightNames } from '../shared/model/weights.js';
import { type RawTensor, writeSafetensors } from '../testing/safetensors-writer.js';

export interface CheckpointShape {
  readonly id: string;
  readonly layers: number;
  readonly hidden: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly intermediate: number;
  readonly vocab: number;
  readonly maxPositions: number;
}

/** SmolLM-135M's shape (30 layers, hidden 576, 9 heads / 3 KV heads, intermediate 1536), vocabulary cut to 2048. */
export const SMOLLM_135M_SHAPE: CheckpointShape = {
  id: 'smollm-135m-random',
  layers: 30,
  hidden: 576,
  heads: 9,
  kvHeads: 3,
  intermediate: 1536,
  vocab: 2048,
  maxPositions: 2048,
};

/** mulberry32 + Box–Muller: the same weights on every machine. */
function normals(seed: number): () => number {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

/** The folder of a random checkpoint of `shape` under `root`, written on first use. */
export function ensureRandomCheckpoint(root: string, shape: CheckpointShape, tokenizerFrom = 'models/austen-2m'): string {
  const dir = join(root, shape.id);
  if (existsSync(join(dir, 'model.safetensors'))) return dir;
  const random = normals(0x5eed);
  const tensors = new Map<string, RawTensor>();
  const add = (name: string, dims: number[], fill: 'random' | 'ones') => {
    const n = dims.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = fill === 'ones' ? 1 : 0.02 * random();
    tensors.set(name, { dtype: 'F32', shape: dims, bytes: new Uint8Array(data.buffer) });
  };
  const d = shape.hidden;
  const hd = d / shape.heads;
  add('model.embed_tokens.weight', [shape.vocab, d], 'random');
  for (let l = 0; l < shape.layers; l++) {
    const n = layerWeightNames(l);
    add(n.inputNorm, [d], 'ones');
    add(n.postNorm, [d], 'ones');
    add(n.q, [shape.heads * hd, d], 'random');
    add(n.k, [shape.kvHeads * hd, d], 'random');
    add(n.v, [shape.kvHeads * hd, d], 'random');
    add(n.o, [d, shape.heads * hd], 'random');
    add(n.gate, [shape.intermediate, d], 'random');
    add(n.up, [shape.intermediate, d], 'random');
    add(n.down, [d, shape.intermediate], 'random');
  }
  add('model.norm.weight', [d], 'ones');
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  writeFileSync(join(tmp, 'model.safetensors'), writeSafetensors(tensors));
  const config = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: shape.vocab,
    hidden_size: d,
    intermediate_size: shape.intermediate,
    num_hidden_layers: shape.layers,
    num_attention_heads: shape.heads,
    num_key_value_heads: shape.kvHeads,
    hidden_act: 'silu',
    max_position_embeddings: shape.maxPositions,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: true,
    bos_token_id: 0,
    eos_token_id: null,
  };
  writeFileSync(join(tmp, 'config.json'), `${JSON.stringify(config, null, 1)}\n`);
  copyFileSync(join(tokenizerFrom, 'tokenizer.json'), join(tmp, 'tokenizer.json'));
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  renameSync(tmp, dir);
  return dir;
}
