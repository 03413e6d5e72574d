import { describe, expect, it } from 'vitest';
import { parseModelConfig } from './config.js';
import { ModelError } from './errors.js';
import { parseManifest } from './manifest.js';
import { parseRopeScaling, ropeInverseFrequencies } from './rope.js';

const LLAMA32 = { factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: 'llama3' };

function refusal(f: () => unknown): { code: string; message: string } {
  try {
    f();
  } catch (e) {
    if (e instanceof ModelError) return { code: e.code, message: e.message };
    throw e;
  }
  throw new Error('not refused');
}

describe('rope_scaling', () => {
  it('reads none, default and llama3 (rope_type, or the older type)', () => {
    expect(parseRopeScaling('c.json', null)).toBeNull();
    expect(parseRopeScaling('c.json', undefined)).toBeNull();
    expect(parseRopeScaling('c.json', { rope_type: 'default' })).toBeNull();
    const expected = { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 };
    expect(parseRopeScaling('c.json', LLAMA32)).toEqual(expected);
    const { rope_type: _, ...legacy } = LLAMA32;
    expect(parseRopeScaling('c.json', { ...legacy, type: 'llama3' })).toEqual(expected);
  });

  it('refuses every other type by name, and a llama3 scaling with a missing or bad field', () => {
    for (const type of ['linear', 'dynamic', 'yarn', 'longrope']) {
      const r = refusal(() => parseRopeScaling('c.json', { rope_type: type, factor: 2 }));
      expect(r.code).toBe('ERR_MODEL_UNSUPPORTED');
      expect(r.message).toContain(`rope_scaling of type "${type}" is not supported`);
    }
    expect(refusal(() => parseRopeScaling('c.json', { factor: 2 })).message).toContain('of type null');
    const { factor: _, ...noFactor } = LLAMA32;
    expect(refusal(() => parseRopeScaling('c.json', noFactor))).toEqual({
      code: 'ERR_MODEL_BAD_CONFIG',
      message: 'c.json: rope_scaling: factor must be a positive number, got undefined [ERR_MODEL_BAD_CONFIG]',
    });
    expect(refusal(() => parseRopeScaling('c.json', { ...LLAMA32, high_freq_factor: 1 })).message).toContain(
      'must be above low_freq_factor',
    );
    expect(refusal(() => parseRopeScaling('c.json', { ...LLAMA32, original_max_position_embeddings: 81.5 })).code).toBe(
      'ERR_MODEL_BAD_CONFIG',
    );
    expect(refusal(() => parseRopeScaling('c.json', 'llama3')).code).toBe('ERR_MODEL_BAD_CONFIG');
  });

  it('leaves plain rotary frequencies θ^(−2i/d) alone', () => {
    const f = ropeInverseFrequencies({ headDim: 8, ropeTheta: 10000, ropeScaling: null });
    expect([...f]).toEqual([1, 10000 ** -0.25, 10000 ** -0.5, 10000 ** -0.75].map(Math.fround));
  });

  it("scales by wavelength band, as Llama 3.1's rule says", () => {
    // head_dim 16, θ 500000, original context 8192: the pair i turns 8192·f/2π times over it.
    const scaling = parseRopeScaling('c.json', LLAMA32);
    const f = ropeInverseFrequencies({ headDim: 16, ropeTheta: 500000, ropeScaling: scaling });
    const plain = (i: number): number => 500000 ** (-i / 8);
    // i ≤ 3: over 4 turns (wavelength < 8192/4): kept.
    for (let i = 0; i <= 3; i++) expect(f[i]).toBe(Math.fround(plain(i)));
    // i = 4: 1.84 turns: blended with s = turns − 1 over (4 − 1).
    const s = (8192 * plain(4)) / (2 * Math.PI) / 3 - 1 / 3;
    expect(f[4]).toBe(Math.fround((1 - s) * (plain(4) / 32) + s * plain(4)));
    // i ≥ 5: under 1 turn (wavelength > 8192): divided by the factor.
    for (let i = 5; i < 8; i++) expect(f[i]).toBe(Math.fround(plain(i) / 32));
  });

  it("is part of the model config and of the manifest's model, refused there too when wrong", () => {
    const cfg = parseModelConfig('config.json', {
      architectures: ['LlamaForCausalLM'],
      vocab_size: 16,
      hidden_size: 8,
      intermediate_size: 8,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      rope_scaling: LLAMA32,
    });
    expect(cfg.ropeScaling?.factor).toBe(32);
    const entry = { file: 'stage-0.onnx', sizeBytes: 1, sha256: 'a'.repeat(64) };
    const spec = [{ name: 'x', dtype: 'float32', shape: [1] }];
    const manifest = {
      format: 'webswarm-stages',
      version: 1,
      modelId: 'm',
      model: cfg,
      tokenizer: { ...entry, file: 'tokenizer.json' },
      tokenizerConfig: null,
      stages: [{ ...entry, index: 0, layers: { start: 0, end: 1 }, inputs: spec, outputs: spec }],
    };
    expect(parseManifest('manifest.json', JSON.parse(JSON.stringify(manifest))).model.ropeScaling).toEqual(cfg.ropeScaling);
    const { ropeScaling: _, ...older } = cfg;
    expect(parseManifest('manifest.json', { ...manifest, model: older }).model.ropeScaling).toBeNull();
    const yarn = { ...manifest, model: { ...cfg, ropeScaling: { ...cfg.ropeScaling, type: 'yarn' } } };
    expect(refusal(() => parseManifest('manifest.json', yarn)).message).toContain('model.ropeScaling of type "yarn" is not supported');
    const bad = { ...manifest, model: { ...cfg, ropeScaling: { ...cfg.ropeScaling, factor: -1 } } };
    expect(refusal(() => parseManifest('manifest.json', bad)).code).toBe('ERR_MODEL_BAD_CONFIG');
  });
});
