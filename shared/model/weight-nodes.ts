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
 * Rows of the embedding table [vocab, dim] for `ids`: float32 for f32 stages,
 * else the table is stored as float16 and cast whole before the Gather (a
 * quantised Gather is not worth its error on a table this size). The cast
 * comes first because WebGPU without `shader-f16` (SwiftShader, many
 * adapters) cannot run a float16 Gather; a cast of an initializer is folded
 * into a float32 table when the session is created, on every provider.
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
  if (precision === 'f32') return g.op('Gather', [g.weight(name, [vocab, dim], table), ids], { axis: 0 });
  const half = g.raw(`${name}.f16`, 'float16', [vocab, dim], bytesOf(toFloat16(table)));
  return g.op('Gather', [g.op('Cast', [half], { to: CAST_TO_FLOAT }), ids], { axis: 0 });
}
