/**
 * Tensors to and from an onnxruntime build, written once for the Node build
 * (the reference runner) and the browser builds (a volunteer's worker). Pure:
 * the caller passes its build's Tensor class.
 */
import type { TensorData } from './pipeline.js';

/** A runtime's Tensor constructor, for the element types stages use. */
export type RuntimeTensorClass<T> = new (
  type: 'float32' | 'int64' | 'int32',
  data: Float32Array | BigInt64Array | Int32Array,
  dims: readonly number[],
) => T;

export function toRuntime<T>(Tensor: RuntimeTensorClass<T>, t: TensorData): T {
  return new Tensor(t.dtype, t.data, [...t.dims]);
}

/** A runtime's output as TensorData; any other element type than float32, int64 or int32 is an error naming the output. */
export function fromRuntime(name: string, type: string, dims: readonly number[], data: unknown): TensorData {
  if (type === 'float32' && data instanceof Float32Array) return { dtype: 'float32', dims: [...dims], data };
  if (type === 'int64' && data instanceof BigInt64Array) return { dtype: 'int64', dims: [...dims], data };
  if (type === 'int32' && data instanceof Int32Array) return { dtype: 'int32', dims: [...dims], data };
  throw new Error(`output ${name} has unexpected type ${type}`);
}
