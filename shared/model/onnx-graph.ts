import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

/** A dimension: a fixed size or a named dynamic axis. */
export type Dim = number | string;
export type ElemType = 'float32' | 'int64' | 'int32';

export interface ValueSpec {
  readonly name: string;
  readonly dtype: ElemType;
  readonly shape: readonly Dim[];
}

const DATA_TYPE: Record<ElemType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  int64: onnx.TensorProto.DataType.INT64,
  int32: onnx.TensorProto.DataType.INT32,
};

/** onnxruntime's contrib operators (MatMulNBits, GroupQueryAttention, SkipSimplifiedLayerNormalization, …). */
export const MS_DOMAIN = 'com.microsoft';

type AttrValue = number | readonly number[] | { readonly float: number };

/** Element types of raw initializers (weights stored in another precision than float32). */
export type InitializerType = 'float32' | 'float16' | 'uint8';
const INITIALIZER_TYPE: Record<InitializerType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  float16: onnx.TensorProto.DataType.FLOAT16,
  uint8: onnx.TensorProto.DataType.UINT8,
};

/**
 * Builds one ONNX graph node by node. Names of intermediate values are
 * generated; small int64 constants are shared. Opset 17, which both
 * onnxruntime-web (WASM and WebGPU) and onnxruntime-node load.
 */
export class GraphBuilder {
  static readonly OPSET = 17;
  private readonly nodes: onnxProto.onnx.INodeProto[] = [];
  private readonly initializers: onnxProto.onnx.ITensorProto[] = [];
  private readonly constCache = new Map<string, string>();
  private readonly domains = new Set<string>();
  private counter = 0;

  private fresh(hint: string): string {
    this.counter += 1;
    return `${hint}_${this.counter}`;
  }

  /** Adds a float32 initializer (a weight) and returns its name. */
  weight(name: string, dims: readonly number[], data: Float32Array): string {
    this.initializers.push({
      name,
      dataType: DATA_TYPE.float32,
      dims: [...dims],
      rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    });
    return name;
  }

  /** Adds an initializer of any element type from its little-endian bytes, and returns its name. */
  raw(name: string, type: InitializerType, dims: readonly number[], bytes: Uint8Array): string {
    this.initializers.push({ name, dataType: INITIALIZER_TYPE[type], dims: [...dims], rawData: bytes });
    return name;
  }

  /** An int64 constant tensor; a scalar when `scalar` is set. Shared by value. */
  ints(values: readonly number[], scalar = false): string {
    const key = `i:${scalar}:${values.join(',')}`;
    const hit = this.constCache.get(key);
    if (hit !== undefined) return hit;
    const name = this.fresh('const_i64');
    const data = new BigInt64Array(values.map((v) => BigInt(v)));
    this.initializers.push({
      name,
      dataType: DATA_TYPE.int64,
      dims: scalar ? [] : [values.length],
      rawData: new Uint8Array(data.buffer),
    });
    this.constCache.set(key, name);
    return name;
  }

  /** A float32 scalar constant. Shared by value. */
  float(value: number): string {
    const key = `f:${value}`;
    const hit = this.constCache.get(key);
    if (hit !== undefined) return hit;
    const name = this.fresh('const_f32');
    this.initializers.push({ name, dataType: DATA_TYPE.float32, dims: [], rawData: new Uint8Array(new Float32Array([value]).buffer) });
    this.constCache.set(key, name);
    return name;
  }

  /** Adds a node with one output; `output` names it (for graph outputs), else it is generated. */
  op(opType: string, inputs: readonly string[], attrs: Record<string, AttrValue> = {}, output?: string, domain = ''): string {
    const out = output ?? this.fresh(opType.toLowerCase());
    if (domain !== '') this.domains.add(domain);
    this.nodes.push({
      opType,
      ...(domain === '' ? {} : { domain }),
      input: [...inputs],
      output: [out],
      name: this.fresh(`n_${opType}`),
      attribute: Object.entries(attrs).map(([name, v]) => attribute(name, v)),
    });
    return out;
  }

  /**
   * Adds a node with several outputs: `outputs` names them; '' skips an
   * optional one, null generates a name. `domain` selects contrib operators.
   */
  opN(
    opType: string,
    inputs: readonly string[],
    outputs: readonly (string | null)[],
    attrs: Record<string, AttrValue> = {},
    domain = '',
  ): string[] {
    const outs = outputs.map((o) => o ?? this.fresh(opType.toLowerCase()));
    if (domain !== '') this.domains.add(domain);
    this.nodes.push({
      opType,
      domain,
      input: [...inputs],
      output: outs,
      name: this.fresh(`n_${opType}`),
      attribute: Object.entries(attrs).map(([name, v]) => attribute(name, v)),
    });
    return outs;
  }

  /** Serialises the graph as an ONNX model. */
  toBytes(graphName: string, inputs: readonly ValueSpec[], outputs: readonly ValueSpec[], docString: string): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'webswarm',
      producerVersion: '1',
      docString,
      opsetImport: [{ domain: '', version: GraphBuilder.OPSET }, ...[...this.domains].map((domain) => ({ domain, version: 1 }))],
      graph: {
        name: graphName,
        node: this.nodes,
        initializer: this.initializers,
        input: inputs.map(valueInfo),
        output: outputs.map(valueInfo),
      },
    });
    return onnx.ModelProto.encode(model).finish();
  }
}

function attribute(name: string, v: AttrValue): onnxProto.onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'number') return { name, type: T.INT, i: v };
  if ('float' in v) return { name, type: T.FLOAT, f: v.float };
  return { name, type: T.INTS, ints: [...v] };
}

function valueInfo(v: ValueSpec): onnxProto.onnx.IValueInfoProto {
  return {
    name: v.name,
    type: {
      tensorType: {
        elemType: DATA_TYPE[v.dtype],
        shape: { dim: v.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}
