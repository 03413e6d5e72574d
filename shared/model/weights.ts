import type { ModelConfig } from './config.js';
import { ModelError } from './errors.js';
import { type TensorInfo, toFloat32 } from './safetensors.js';

export interface Float32Weight {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/**
 * Reads named weights of a checkpoint as float32, checking each one's presence
 * and shape against the config. `file` names the safetensors file in errors.
 */
export class WeightReader {
  constructor(
    private readonly file: string,
    private readonly tensors: ReadonlyMap<string, TensorInfo>,
  ) {}

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  get(name: string, shape: readonly number[]): Float32Weight {
    return { shape, data: toFloat32(this.check(name, shape)) };
  }

  /** Checks presence and shape without converting the data. */
  check(name: string, shape: readonly number[]): TensorInfo {
    const t = this.tensors.get(name);
    if (t === undefined) throw new ModelError('ERR_MODEL_TENSOR_MISSING', this.file, `tensor ${name} is missing`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new ModelError(
        'ERR_MODEL_TENSOR_SHAPE',
        this.file,
        `tensor ${name} has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`,
      );
    }
    return t;
  }
}

/** Hugging Face's tensor names for one decoder layer. */
export interface LayerWeightNames {
  readonly inputNorm: string;
  readonly postNorm: string;
  readonly q: string;
  readonly k: string;
  readonly v: string;
  readonly o: string;
  readonly qBias: string;
  readonly kBias: string;
  readonly vBias: string;
  readonly oBias: string;
  readonly gate: string;
  readonly up: string;
  readonly down: string;
}

export function layerWeightNames(layer: number): LayerWeightNames {
  const p = `model.layers.${layer}`;
  return {
    inputNorm: `${p}.input_layernorm.weight`,
    postNorm: `${p}.post_attention_layernorm.weight`,
    q: `${p}.self_attn.q_proj.weight`,
    k: `${p}.self_attn.k_proj.weight`,
    v: `${p}.self_attn.v_proj.weight`,
    o: `${p}.self_attn.o_proj.weight`,
    qBias: `${p}.self_attn.q_proj.bias`,
    kBias: `${p}.self_attn.k_proj.bias`,
    vBias: `${p}.self_attn.v_proj.bias`,
    oBias: `${p}.self_attn.o_proj.bias`,
    gate: `${p}.mlp.gate_proj.weight`,
    up: `${p}.mlp.up_proj.weight`,
    down: `${p}.mlp.down_proj.weight`,
  };
}

/** Checks every tensor the whole model needs, so a broken checkpoint fails before anything is built. */
export function checkAllWeights(cfg: ModelConfig, w: WeightReader): void {
  for (let l = 0; l < cfg.numLayers; l++) checkLayer(cfg, w, l);
  w.check('model.embed_tokens.weight', [cfg.vocabSize, cfg.hiddenSize]);
  w.check('model.norm.weight', [cfg.hiddenSize]);
  if (!cfg.tieWordEmbeddings) w.check('lm_head.weight', [cfg.vocabSize, cfg.hiddenSize]);
}

function checkLayer(cfg: ModelConfig, w: WeightReader, l: number): void {
  const n = layerWeightNames(l);
  const d = cfg.hiddenSize;
  const q = cfg.numHeads * cfg.headDim;
  const kv = cfg.numKvHeads * cfg.headDim;
  w.check(n.inputNorm, [d]);
  w.check(n.postNorm, [d]);
  w.check(n.q, [q, d]);
  w.check(n.k, [kv, d]);
  w.check(n.v, [kv, d]);
  w.check(n.o, [d, q]);
  if (cfg.qkvBias) {
    w.check(n.qBias, [q]);
    w.check(n.kBias, [kv]);
    w.check(n.vBias, [kv]);
  }
  if (cfg.oBias) w.check(n.oBias, [d]);
  w.check(n.gate, [cfg.intermediateSize, d]);
  w.check(n.up, [cfg.intermediateSize, d]);
  w.check(n.down, [d, cfg.intermediateSize]);
}
