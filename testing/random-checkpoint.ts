// Test and bench helper: seeded random checkpoints in the shapes people
// download. Each config carries the real config.json's key set of its model
// (values as published, except the sizes, cut down so tests stay fast), so
// that loading is tested against what those folders contain; benches write
// full-size ones (ensureRandomCheckpoint) under .cache/, never committed.
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { seededRandom } from '../shared/model/sampling.js';
import type { PlainConfig } from './plain-llama.js';
import { type RawTensor, writeSafetensors } from './safetensors-writer.js';

export type HfConfig = PlainConfig & Record<string, unknown>;

/** A tokenizer.json any of these checkpoints can be served with (2048 tokens). */
export const TOKENIZER_SOURCE = 'models/austen-2m/tokenizer.json';

/** HuggingFaceTB/SmolLM-135M: llama, tied embeddings, 9/3 heads (sizes cut: hidden 144, 3 layers). */
export const SMOLLM_135M: HfConfig = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 0,
  eos_token_id: 0,
  hidden_act: 'silu',
  hidden_size: 144,
  initializer_range: 0.02,
  intermediate_size: 384,
  max_position_embeddings: 2048,
  model_type: 'llama',
  num_attention_heads: 9,
  num_hidden_layers: 3,
  num_key_value_heads: 3,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: null,
  rope_theta: 10000.0,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  transformers_version: '4.40.1',
  use_cache: true,
  vocab_size: 2048,
};

/** Qwen/Qwen2.5-0.5B: qwen2, q/k/v biases, tied, 14/2 heads (sizes cut: head_dim 8, 2 layers). */
export const QWEN25_05B: HfConfig = {
  architectures: ['Qwen2ForCausalLM'],
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151643,
  hidden_act: 'silu',
  hidden_size: 112,
  initializer_range: 0.02,
  intermediate_size: 304,
  max_position_embeddings: 32768,
  max_window_layers: 24,
  model_type: 'qwen2',
  num_attention_heads: 14,
  num_hidden_layers: 2,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  sliding_window: 32768,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  transformers_version: '4.40.1',
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 2048,
};

/** Qwen/Qwen2.5-7B: qwen2 as above but untied, 28/4 heads (sizes cut: head_dim 8, 2 layers). */
export const QWEN25_7B: HfConfig = {
  ...QWEN25_05B,
  hidden_size: 224,
  intermediate_size: 320,
  max_position_embeddings: 131072,
  max_window_layers: 28,
  num_attention_heads: 28,
  num_key_value_heads: 4,
  sliding_window: 131072,
  tie_word_embeddings: false,
  transformers_version: '4.43.1',
};

/** TinyLlama/TinyLlama-1.1B-Chat-v1.0: llama, untied, GQA 32/4 (sizes cut: head_dim 8, 2 layers; 352 is not a multiple of 32). */
export const TINYLLAMA_11B: HfConfig = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: 'silu',
  hidden_size: 256,
  initializer_range: 0.02,
  intermediate_size: 352,
  max_position_embeddings: 2048,
  model_type: 'llama',
  num_attention_heads: 32,
  num_hidden_layers: 2,
  num_key_value_heads: 4,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: null,
  rope_theta: 10000.0,
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  transformers_version: '4.35.0',
  use_cache: true,
  vocab_size: 2048,
};

/** meta-llama/Llama-3.2-1B: llama, tied, 32/8 heads, rope_scaling llama3 (sizes cut: head_dim 16, 2 layers). */
export const LLAMA32_1B: HfConfig = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 128000,
  eos_token_id: 128001,
  head_dim: 16,
  hidden_act: 'silu',
  hidden_size: 512,
  initializer_range: 0.02,
  intermediate_size: 256,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: 'llama',
  num_attention_heads: 32,
  num_hidden_layers: 2,
  num_key_value_heads: 8,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: { factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  rope_theta: 500000.0,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  transformers_version: '4.45.0.dev0',
  use_cache: true,
  vocab_size: 2048,
};

/** The shapes the loader promises, by name. */
export const CHECKPOINT_SHAPES: Readonly<Record<string, HfConfig>> = {
  'SmolLM-135M': SMOLLM_135M,
  'Qwen2.5-0.5B': QWEN25_05B,
  'Qwen2.5-7B': QWEN25_7B,
  'TinyLlama-1.1B': TINYLLAMA_11B,
  'Llama-3.2-1B': LLAMA32_1B,
};

/** Rounds float32 values to bfloat16 (nearest, ties to even) in place; returns the 16-bit patterns. */
function roundToBf16(v: Float32Array): Uint16Array {
  const bits = new Uint32Array(v.buffer, v.byteOffset, v.length);
  const out = new Uint16Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const b = bits[i] as number;
    const r = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
    out[i] = r;
    bits[i] = r << 16;
  }
  return out;
}

/** The tensors a checkpoint of this config holds, [name, shape]. */
export function checkpointTensorShapes(c: HfConfig): [string, number[]][] {
  const D = c.hidden_size;
  const H = c.num_attention_heads;
  const KV = c.num_key_value_heads ?? H;
  const hd = c.head_dim ?? D / H;
  const I = c.intermediate_size;
  const qkvBias = c.model_type === 'qwen2' || c.attention_bias === true;
  const out: [string, number[]][] = [['model.embed_tokens.weight', [c.vocab_size, D]]];
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    out.push([`${p}.input_layernorm.weight`, [D]], [`${p}.post_attention_layernorm.weight`, [D]]);
    out.push([`${p}.self_attn.q_proj.weight`, [H * hd, D]], [`${p}.self_attn.k_proj.weight`, [KV * hd, D]]);
    out.push([`${p}.self_attn.v_proj.weight`, [KV * hd, D]], [`${p}.self_attn.o_proj.weight`, [D, H * hd]]);
    if (qkvBias)
      out.push(
        [`${p}.self_attn.q_proj.bias`, [H * hd]],
        [`${p}.self_attn.k_proj.bias`, [KV * hd]],
        [`${p}.self_attn.v_proj.bias`, [KV * hd]],
      );
    out.push([`${p}.mlp.gate_proj.weight`, [I, D]], [`${p}.mlp.up_proj.weight`, [I, D]], [`${p}.mlp.down_proj.weight`, [D, I]]);
  }
  out.push(['model.norm.weight', [D]]);
  if (c.tie_word_embeddings !== true) out.push(['lm_head.weight', [c.vocab_size, D]]);
  return out;
}

export interface RandomCheckpoint {
  readonly config: HfConfig;
  /** The weights' values exactly as stored (already rounded to the checkpoint's dtype). */
  readonly weights: Map<string, Float32Array>;
}

/**
 * Seeded random weights for a config: Linear weights uniform with variance
 * 1/fan_in (so activations stay of order 1 and greedy choices are clear-cut),
 * norm weights near 1, biases small, embeddings in [−1, 1).
 */
export function randomCheckpoint(config: HfConfig, seed: number): RandomCheckpoint {
  const rnd = seededRandom(seed);
  const weights = new Map<string, Float32Array>();
  for (const [name, shape] of checkpointTensorShapes(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const v = new Float32Array(n);
    if (name.endsWith('norm.weight')) for (let i = 0; i < n; i++) v[i] = 1 + 0.4 * (rnd() - 0.5);
    else if (name.endsWith('.bias')) for (let i = 0; i < n; i++) v[i] = 0.2 * (rnd() - 0.5);
    else if (name === 'model.embed_tokens.weight') for (let i = 0; i < n; i++) v[i] = 2 * rnd() - 1;
    else {
      const a = Math.sqrt(3 / (shape[1] as number));
      for (let i = 0; i < n; i++) v[i] = a * (2 * rnd() - 1);
    }
    weights.set(name, v);
  }
  return { config, weights };
}

/**
 * Writes a Hugging Face folder: config.json, model.safetensors in the config's
 * torch_dtype (bfloat16 values are rounded in `ckpt.weights` too, so they stay
 * exactly what is stored) and a tokenizer.json. `nameOrder` writes the tensors
 * sorted by name, as transformers does (model.layers.1.* then
 * model.layers.10.*, so a stage's layers are not one byte range).
 */
export function writeCheckpointFolder(
  dir: string,
  ckpt: RandomCheckpoint,
  options: { nameOrder?: boolean; tokenizer?: string } = {},
): void {
  mkdirSync(dir, { recursive: true });
  const bf16 = ckpt.config.torch_dtype === 'bfloat16';
  const shapes = checkpointTensorShapes(ckpt.config);
  if (options.nameOrder === true) shapes.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const tensors = new Map<string, RawTensor>();
  for (const [name, shape] of shapes) {
    const v = ckpt.weights.get(name) as Float32Array;
    const bytes = bf16 ? new Uint8Array(roundToBf16(v).buffer) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    tensors.set(name, { dtype: bf16 ? 'BF16' : 'F32', shape, bytes });
  }
  writeFileSync(join(dir, 'config.json'), `${JSON.stringify(ckpt.config, null, 2)}\n`);
  writeFileSync(join(dir, 'model.safetensors'), writeSafetensors(tensors));
  copyFileSync(options.tokenizer ?? TOKENIZER_SOURCE, join(dir, 'tokenizer.json'));
}

/** A llama checkpoint's size, for benches that want a real model's shape rather than a cut-down config. */
export interface CheckpointShape {
  readonly layers: number;
  readonly hidden: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly intermediate: number;
  readonly vocab: number;
}

/** SmolLM-135M's shape (30 layers, hidden 576, 9 query and 3 key/value heads, SwiGLU 1536, tied embeddings), its vocabulary cut to the default tokenizer's 2048. */
export const SMOLLM_135M_SHAPE: CheckpointShape = { layers: 30, hidden: 576, heads: 9, kvHeads: 3, intermediate: 1536, vocab: 2048 };

/** SMOLLM_135M's config.json at `shape`'s sizes, stored as bfloat16. */
export function shapedConfig(shape: CheckpointShape): HfConfig {
  return {
    ...SMOLLM_135M,
    hidden_size: shape.hidden,
    intermediate_size: shape.intermediate,
    num_attention_heads: shape.heads,
    num_key_value_heads: shape.kvHeads,
    num_hidden_layers: shape.layers,
    vocab_size: shape.vocab,
  };
}

/**
 * Writes the folder `dir` (tensors in name order, bfloat16) for `shape` and
 * `seed` unless it is already there (seed.json records what it holds);
 * written beside and renamed, so an interrupted write is never taken for a
 * checkpoint. Returns `dir`.
 */
export function ensureRandomCheckpoint(dir: string, shape: CheckpointShape, seed: number, tokenizerDir = 'models/austen-2m'): string {
  const stamp = JSON.stringify({ shape, seed, dtype: 'BF16', generator: 'randomCheckpoint' });
  const stampPath = join(dir, 'seed.json');
  if (existsSync(stampPath) && readFileSync(stampPath, 'utf8') === stamp) return dir;
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  writeCheckpointFolder(tmp, randomCheckpoint(shapedConfig(shape), seed), {
    nameOrder: true,
    tokenizer: join(tokenizerDir, 'tokenizer.json'),
  });
  writeFileSync(join(tmp, 'seed.json'), stamp);
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return dir;
}

/** Seeded random token ids in [0, vocab). */
export function randomIds(vocab: number, n: number, seed: number): number[] {
  const rnd = seededRandom(seed);
  return Array.from({ length: n }, () => Math.floor(rnd() * vocab));
}
