import { describe, expect, it } from 'vitest';
import { DEFAULT_DEVICE_MEMORY_GIB, GIB, MAX_OFFER_BYTES, offeredBytes, parseCapacity, WASM_MAX_BYTES } from './capacity.js';
import { parseHello, parseReady } from './validate.js';

describe('capacity report', () => {
  it('parses what a browser reports, and absent as unknown', () => {
    expect(parseCapacity(undefined)).toEqual({ ok: true, value: null });
    expect(parseCapacity({ deviceMemoryGiB: 8, maxBufferBytes: 2 ** 31, maxStorageBindingBytes: 2 ** 27 })).toEqual({
      ok: true,
      value: { deviceMemoryGiB: 8, maxBufferBytes: 2 ** 31, maxStorageBindingBytes: 2 ** 27 },
    });
    expect(parseCapacity({})).toEqual({ ok: true, value: { deviceMemoryGiB: null, maxBufferBytes: null, maxStorageBindingBytes: null } });
  });

  it('refuses a malformed report with a reason that names the field, in the hello', () => {
    for (const [capacity, field] of [
      ['lots', 'capacity must be'],
      [{ deviceMemoryGiB: -1 }, 'deviceMemoryGiB'],
      [{ deviceMemoryGiB: Number.NaN }, 'deviceMemoryGiB'],
      [{ deviceMemoryGiB: '8' }, 'deviceMemoryGiB'],
      [{ deviceMemoryGiB: 1e12 }, 'deviceMemoryGiB'],
      [{ maxBufferBytes: 1.5 }, 'maxBufferBytes'],
      [{ maxStorageBindingBytes: -4 }, 'maxStorageBindingBytes'],
      [[8], 'capacity must be'],
    ] as const) {
      const m = parseHello({ backend: 'wasm', adapter: null, capacity });
      expect(m.ok, JSON.stringify(capacity)).toBe(false);
      if (!m.ok) expect(m.reason).toContain(field);
    }
  });

  it('counts on a share of the machine, no more than WASM addresses, never beyond the clamp', () => {
    expect(offeredBytes('wasm', null)).toBe(DEFAULT_DEVICE_MEMORY_GIB * GIB * 0.5);
    expect(offeredBytes('webgpu', { deviceMemoryGiB: 0.25, maxBufferBytes: null, maxStorageBindingBytes: null })).toBe(GIB / 8);
    expect(offeredBytes('wasm', { deviceMemoryGiB: 4096, maxBufferBytes: null, maxStorageBindingBytes: null })).toBe(WASM_MAX_BYTES);
    expect(offeredBytes('webgpu', { deviceMemoryGiB: 4096, maxBufferBytes: 2 ** 52, maxStorageBindingBytes: null })).toBe(MAX_OFFER_BYTES);
  });

  it('a ready may name the partition it loaded', () => {
    expect(parseReady({ modelId: 'm', stage: 0, stepMs: 1, partition: 'r0-3_3-6' })).toEqual({
      ok: true,
      value: { modelId: 'm', stage: 0, stepMs: 1, partition: 'r0-3_3-6' },
    });
    expect(parseReady({ modelId: 'm', stage: 0, stepMs: 1, partition: 7 })).toMatchObject({ ok: false });
  });
});
