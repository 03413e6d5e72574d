import { ModelError } from './errors.js';
import { headerLength, parseSafetensorsHeader } from './safetensors-header.js';

/** Element types a safetensors checkpoint of the llama family may use for weights. */
export type WeightDtype = 'F32' | 'F16' | 'BF16';

export interface TensorInfo {
  readonly name: string;
  readonly dtype: WeightDtype;
  readonly shape: readonly number[];
  /** The tensor's raw little-endian bytes (a view into the file's bytes). */
  readonly bytes: Uint8Array;
}

const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/**
 * Parses a safetensors file: 8-byte little-endian header length, a JSON header
 * mapping names to dtype, shape and byte offsets, then the data. Every entry is
 * checked against the file's size and its shape's element count.
 */
export function parseSafetensors(file: string, data: Uint8Array): Map<string, TensorInfo> {
  const bad = (detail: string): ModelError => new ModelError('ERR_MODEL_BAD_SAFETENSORS', file, detail);
  if (data.byteLength < 8) throw bad(`file is ${data.byteLength} bytes, too short for a safetensors header`);
  const headerLen = headerLength(data);
  if (headerLen <= 0 || headerLen > MAX_HEADER_BYTES || 8 + headerLen > data.byteLength) {
    throw bad(`header length ${headerLen} does not fit a file of ${data.byteLength} bytes`);
  }
  const body = data.subarray(8 + headerLen);
  const out = new Map<string, TensorInfo>();
  for (const [name, e] of parseSafetensorsHeader(file, data.subarray(8, 8 + headerLen), body.byteLength)) {
    out.set(name, { name, dtype: e.dtype, shape: e.shape, bytes: body.subarray(e.start, e.end) });
  }
  return out;
}

/** Converts one IEEE half-precision value (as its 16 bits) to a number. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** A tensor's values as float32 (F16 and BF16 are widened exactly). */
export function toFloat32(t: TensorInfo): Float32Array {
  const n = t.shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  const view = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
  switch (t.dtype) {
    case 'F32':
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
      break;
    case 'F16':
      for (let i = 0; i < n; i++) out[i] = halfToFloat(view.getUint16(i * 2, true));
      break;
    case 'BF16': {
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = view.getUint16(i * 2, true) << 16;
      break;
    }
    default: {
      const never: never = t.dtype;
      throw new Error(`unreachable dtype ${String(never)}`);
    }
  }
  return out;
}
