import { describe, expect, it } from 'vitest';
import { writeSafetensors } from '../../testing/safetensors-writer.js';
import { ModelError } from './errors.js';
import { halfToFloat, parseSafetensors, toFloat32 } from './safetensors.js';

function u16(values: number[]): Uint8Array {
  return new Uint8Array(new Uint16Array(values).buffer);
}

describe('safetensors', () => {
  it('widens F16 and BF16 exactly', () => {
    // 1.0, -2.0, 65504 (largest half), 2^-24 (smallest subnormal), 0.333251953125
    const f16 = u16([0x3c00, 0xc000, 0x7bff, 0x0001, 0x3555]);
    // 1.0, -2.0, 3.140625, and the top 16 bits of 1e-3
    const bf16 = u16([0x3f80, 0xc000, 0x4049, 0x3a83]);
    const file = writeSafetensors(
      new Map([
        ['h', { dtype: 'F16', shape: [5], bytes: f16 }],
        ['b', { dtype: 'BF16', shape: [2, 2], bytes: bf16 }],
      ]),
    );
    const t = parseSafetensors('x.safetensors', file);
    expect(Array.from(toFloat32(t.get('h') as never))).toEqual([1, -2, 65504, 2 ** -24, 0.333251953125]);
    expect(Array.from(toFloat32(t.get('b') as never))).toEqual([
      1,
      -2,
      3.140625,
      new Float32Array(new Uint32Array([0x3a830000]).buffer)[0],
    ]);
    expect(halfToFloat(0x7c00)).toBe(Number.POSITIVE_INFINITY);
    expect(halfToFloat(0x7e00)).toBeNaN();
  });

  it('refuses a tensor whose bytes do not match its shape', () => {
    const file = writeSafetensors(new Map([['w', { dtype: 'F32', shape: [3], bytes: new Uint8Array(8) }]]));
    expect(() => parseSafetensors('w.safetensors', file)).toThrowError(/holds 8 bytes, but F32\[3\] needs 12/);
  });

  it('refuses a header that is not JSON', () => {
    const bytes = new Uint8Array(16);
    new DataView(bytes.buffer).setBigUint64(0, 8n, true);
    bytes.set(new TextEncoder().encode('{nope!!}'), 8);
    const e = (() => {
      try {
        parseSafetensors('bad.safetensors', bytes);
      } catch (err) {
        return err;
      }
      return null;
    })();
    expect(e).toBeInstanceOf(ModelError);
    expect((e as ModelError).code).toBe('ERR_MODEL_BAD_SAFETENSORS');
    expect((e as ModelError).file).toBe('bad.safetensors');
  });
});
