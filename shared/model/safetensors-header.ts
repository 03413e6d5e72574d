import { ModelError } from './errors.js';
import type { WeightDtype } from './safetensors.js';

/** One tensor as a safetensors header describes it: where its bytes are, relative to the data after the header. */
export interface HeaderEntry {
  readonly name: string;
  readonly dtype: WeightDtype;
  readonly shape: readonly number[];
  /** Byte offsets [start, end) into the data that follows the header. */
  readonly start: number;
  readonly end: number;
}

export const BYTES_PER_ELEMENT: Readonly<Record<WeightDtype, number>> = { F32: 4, F16: 2, BF16: 2 };

export function isWeightDtype(v: unknown): v is WeightDtype {
  return v === 'F32' || v === 'F16' || v === 'BF16';
}

/** The header length in a safetensors file's first 8 bytes (little-endian u64), as a number. */
export function headerLength(first8: Uint8Array): number {
  const view = new DataView(first8.buffer, first8.byteOffset, first8.byteLength);
  return Number(view.getBigUint64(0, true));
}

/**
 * Parses a safetensors header (the JSON after the 8-byte length) and checks
 * every entry against the size of the data that follows it (`bodyBytes`) and
 * its shape's element count. `file` names the file in errors.
 */
export function parseSafetensorsHeader(file: string, headerJson: Uint8Array, bodyBytes: number): Map<string, HeaderEntry> {
  const bad = (detail: string): ModelError => new ModelError('ERR_MODEL_BAD_SAFETENSORS', file, detail);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder().decode(headerJson));
  } catch (e) {
    throw bad(`header is not JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw bad('header is not a JSON object');
  const out = new Map<string, HeaderEntry>();
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') continue;
    if (typeof entry !== 'object' || entry === null) throw bad(`entry ${name} is not an object`);
    const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
    if (!isWeightDtype(dtype)) {
      throw new ModelError('ERR_MODEL_TENSOR_DTYPE', file, `tensor ${name} has dtype ${String(dtype)}; supported: F32, F16, BF16`);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw bad(`tensor ${name} has an invalid shape ${JSON.stringify(shape)}`);
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1] ||
      offsets[1] > bodyBytes
    ) {
      throw bad(`tensor ${name} has data offsets ${JSON.stringify(offsets)} outside the ${bodyBytes}-byte body`);
    }
    const [start, end] = offsets as [number, number];
    const elements = (shape as number[]).reduce((a, b) => a * b, 1);
    if (end - start !== elements * BYTES_PER_ELEMENT[dtype]) {
      throw bad(
        `tensor ${name} holds ${end - start} bytes, but ${dtype}${JSON.stringify(shape)} needs ${elements * BYTES_PER_ELEMENT[dtype]}`,
      );
    }
    out.set(name, { name, dtype, shape: shape as number[], start, end });
  }
  return out;
}
