import { describe, expect, it } from 'vitest';
import { dequantizeBlockwise, floatToHalfBits, isWeightPrecision, quantizeBlockwise, toFloat16 } from './quantize.js';
import { halfToFloat } from './safetensors.js';

/** A seeded uniform generator in [−0.5, 0.5). */
function uniform(seed: number): () => number {
  let s = seed;
  return () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 4294967296 - 0.5;
  };
}

describe('float16', () => {
  it('writes the IEEE half bits of exact values, limits and specials', () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [0.5, 0x3800],
      [65504, 0x7bff],
      [2 ** -14, 0x0400],
      [2 ** -24, 0x0001],
      [Number.POSITIVE_INFINITY, 0x7c00],
      [Number.NEGATIVE_INFINITY, 0xfc00],
    ];
    for (const [x, bits] of cases) expect(floatToHalfBits(x), String(x)).toBe(bits);
    expect(floatToHalfBits(65520)).toBe(0x7c00); // rounds past the largest half
    expect(floatToHalfBits(2 ** -26)).toBe(0); // below half the smallest subnormal
    expect(Number.isNaN(halfToFloat(floatToHalfBits(Number.NaN)))).toBe(true);
  });

  it('rounds to nearest, ties to even, in normal and subnormal ranges', () => {
    expect(floatToHalfBits(1 + 2 ** -11)).toBe(0x3c00); // tie, even stays
    expect(floatToHalfBits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie, odd rounds up
    expect(floatToHalfBits(1 + 2 ** -11 + 2 ** -20)).toBe(0x3c01); // above the tie
    expect(floatToHalfBits(3 * 2 ** -25)).toBe(0x0002); // subnormal tie 1.5 → 2
    expect(floatToHalfBits(2 ** -25)).toBe(0x0000); // subnormal tie 0.5 → 0
  });

  it('round-trips every half value, and stays within half an ulp of random floats', () => {
    for (let h = 0; h < 0x7c00; h++) expect(floatToHalfBits(halfToFloat(h))).toBe(h);
    const rnd = uniform(3);
    const xs = Float32Array.from({ length: 5000 }, () => rnd() * 200);
    const back = Array.from(toFloat16(xs), halfToFloat);
    for (const [i, x] of xs.entries()) {
      const ulp = 2 ** (Math.floor(Math.log2(Math.max(Math.abs(x), 2 ** -14))) - 10);
      expect(Math.abs((back[i] as number) - x)).toBeLessThanOrEqual(ulp / 2);
    }
  });
});

describe('block-wise quantisation (MatMulNBits layout)', () => {
  it.each([8, 4] as const)('%i bits: every weight within half a step of its block, zero exact, K padded to whole blocks', (bits) => {
    const n = 5;
    const k = 72; // 2 whole blocks of 32 and one of 8
    const rnd = uniform(bits);
    const w = Float32Array.from({ length: n * k }, rnd);
    w[3] = 0;
    const q = quantizeBlockwise(w, n, k, bits);
    expect(q.kBlocks).toBe(3);
    expect(q.data.length).toBe(n * 3 * ((32 * bits) / 8));
    expect(q.scales.length).toBe(n * 3);
    expect(q.zeroPoints.length).toBe(n * (bits === 8 ? 3 : 2));
    const back = dequantizeBlockwise(q);
    for (let r = 0; r < n; r++) {
      for (let j = 0; j < k; j++) {
        const scale = q.scales[r * 3 + Math.floor(j / 32)] as number;
        expect(Math.abs((back[r * k + j] as number) - (w[r * k + j] as number))).toBeLessThanOrEqual(scale / 2 + 1e-7);
      }
    }
    expect(back[3]).toBe(0);
    // A step is the block's range over 2^bits − 1 levels.
    expect(Math.max(...q.scales)).toBeLessThanOrEqual(1 / ((1 << bits) - 1) + 1e-7);
  });

  it('packs 4-bit values low nibble first, and zero points two blocks to a byte', () => {
    // One row, two blocks: block 0 counts 0..15 twice, block 1 is all −1 (zero point 15, scale 1/15).
    const w = new Float32Array(64);
    for (let j = 0; j < 32; j++) w[j] = j % 16;
    w.fill(-1, 32);
    const q = quantizeBlockwise(w, 1, 64, 4);
    expect(q.scales[0]).toBe(1);
    expect(q.data[0]).toBe(0x10); // values 0 (low) and 1 (high)
    expect(q.data[7]).toBe(0xfe); // values 14 and 15
    expect(q.zeroPoints[0]).toBe(0xf0); // block 0: zero point 0; block 1: 15
    expect(q.data[16]).toBe(0x00); // −1 at the bottom of block 1's range
  });

  it('keeps an all-zero block at zero', () => {
    const q = quantizeBlockwise(new Float32Array(32), 1, 32, 4);
    expect([...dequantizeBlockwise(q)].every((v) => v === 0)).toBe(true);
  });

  it('refuses a matrix whose size does not match, and knows its precisions', () => {
    expect(() => quantizeBlockwise(new Float32Array(10), 2, 4, 8)).toThrow(RangeError);
    expect(['f32', 'f16', 'q8', 'q4'].every(isWeightPrecision)).toBe(true);
    expect(isWeightPrecision('int4')).toBe(false);
  });
});
