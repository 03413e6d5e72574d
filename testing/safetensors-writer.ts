// Test helper: writes safetensors files, to make broken checkpoints on purpose.
export interface RawTensor {
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly bytes: Uint8Array;
}

export function writeSafetensors(tensors: ReadonlyMap<string, RawTensor>): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const [name, t] of tensors) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.byteLength] };
    offset += t.bytes.byteLength;
  }
  let head = JSON.stringify(header);
  head += ' '.repeat((8 - (head.length % 8)) % 8);
  const headBytes = new TextEncoder().encode(head);
  const out = new Uint8Array(8 + headBytes.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headBytes.byteLength), true);
  out.set(headBytes, 8);
  let at = 8 + headBytes.byteLength;
  for (const t of tensors.values()) {
    out.set(t.bytes, at);
    at += t.bytes.byteLength;
  }
  return out;
}
