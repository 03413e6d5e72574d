// Test helper: a llama-family decoder written out in plain loops, in float64,
// from config.json's own keys and the weights as float arrays. It shares no
// code with the stage builder (no ModelConfig, no rope.ts, no ONNX), so that
// the two checking each other can catch a mistake in either: the oracle of
// the tests that have no PyTorch golden data (random checkpoints of the shapes
// people download).

/** The keys of a Hugging Face config.json that the maths depends on. */
export interface PlainConfig {
  readonly model_type: string;
  readonly hidden_size: number;
  readonly intermediate_size: number;
  readonly num_hidden_layers: number;
  readonly num_attention_heads: number;
  readonly num_key_value_heads?: number;
  readonly head_dim?: number;
  readonly rms_norm_eps: number;
  readonly rope_theta?: number;
  readonly rope_scaling?: Record<string, unknown> | null;
  readonly tie_word_embeddings?: boolean;
  readonly attention_bias?: boolean;
  readonly vocab_size: number;
}

export type PlainWeights = ReadonlyMap<string, Float32Array>;

export interface PlainForward {
  /** Hidden states after each layer, [layer][position · hidden]. */
  readonly hidden: Float64Array[];
  /** Logits [positions · vocab]. */
  readonly logits: Float64Array;
}

/**
 * The rotary inverse frequencies transformers uses, from config.json directly:
 * θ^(−2i/d), and for rope_scaling llama3, Llama 3.1's wavelength rule. Written
 * apart from the builder's on purpose (wavelength bands tested in another order).
 */
export function plainInverseFrequencies(c: PlainConfig): number[] {
  const d = c.head_dim ?? c.hidden_size / c.num_attention_heads;
  const theta = c.rope_theta ?? 10000;
  const out: number[] = [];
  const rs = c.rope_scaling ?? null;
  const kind = rs === null ? 'default' : (rs.rope_type ?? rs.type);
  for (let j = 0; j < d; j += 2) {
    const f = Math.exp(-Math.log(theta) * (j / d));
    if (kind === 'default') {
      out.push(f);
      continue;
    }
    if (kind !== 'llama3' || rs === null) throw new Error(`plain reference: rope_scaling ${String(kind)} is not written here`);
    const factor = rs.factor as number;
    const lo = rs.low_freq_factor as number;
    const hi = rs.high_freq_factor as number;
    const old = rs.original_max_position_embeddings as number;
    // How many turns the pair makes over the original context decides its band.
    const turns = (old * f) / (2 * Math.PI);
    if (turns >= hi) out.push(f);
    else if (turns <= lo) out.push(f / factor);
    else {
      const t = (turns - lo) / (hi - lo);
      out.push(f * (t + (1 - t) / factor));
    }
  }
  return out;
}

function need(w: PlainWeights, name: string): Float32Array {
  const t = w.get(name);
  if (t === undefined) throw new Error(`plain reference: no tensor ${name}`);
  return t;
}

/** y[o] = Σ_i W[o, i] x[i] (+ b[o]) for a Linear weight W [out, in]. */
function matvec(W: Float32Array, x: Float64Array, outF: number, inF: number, b?: Float32Array): Float64Array {
  const y = new Float64Array(outF);
  for (let o = 0; o < outF; o++) {
    let s = b === undefined ? 0 : (b[o] as number);
    const row = o * inF;
    for (let i = 0; i < inF; i++) s += (W[row + i] as number) * (x[i] as number);
    y[o] = s;
  }
  return y;
}

function rmsNorm(x: Float64Array, w: Float32Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * inv * (w[i] as number));
}

/** Rotate-half rotary positions on one head's vector, in place. */
function rotate(v: Float64Array, at: number, d: number, pos: number, inv: readonly number[]): void {
  const half = d / 2;
  for (let i = 0; i < half; i++) {
    const a = pos * (inv[i] as number);
    const c = Math.cos(a);
    const s = Math.sin(a);
    const x1 = v[at + i] as number;
    const x2 = v[at + i + half] as number;
    v[at + i] = x1 * c - x2 * s;
    v[at + i + half] = x2 * c + x1 * s;
  }
}

/** Runs token ids through the whole model (no cache), returning every layer's output and the logits. */
export function plainForward(c: PlainConfig, w: PlainWeights, ids: readonly number[]): PlainForward {
  const D = c.hidden_size;
  const H = c.num_attention_heads;
  const KV = c.num_key_value_heads ?? H;
  const hd = c.head_dim ?? D / H;
  const I = c.intermediate_size;
  const V = c.vocab_size;
  const qkvBias = c.model_type === 'qwen2' || c.attention_bias === true;
  const oBias = c.model_type === 'llama' && c.attention_bias === true;
  const inv = plainInverseFrequencies(c);
  const embed = need(w, 'model.embed_tokens.weight');
  let xs = ids.map((id) => Float64Array.from(embed.subarray(id * D, (id + 1) * D)));
  const hidden: Float64Array[] = [];
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    const get = (n: string): Float32Array => need(w, `${p}.${n}`);
    const qs: Float64Array[] = [];
    const ks: Float64Array[] = [];
    const vs: Float64Array[] = [];
    xs.forEach((x, t) => {
      const h = rmsNorm(x, get('input_layernorm.weight'), c.rms_norm_eps);
      const bias = (n: string): Float32Array | undefined => (qkvBias ? get(`self_attn.${n}_proj.bias`) : undefined);
      const q = matvec(get('self_attn.q_proj.weight'), h, H * hd, D, bias('q'));
      const k = matvec(get('self_attn.k_proj.weight'), h, KV * hd, D, bias('k'));
      for (let j = 0; j < H; j++) rotate(q, j * hd, hd, t, inv);
      for (let j = 0; j < KV; j++) rotate(k, j * hd, hd, t, inv);
      qs.push(q);
      ks.push(k);
      vs.push(matvec(get('self_attn.v_proj.weight'), h, KV * hd, D, bias('v')));
    });
    xs = xs.map((x, t) => {
      const merged = new Float64Array(H * hd);
      for (let j = 0; j < H; j++) {
        const g = Math.floor(j / (H / KV));
        const scores: number[] = [];
        for (let u = 0; u <= t; u++) {
          let s = 0;
          for (let e = 0; e < hd; e++) s += (qs[t]?.[j * hd + e] as number) * (ks[u]?.[g * hd + e] as number);
          scores.push(s / Math.sqrt(hd));
        }
        const top = Math.max(...scores);
        const ex = scores.map((s) => Math.exp(s - top));
        const sum = ex.reduce((a, b) => a + b, 0);
        for (let u = 0; u <= t; u++) {
          for (let e = 0; e < hd; e++)
            merged[j * hd + e] = (merged[j * hd + e] as number) + ((ex[u] as number) / sum) * (vs[u]?.[g * hd + e] as number);
        }
      }
      const o = matvec(get('self_attn.o_proj.weight'), merged, D, H * hd, oBias ? get('self_attn.o_proj.bias') : undefined);
      const x2 = x.map((v, i) => v + (o[i] as number));
      const h2 = rmsNorm(x2, get('post_attention_layernorm.weight'), c.rms_norm_eps);
      const gate = matvec(get('mlp.gate_proj.weight'), h2, I, D);
      const up = matvec(get('mlp.up_proj.weight'), h2, I, D);
      const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * (up[i] as number));
      const down = matvec(get('mlp.down_proj.weight'), act, D, I);
      return x2.map((v, i) => v + (down[i] as number));
    });
    const flat = new Float64Array(xs.length * D);
    for (const [t, x] of xs.entries()) flat.set(x, t * D);
    hidden.push(flat);
  }
  const head = c.tie_word_embeddings === true ? embed : need(w, 'lm_head.weight');
  const logits = new Float64Array(xs.length * V);
  for (const [t, x] of xs.entries()) logits.set(matvec(head, rmsNorm(x, need(w, 'model.norm.weight'), c.rms_norm_eps), V, D), t * V);
  return { hidden, logits };
}

/** Greedy continuation of `ids` by `n` tokens, recomputing everything each step (no cache to get wrong). */
export function plainGreedy(c: PlainConfig, w: PlainWeights, ids: readonly number[], n: number): number[] {
  const seq = [...ids];
  const out: number[] = [];
  for (let s = 0; s < n; s++) {
    const { logits } = plainForward(c, w, seq);
    const row = logits.subarray((seq.length - 1) * c.vocab_size);
    let best = 0;
    for (let i = 1; i < row.length; i++) if ((row[i] as number) > (row[best] as number)) best = i;
    out.push(best);
    seq.push(best);
  }
  return out;
}
