import { ModelError } from './errors.js';
import { parseRopeScaling, type RopeScaling } from './rope.js';

/** The llama-family dimensions and options that the stage builder needs, read from Hugging Face's config.json. */
export interface ModelConfig {
  readonly architecture: 'llama' | 'qwen2';
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly maxPositions: number;
  readonly rmsNormEps: number;
  readonly ropeTheta: number;
  /** config.json's rope_scaling (llama3, as in Llama-3.2); null for plain rotary positions. */
  readonly ropeScaling: RopeScaling | null;
  readonly tieWordEmbeddings: boolean;
  /** Biases on the q, k and v projections (Qwen2, or llama with attention_bias). */
  readonly qkvBias: boolean;
  /** Bias on the output projection (llama with attention_bias). */
  readonly oBias: boolean;
  readonly eosTokenId: number | null;
  readonly bosTokenId: number | null;
}

const ARCHITECTURES: Record<string, ModelConfig['architecture']> = {
  LlamaForCausalLM: 'llama',
  Qwen2ForCausalLM: 'qwen2',
  MistralForCausalLM: 'llama',
};

/** Parses and checks a config.json; anything this builder cannot run faithfully is refused by name. */
export function parseModelConfig(file: string, raw: unknown): ModelConfig {
  const bad = (detail: string): ModelError => new ModelError('ERR_MODEL_BAD_CONFIG', file, detail);
  const unsupported = (detail: string): ModelError => new ModelError('ERR_MODEL_UNSUPPORTED', file, detail);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad('config is not a JSON object');
  const c = raw as Record<string, unknown>;
  const archs = c.architectures;
  const archName = Array.isArray(archs) && typeof archs[0] === 'string' ? archs[0] : undefined;
  const architecture = archName === undefined ? undefined : ARCHITECTURES[archName];
  if (architecture === undefined) {
    throw unsupported(
      `architecture ${archName ?? `(none; model_type ${String(c.model_type)})`} is not supported; supported: ${Object.keys(ARCHITECTURES).join(', ')}`,
    );
  }
  const int = (key: string, fallback?: number): number => {
    const v = c[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw bad(`${key} must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  };
  const num = (key: string, fallback: number): number => {
    const v = c[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw bad(`${key} must be a positive number, got ${JSON.stringify(v)}`);
    return v;
  };
  const optId = (key: string): number | null => {
    const v = c[key];
    if (v === undefined || v === null) return null;
    if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v;
    if (Array.isArray(v) && typeof v[0] === 'number') return v[0];
    throw bad(`${key} must be a token id, got ${JSON.stringify(v)}`);
  };
  const hiddenSize = int('hidden_size');
  const numHeads = int('num_attention_heads');
  const numKvHeads = int('num_key_value_heads', numHeads);
  const headDim = int('head_dim', Math.floor(hiddenSize / numHeads));
  if (numHeads % numKvHeads !== 0) throw bad(`num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  if (headDim % 2 !== 0) throw bad(`head_dim ${headDim} must be even for rotary positions`);
  const act = c.hidden_act ?? 'silu';
  if (act !== 'silu') throw unsupported(`hidden_act ${String(act)} is not supported (only silu)`);
  const ropeScaling = parseRopeScaling(file, c.rope_scaling);
  if (c.mlp_bias === true) throw unsupported('mlp_bias is not supported');
  if (c.use_sliding_window === true) throw unsupported('sliding-window attention is not supported');
  const attentionBias = c.attention_bias === true;
  return {
    architecture,
    vocabSize: int('vocab_size'),
    hiddenSize,
    intermediateSize: int('intermediate_size'),
    numLayers: int('num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    maxPositions: int('max_position_embeddings', 2048),
    rmsNormEps: num('rms_norm_eps', 1e-6),
    ropeTheta: num('rope_theta', 10000),
    ropeScaling,
    // transformers' LlamaConfig and Qwen2Config default to untied.
    tieWordEmbeddings: c.tie_word_embeddings === true,
    qkvBias: architecture === 'qwen2' || attentionBias,
    oBias: architecture === 'llama' && attentionBias,
    eosTokenId: optId('eos_token_id'),
    bosTokenId: optId('bos_token_id'),
  };
}
