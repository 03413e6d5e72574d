/**
 * Values a client sent, looked at without trusting their shape: a description
 * for an error message that never walks into the value, and a check that a
 * value is plain JSON within a depth and a size, made without recursion. A
 * value nested thousands deep overflows the stack of anything recursive
 * (JSON.stringify, Socket.IO's encoder): such a value must be refused before
 * any of them sees it.
 */

/** A short description of a value a client sent, for an error message: a string's first characters, a number, or its kind. */
export function describeValue(v: unknown, maxChars = 40): string {
  if (typeof v === 'string')
    return v.length <= maxChars ? JSON.stringify(v) : `${JSON.stringify(v.slice(0, maxChars))}… (${v.length} characters)`;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint' || v === null || v === undefined) return String(v);
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === 'object') return 'an object';
  return `a ${typeof v}`;
}

export interface JsonLimits {
  /** Deepest nesting of arrays and objects (a scalar is depth 0, `[1]` depth 1). */
  readonly maxDepth: number;
  /** Most bytes of its JSON text (counted as it is walked, UTF-16 units; refused as soon as it is over). */
  readonly maxBytes: number;
  /**
   * Whether NaN and ±Infinity are refused (default true: JSON cannot carry them). False where the value came from
   * JSON.parse, which reads 1e400 as Infinity, and the fields' own parsers name such a number.
   */
  readonly finiteOnly?: boolean;
}

/**
 * Why `v` is not plain JSON within `limits` (strings, finite numbers,
 * booleans, null, arrays and plain objects only), or null when it is. Walks
 * with its own stack, so no nesting overflows it, and stops at the first
 * value past a limit.
 */
export function jsonShapeProblem(v: unknown, limits: JsonLimits): string | null {
  const stack: { value: unknown; depth: number }[] = [{ value: v, depth: 0 }];
  let bytes = 0;
  while (stack.length > 0) {
    const { value, depth } = stack.pop() as { value: unknown; depth: number };
    let children: readonly unknown[] = [];
    if (typeof value === 'string') bytes += value.length + 2;
    else if (typeof value === 'number') {
      if (!Number.isFinite(value) && limits.finiteOnly !== false) return `holds ${value}, which JSON cannot carry`;
      bytes += String(value).length;
    } else if (typeof value === 'boolean' || value === null) bytes += 5;
    else if (Array.isArray(value) || (typeof value === 'object' && isPlainObject(value))) {
      if (depth + 1 > limits.maxDepth) return `is nested deeper than ${limits.maxDepth}`;
      children = Array.isArray(value) ? value : Object.values(value);
      bytes += 2 + children.length;
      if (!Array.isArray(value)) for (const k of Object.keys(value)) bytes += k.length + 3;
    } else return `holds ${describeValue(value)}, which is not JSON`;
    // Before its children are stacked: a long array over the limit is refused on its length.
    if (bytes > limits.maxBytes) return `is over ${limits.maxBytes} bytes`;
    for (const x of children) stack.push({ value: x, depth: depth + 1 });
  }
  return null;
}

function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}
