// Bench and test helper: a seeded random llama-family checkpoint of a given
// shape, written as a Hugging Face model folder (config.json,
// model.safetensors in name order as transformers writes it, and the default
// model's tokenizer, whose 2048 tokens fix the vocabulary). Never committed:
// it goes under .cache/.
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { layerWeightNames } from '../shared/model/weights.js';
import { type RawTensor, writeSafetensors } from './safetensors-writer.js';

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

/** xorshift32: the same bytes from the same seed, on every machine. */
function uniform(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

/** BF16 values: uniform in ±scale, or all `fill`. */
function bf16(count: number, next: () => number, scale: number, fill?: number): Uint8Array {
  const f = new Float32Array(count);
  for (let i = 0; i < count; i++) f[i] = fill ?? (next() * 2 - 1) * scale;
  const bits = new Uint32Array(f.buffer);
  const out = new Uint16Array(count);
  for (let i = 0; i < count; i++) out[i] = (bits[i] as number) >>> 16;
  return new Uint8Array(out.buffer);
}

/**
 * Writes the folder `dir` for `shape` and `seed` unless it is already there
 * (seed.json records what it holds). Returns `dir`.
 */
export function ensureRandomCheckpoint(dir: string, shape: CheckpointShape, seed: number, tokenizerDir = 'models/austen-2m'): string {
  const stamp = JSON.stringify({ shape, seed, dtype: 'BF16' });
  const stampPath = join(dir, 'seed.json');
  if (existsSync(stampPath) && readFileSync(stampPath, 'utf8') === stamp) return dir;
  const next = uniform(seed);
  const d = shape.hidden;
  const hd = d / shape.heads;
  const kv = shape.kvHeads * hd;
  const tensors = new Map<string, RawTensor>();
  const add = (name: string, dims: number[], fill?: number) => {
    const n = dims.reduce((a, b) => a * b, 1);
    tensors.set(name, { dtype: 'BF16', shape: dims, bytes: bf16(n, next, 1 / Math.sqrt(dims[dims.length - 1] as number), fill) });
  };
  add('model.embed_tokens.weight', [shape.vocab, d]);
  add('model.norm.weight', [d], 1);
  for (let l = 0; l < shape.layers; l++) {
    const n = layerWeightNames(l);
    add(n.inputNorm, [d], 1);
    add(n.postNorm, [d], 1);
    add(n.q, [d, d]);
    add(n.k, [kv, d]);
    add(n.v, [kv, d]);
    add(n.o, [d, d]);
    add(n.gate, [shape.intermediate, d]);
    add(n.up, [shape.intermediate, d]);
    add(n.down, [d, shape.intermediate]);
  }
  // transformers writes tensors in name order: model.layers.1.* then model.layers.10.*, so a stage's layers are not one range.
  const sorted = new Map([...tensors].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const config = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: d,
    intermediate_size: shape.intermediate,
    num_attention_heads: shape.heads,
    num_key_value_heads: shape.kvHeads,
    num_hidden_layers: shape.layers,
    vocab_size: shape.vocab,
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: true,
    hidden_act: 'silu',
    torch_dtype: 'bfloat16',
    bos_token_id: 0,
    eos_token_id: 0,
  };
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  writeFileSync(join(tmp, 'config.json'), `${JSON.stringify(config, null, 1)}\n`);
  writeFileSync(join(tmp, 'model.safetensors'), writeSafetensors(sorted));
  copyFileSync(join(tokenizerDir, 'tokenizer.json'), join(tmp, 'tokenizer.json'));
  writeFileSync(join(tmp, 'seed.json'), stamp);
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return dir;
}
