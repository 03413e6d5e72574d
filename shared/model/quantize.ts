/**
 * Weight precisions of stage files and the conversions behind them, pure:
 * float16 (IEEE half, round to nearest even) and weight-only block-wise
 * quantisation to 8 or 4 bits in the layout of onnxruntime's `MatMulNBits`
 * (com.microsoft): per block of `blockSize` weights along K, one float32 scale
 * and one uint8 zero point, w ≈ (q − zero) · scale.
 */

/** How a stage stores its large weights: float32, float16, or 8- or 4-bit blocks. */
export type WeightPrecision = 'f32' | 'f16' | 'q8' | 'q4';
export const WEIGHT_PRECISIONS: readonly WeightPrecision[] = ['f32', 'f16', 'q8', 'q4'];

export function isWeightPrecision(v: unknown): v is WeightPrecision {
  return typeof v === 'string' && (WEIGHT_PRECISIONS as readonly string[]).includes(v);
}

/** The block size of quantised weights: 32 weights along K share a scale and a zero point. */
export const QUANT_BLOCK_SIZE = 32;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The IEEE half-precision bits nearest to `x` (ties to even; overflow to ±Infinity; NaN kept). */
export function floatToHalfBits(x: number): number {
  f32[0] = x;
  const bits = u32[0] as number;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half (or zero): shift the mantissa with its implicit bit into place.
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let half = m >>> shift;
    const rest = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && (half & 1) === 1)) half += 1;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  // Rounding up may carry into the exponent, which is still the right half value.
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1) === 1)) half += 1;
  return sign | half;
}

/** float32 values → float16 bits. */
export function toFloat16(data: Float32Array): Uint16Array {
  const out = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = floatToHalfBits(data[i] as number);
  return out;
}

/** A [N, K] weight quantised block-wise along K, in MatMulNBits' layout. */
export interface BlockQuantized {
  readonly bits: 4 | 8;
  readonly blockSize: number;
  /** Output features (rows of a Hugging Face Linear weight). */
  readonly n: number;
  /** Input features. */
  readonly k: number;
  /** ceil(K / blockSize). */
  readonly kBlocks: number;
  /** [N, kBlocks, blockSize·bits/8]: values packed along K, low nibble first for 4 bits. */
  readonly data: Uint8Array;
  /** [N, kBlocks] */
  readonly scales: Float32Array;
  /** [N, ceil(kBlocks·bits/8)]: packed like the data for 4 bits. */
  readonly zeroPoints: Uint8Array;
}

/**
 * Quantises a row-major [n, k] matrix (a Linear weight [out, in]) block-wise
 * along k. Each block's range is widened to include 0, so zero stays exact;
 * scale = (max − min) / (2^bits − 1), zero point = round(−min / scale).
 * The tail of a last block that K does not fill holds the zero point.
 */
export function quantizeBlockwise(w: Float32Array, n: number, k: number, bits: 4 | 8, blockSize = QUANT_BLOCK_SIZE): BlockQuantized {
  if (w.length !== n * k) throw new RangeError(`quantizeBlockwise: ${w.length} values for a [${n}, ${k}] matrix`);
  const kBlocks = Math.ceil(k / blockSize);
  const blob = (blockSize * bits) / 8;
  const zpRow = Math.ceil((kBlocks * bits) / 8);
  const qmax = (1 << bits) - 1;
  const data = new Uint8Array(n * kBlocks * blob);
  const scales = new Float32Array(n * kBlocks);
  const zeroPoints = new Uint8Array(n * zpRow);
  const q = new Uint8Array(blockSize);
  for (let r = 0; r < n; r++) {
    for (let b = 0; b < kBlocks; b++) {
      const start = r * k + b * blockSize;
      const len = Math.min(blockSize, k - b * blockSize);
      let lo = 0;
      let hi = 0;
      for (let j = 0; j < len; j++) {
        const v = w[start + j] as number;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      const scale = hi > lo ? Math.fround((hi - lo) / qmax) : 1;
      const zp = Math.min(qmax, Math.max(0, Math.round(-lo / scale)));
      for (let j = 0; j < blockSize; j++) {
        q[j] = j < len ? Math.min(qmax, Math.max(0, Math.round((w[start + j] as number) / scale) + zp)) : zp;
      }
      scales[r * kBlocks + b] = scale;
      const at = (r * kBlocks + b) * blob;
      if (bits === 8) {
        data.set(q, at);
        zeroPoints[r * zpRow + b] = zp;
      } else {
        for (let j = 0; j < blockSize; j += 2) data[at + j / 2] = (q[j] as number) | ((q[j + 1] as number) << 4);
        const zi = r * zpRow + (b >> 1);
        zeroPoints[zi] = (zeroPoints[zi] as number) | (b % 2 === 0 ? zp : zp << 4);
      }
    }
  }
  return { bits, blockSize, n, k, kBlocks, data, scales, zeroPoints };
}

/** The [n, k] float32 matrix that a quantised weight stands for: (q − zero) · scale. */
export function dequantizeBlockwise(m: BlockQuantized): Float32Array {
  const { bits, blockSize, n, k, kBlocks } = m;
  const blob = (blockSize * bits) / 8;
  const zpRow = Math.ceil((kBlocks * bits) / 8);
  const out = new Float32Array(n * k);
  for (let r = 0; r < n; r++) {
    for (let b = 0; b < kBlocks; b++) {
      const scale = m.scales[r * kBlocks + b] as number;
      const zByte = m.zeroPoints[r * zpRow + (bits === 8 ? b : b >> 1)] as number;
      const zp = bits === 8 ? zByte : b % 2 === 0 ? zByte & 0xf : zByte >> 4;
      const at = (r * kBlocks + b) * blob;
      const len = Math.min(blockSize, k - b * blockSize);
      for (let j = 0; j < len; j++) {
        const byte = m.data[at + (bits === 8 ? j : j >> 1)] as number;
        const qv = bits === 8 ? byte : j % 2 === 0 ? byte & 0xf : byte >> 4;
        out[r * k + b * blockSize + j] = (qv - zp) * scale;
      }
    }
  }
  return out;
}
