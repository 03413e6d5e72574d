import { ModelError } from './errors.js';

/**
 * Llama 3.1's frequency-dependent rotary scaling (`rope_scaling.rope_type:
 * "llama3"`, as in Llama-3.2-1B): high frequencies are kept, low ones divided
 * by `factor`, and those between are interpolated smoothly.
 */
export interface Llama3RopeScaling {
  readonly type: 'llama3';
  readonly factor: number;
  readonly lowFreqFactor: number;
  readonly highFreqFactor: number;
  readonly originalMaxPositions: number;
}

/** The rotary scalings the builder can run; null in a config means none. */
export type RopeScaling = Llama3RopeScaling;

/**
 * Reads config.json's `rope_scaling` (null, absent, or `{rope_type | type, ...}`).
 * `default` is no scaling; `llama3` is run; every other type is refused by name.
 */
export function parseRopeScaling(file: string, raw: unknown, key = 'rope_scaling'): RopeScaling | null {
  if (raw === undefined || raw === null) return null;
  const bad = (detail: string): ModelError => new ModelError('ERR_MODEL_BAD_CONFIG', file, `${key}: ${detail}`);
  if (typeof raw !== 'object' || Array.isArray(raw)) throw bad(`must be an object or null, got ${JSON.stringify(raw)}`);
  const r = raw as Record<string, unknown>;
  // transformers reads `rope_type`, and the older `type` when that is absent.
  const type = r.rope_type ?? r.type;
  if (type === 'default') return null;
  if (type !== 'llama3') {
    throw new ModelError(
      'ERR_MODEL_UNSUPPORTED',
      file,
      `${key} of type ${JSON.stringify(type ?? null)} is not supported (supported: llama3, default)`,
    );
  }
  const num = (key: string): number => {
    const v = r[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw bad(`${key} must be a positive number, got ${JSON.stringify(v)}`);
    return v;
  };
  const original = num('original_max_position_embeddings');
  if (!Number.isInteger(original)) throw bad(`original_max_position_embeddings must be an integer, got ${original}`);
  const scaling: Llama3RopeScaling = {
    type: 'llama3',
    factor: num('factor'),
    lowFreqFactor: num('low_freq_factor'),
    highFreqFactor: num('high_freq_factor'),
    originalMaxPositions: original,
  };
  if (scaling.highFreqFactor <= scaling.lowFreqFactor) {
    throw bad(`high_freq_factor ${scaling.highFreqFactor} must be above low_freq_factor ${scaling.lowFreqFactor}`);
  }
  return scaling;
}

/** What the rotary frequencies depend on. */
export interface RopeParams {
  readonly headDim: number;
  readonly ropeTheta: number;
  readonly ropeScaling: RopeScaling | null;
}

/**
 * The rotary inverse frequencies, one per pair of dimensions:
 * θ^(−2i/d), then rescaled by the config's rope_scaling. Computed in float64
 * and rounded once to float32 (transformers computes them in float32; the two
 * agree to the last bit or one unit in the last place).
 */
export function ropeInverseFrequencies(p: RopeParams): Float32Array {
  const half = p.headDim / 2;
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const base = 1 / p.ropeTheta ** ((2 * i) / p.headDim);
    out[i] = p.ropeScaling === null ? base : llama3Scaled(base, p.ropeScaling);
  }
  return out;
}

/**
 * One frequency under llama3 scaling. With wavelength λ = 2π/f and the
 * original context L: λ < L/high_freq_factor keeps f; λ > L/low_freq_factor
 * gives f/factor; between, s = (L/λ − low)/(high − low) blends the two:
 * (1 − s)·f/factor + s·f.
 */
function llama3Scaled(f: number, s: Llama3RopeScaling): number {
  const wavelength = (2 * Math.PI) / f;
  const longest = s.originalMaxPositions / s.lowFreqFactor;
  const shortest = s.originalMaxPositions / s.highFreqFactor;
  if (wavelength < shortest) return f;
  if (wavelength > longest) return f / s.factor;
  const smooth = (s.originalMaxPositions / wavelength - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
  return (1 - smooth) * (f / s.factor) + smooth * f;
}
