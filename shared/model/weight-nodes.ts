import { type GraphBuilder, MS_DOMAIN } from './onnx-graph.js';
import { QUANT_BLOCK_SIZE, quantizeBlockwise, toFloat16, type WeightPrecision } from './quantize.js';

const CAST_TO_FLOAT = 1;

function bytesOf(a: Float32Array | Uint16Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Transposes a row-major [rows, cols] matrix (a Linear weight [out, in] → MatMul's [in, out]). */
export function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c] as number;
  return out;
}

/**
 * x @ Wᵀ for a Hugging Face Linear weight W [outF, inF], in the stage's precision:
 * - f32: MatMul with W transposed;
 * - f16: W transposed stored as float16, Cast to float32 before the MatMul
 *   (onnxruntime's WASM provider has no float16 MatMul; the file is half the
 *   size, the arithmetic stays float32);
 * - q8 / q4: MatMulNBits (com.microsoft) on W quantised block-wise along inF,
 *   which keeps W in its [out, in] layout.
 * Activations are float32 in every case; `output` names the result when given.
 */
export function matMulWeight(
  g: GraphBuilder,
  x: string,
  name: string,
  w: Float32Array,
  outF: number,
  inF: number,
  precision: WeightPrecision,
  output?: string,
): string {
  switch (precision) {
    case 'f32':
      return g.op('MatMul', [x, g.weight(name, [inF, outF], transpose(w, outF, inF))], {}, output);
    case 'f16': {
      const half = g.raw(`${name}.f16`, 'float16', [inF, outF], bytesOf(toFloat16(transpose(w, outF, inF))));
      return g.op('MatMul', [x, g.op('Cast', [half], { to: CAST_TO_FLOAT })], {}, output);
    }
    case 'q8':
    case 'q4': {
      const bits = precision === 'q8' ? 8 : 4;
      const q = quantizeBlockwise(w, outF, inF, bits, QUANT_BLOCK_SIZE);
      const inputs = [
        x,
        g.raw(`${name}.q${bits}`, 'uint8', [outF, q.kBlocks, (QUANT_BLOCK_SIZE * bits) / 8], q.data),
        g.raw(`${name}.scales`, 'float32', [outF, q.kBlocks], bytesOf(q.scales)),
        g.raw(`${name}.zero_points`, 'uint8', [outF, q.zeroPoints.length / outF], q.zeroPoints),
      ];
      return g.op('MatMulNBits', inputs, { K: inF, N: outF, bits, block_size: QUANT_BLOCK_SIZE }, output, MS_DOMAIN);
    }
    default: {
      const never: never = precision;
      throw new Error(`unreachable precision ${String(never)}`);
    }
  }
}

/**
 * Rows of the embedding table [vocab, dim] for `ids`, in the stage's precision:
 * - f32: Gather on the table;
 * - f16: the table stored as float16 and cast whole before the Gather
 *   (WebGPU without `shader-f16`, SwiftShader and many adapters, cannot run a
 *   float16 Gather; the cast of an initializer is folded into a float32 table
 *   when the session is created, so in memory it is float32 again);
 * - q8 and q4: the table quantised to 8 bits in blocks of 32 along each row
 *   (4 bits would cost more than it saves on a table read a row at a time);
 *   the rows, their scales and zero points are gathered as they are, and
 *   only the gathered rows are dequantised, so the table stays 8-bit in memory.
 */
export function gatherEmbedding(
  g: GraphBuilder,
  ids: string,
  name: string,
  table: Float32Array,
  vocab: number,
  dim: number,
  precision: WeightPrecision,
): string {
  switch (precision) {
    case 'f32':
      return g.op('Gather', [g.weight(name, [vocab, dim], table), ids], { axis: 0 });
    case 'f16': {
      const half = g.raw(`${name}.f16`, 'float16', [vocab, dim], bytesOf(toFloat16(table)));
      return g.op('Gather', [g.op('Cast', [half], { to: CAST_TO_FLOAT }), ids], { axis: 0 });
    }
    case 'q8':
    case 'q4': {
      const q = quantizeBlockwise(table, vocab, dim, 8, QUANT_BLOCK_SIZE);
      const rows = g.raw(`${name}.q8`, 'uint8', [vocab, q.kBlocks, QUANT_BLOCK_SIZE], q.data);
      const scales = g.raw(`${name}.scales`, 'float32', [vocab, q.kBlocks, 1], bytesOf(q.scales));
      const zeros = g.raw(`${name}.zero_points`, 'uint8', [vocab, q.kBlocks, 1], q.zeroPoints);
      const gather = (t: string): string => g.op('Gather', [t, ids], { axis: 0 });
      // [B, S, kBlocks, 32] − [B, S, kBlocks, 1], times [B, S, kBlocks, 1]
      const centred = g.op('Sub', [
        g.op('Cast', [gather(rows)], { to: CAST_TO_FLOAT }),
        g.op('Cast', [gather(zeros)], { to: CAST_TO_FLOAT }),
      ]);
      const flat = g.op('Reshape', [g.op('Mul', [centred, gather(scales)]), g.ints([0, 0, q.kBlocks * QUANT_BLOCK_SIZE])]);
      return q.kBlocks * QUANT_BLOCK_SIZE === dim ? flat : g.op('Slice', [flat, g.ints([0]), g.ints([dim]), g.ints([-1])]);
    }
    default: {
      const never: never = precision;
      throw new Error(`unreachable precision ${String(never)}`);
    }
  }
}
