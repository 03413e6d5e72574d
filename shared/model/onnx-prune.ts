// Removes graph outputs from a serialized ONNX model, with the nodes that then
// compute nothing anyone reads, by editing the protobuf's bytes: the graph's
// other fields (its initializers, the weights, nearly all of the bytes) are
// copied as they are, never decoded. onnxruntime runs every node of a graph at
// each call, whether a call fetches its outputs or not, so an output that one
// backend never reads still costs that backend its nodes at every step.

/** ModelProto.graph; GraphProto.node and .output; NodeProto.input, .output and .attribute; AttributeProto.g and .graphs. */
const MODEL_GRAPH = 7;
const GRAPH_NODE = 1;
const GRAPH_OUTPUT = 12;
const NODE_INPUT = 1;
const NODE_OUTPUT = 2;
const NODE_ATTRIBUTE = 5;
const ATTRIBUTE_GRAPH = 6;
const ATTRIBUTE_GRAPHS = 11;
const VALUE_INFO_NAME = 1;
const LENGTH_DELIMITED = 2;

/** One field of a message: its tag's first byte, its payload's first byte (after the length of a length-delimited one), its end. */
interface Field {
  readonly no: number;
  readonly wire: number;
  readonly start: number;
  readonly tagEnd: number;
  readonly body: number;
  readonly end: number;
}

function malformed(at: number, what: string): RangeError {
  return new RangeError(`not a well-formed ONNX model: ${what} at byte ${at}`);
}

/** A varint at `pos` and the position after it (values up to 2^53: lengths and tags). */
function varint(buf: Uint8Array, pos: number, end: number): [number, number] {
  let value = 0;
  let scale = 1;
  for (let p = pos; p < end && p < pos + 10; p++) {
    const b = buf[p] as number;
    value += (b & 0x7f) * scale;
    if (b < 0x80) {
      if (value > Number.MAX_SAFE_INTEGER) throw malformed(pos, 'a varint too large');
      return [value, p + 1];
    }
    scale *= 128;
  }
  throw malformed(pos, 'a truncated varint');
}

/** The position after the varint at `pos`, whatever its value (an int64 attribute may be negative: ten bytes). */
function skipVarint(buf: Uint8Array, pos: number, end: number): number {
  for (let p = pos; p < end && p < pos + 10; p++) if ((buf[p] as number) < 0x80) return p + 1;
  throw malformed(pos, 'a truncated varint');
}

function encodeVarint(value: number): Uint8Array {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Uint8Array.from(out);
}

/**
 * The most fields one message may have here: a stage graph has some thousands (nodes, initializers, inputs and
 * outputs); a crafted file of two-byte fields would otherwise cost some 40 bytes of heap a byte of input.
 */
export const MAX_FIELDS = 1 << 20;

/** The fields of the message in buf[from, to); `each`, where given, is called with each one instead of keeping them. */
function fields(buf: Uint8Array, from: number, to: number, each?: (f: Field) => void): Field[] {
  const out: Field[] = [];
  let pos = from;
  let count = 0;
  while (pos < to) {
    if (++count > MAX_FIELDS) throw malformed(pos, `more than ${MAX_FIELDS} fields in one message`);
    const [tag, tagEnd] = varint(buf, pos, to);
    const no = Math.floor(tag / 8);
    const wire = tag % 8;
    if (no === 0) throw malformed(pos, 'field number 0');
    let body = tagEnd;
    let end: number;
    if (wire === 0) end = skipVarint(buf, tagEnd, to);
    else if (wire === 1) end = tagEnd + 8;
    else if (wire === 5) end = tagEnd + 4;
    else if (wire === LENGTH_DELIMITED) {
      const [length, after] = varint(buf, tagEnd, to);
      body = after;
      end = after + length;
    } else throw malformed(pos, `wire type ${wire}`);
    if (end > to) throw malformed(pos, `field ${no} running past its message`);
    const f = { no, wire, start: pos, tagEnd, body, end };
    if (each === undefined) out.push(f);
    else each(f);
    pos = end;
  }
  return out;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function text(buf: Uint8Array, f: Field): string {
  if (f.wire !== LENGTH_DELIMITED) throw malformed(f.start, `field ${f.no} is not a string`);
  try {
    return utf8.decode(buf.subarray(f.body, f.end));
  } catch {
    throw malformed(f.body, 'a name that is not UTF-8');
  }
}

interface NodeInfo {
  readonly inputs: string[];
  readonly outputs: string[];
  /** An attribute holds a graph (If, Loop, Scan): its body may read any name, so nothing is pruned. */
  readonly subgraph: boolean;
}

function nodeInfo(buf: Uint8Array, node: Field): NodeInfo {
  const inputs: string[] = [];
  const outputs: string[] = [];
  let subgraph = false;
  for (const f of fields(buf, node.body, node.end)) {
    if (f.no === NODE_INPUT) inputs.push(text(buf, f));
    else if (f.no === NODE_OUTPUT) outputs.push(text(buf, f));
    else if (f.no === NODE_ATTRIBUTE && f.wire === LENGTH_DELIMITED)
      subgraph ||= fields(buf, f.body, f.end).some((a) => a.no === ATTRIBUTE_GRAPH || a.no === ATTRIBUTE_GRAPHS);
  }
  return { inputs, outputs, subgraph };
}

/** What pruneOutputs removed. */
export interface Pruned {
  readonly model: Uint8Array;
  readonly outputs: number;
  readonly nodes: number;
}

/**
 * `model` without the graph outputs `drop` names, nor the nodes whose outputs
 * no remaining node or graph output reads (a graph's nodes are in topological
 * order, as ONNX requires: one pass from the last). The same bytes, not a
 * copy, where it names none, or where a node holds a subgraph. Throws a
 * RangeError on bytes that are not a well-formed protobuf.
 */
export function pruneOutputs(model: Uint8Array, drop: (name: string) => boolean): Pruned {
  const unchanged = { model, outputs: 0, nodes: 0 };
  // The model's other fields are copied as they are: only the graph's place is kept.
  const graphs: Field[] = [];
  fields(model, 0, model.length, (f) => {
    if (f.no === MODEL_GRAPH && f.wire === LENGTH_DELIMITED) graphs.push(f);
  });
  if (graphs.length !== 1) return unchanged;
  const graph = graphs[0] as Field;
  const parts = fields(model, graph.body, graph.end);
  const removed = new Set<Field>();
  const live = new Set<string>();
  for (const f of parts) {
    if (f.no !== GRAPH_OUTPUT) continue;
    const name = fields(model, f.body, f.end).find((v) => v.no === VALUE_INFO_NAME);
    const n = name === undefined ? '' : text(model, name);
    if (drop(n)) removed.add(f);
    else live.add(n);
  }
  if (removed.size === 0) return unchanged;
  const outputs = removed.size;
  const nodes = parts.filter((f) => f.no === GRAPH_NODE);
  const infos = nodes.map((n) => nodeInfo(model, n));
  if (infos.some((i) => i.subgraph)) return unchanged;
  for (let i = nodes.length - 1; i >= 0; i--) {
    const info = infos[i] as NodeInfo;
    if (info.outputs.length > 0 && !info.outputs.some((o) => live.has(o))) {
      removed.add(nodes[i] as Field);
      continue;
    }
    for (const name of info.inputs) if (name !== '') live.add(name);
  }
  const kept = parts.filter((f) => !removed.has(f));
  const graphLength = kept.reduce((sum, f) => sum + (f.end - f.start), 0);
  const graphTag = model.subarray(graph.start, graph.tagEnd);
  const length = encodeVarint(graphLength);
  const size = model.length - (graph.end - graph.start) + graphTag.length + length.length + graphLength;
  const out = new Uint8Array(size);
  let at = 0;
  const put = (bytes: Uint8Array) => {
    out.set(bytes, at);
    at += bytes.length;
  };
  put(model.subarray(0, graph.start));
  put(graphTag);
  put(length);
  for (const k of kept) put(model.subarray(k.start, k.end));
  put(model.subarray(graph.end));
  return { model: out, outputs, nodes: removed.size - outputs };
}
