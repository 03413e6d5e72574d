import { describe, expect, it } from 'vitest';
import { describeValue, jsonShapeProblem } from './json-shape.js';

/** An array nested `depth` deep, built in a loop (a recursive builder would overflow first). */
function nested(depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

const limits = { maxDepth: 8, maxBytes: 1024 };

describe('describeValue', () => {
  it('quotes short strings, cuts long ones with their length, and names other values by kind without walking them', () => {
    expect(describeValue('abc')).toBe('"abc"');
    expect(describeValue('x'.repeat(100), 5)).toBe('"xxxxx"… (100 characters)');
    expect(describeValue(3.5)).toBe('3.5');
    expect(describeValue(null)).toBe('null');
    expect(describeValue(undefined)).toBe('undefined');
    expect(describeValue([1, 2, 3])).toBe('an array of 3');
    expect(describeValue({ a: 1 })).toBe('an object');
    expect(describeValue(() => 1)).toBe('a function');
    // What JSON.stringify could not describe: nested 100 000 deep.
    expect(describeValue(nested(100_000))).toBe('an array of 1');
  });
});

describe('jsonShapeProblem', () => {
  it('accepts plain JSON within the limits, as WebRTC signals are', () => {
    expect(jsonShapeProblem({ type: 'offer', sdp: 'v=0\r\n' }, limits)).toBeNull();
    expect(jsonShapeProblem({ candidate: { candidate: 'candidate:1 1 udp', sdpMid: '0', sdpMLineIndex: 0 } }, limits)).toBeNull();
    expect(jsonShapeProblem(Object.assign(Object.create(null) as object, { a: [true, null, -1e-3] }), limits)).toBeNull();
    expect(jsonShapeProblem(nested(8), limits)).toBeNull();
  });

  it('refuses one level past the depth, and any depth without overflowing the stack', () => {
    expect(jsonShapeProblem(nested(9), limits)).toBe('is nested deeper than 8');
    expect(jsonShapeProblem(nested(200_000), limits)).toBe('is nested deeper than 8');
  });

  it('refuses what JSON cannot carry, naming it', () => {
    expect(jsonShapeProblem({ a: Number.NaN }, limits)).toBe('holds NaN, which JSON cannot carry');
    expect(jsonShapeProblem([Number.POSITIVE_INFINITY], limits)).toBe('holds Infinity, which JSON cannot carry');
    // Where JSON.parse made it (1e400), the field's own parser names it.
    expect(jsonShapeProblem(JSON.parse('[1e400]'), { ...limits, finiteOnly: false })).toBeNull();
    expect(jsonShapeProblem({ a: undefined }, limits)).toBe('holds undefined, which is not JSON');
    expect(jsonShapeProblem(new Date(0), limits)).toBe('holds an object, which is not JSON');
    expect(jsonShapeProblem({ b: new Uint8Array(4) }, limits)).toBe('holds an object, which is not JSON');
    expect(jsonShapeProblem([1n], limits)).toBe('holds 1, which is not JSON');
  });

  it('refuses a value over the byte limit as it walks, before visiting all of a large array', () => {
    expect(jsonShapeProblem('x'.repeat(1023), limits)).toBe('is over 1024 bytes');
    expect(jsonShapeProblem('x'.repeat(1000), limits)).toBeNull();
    const big = new Array<number>(10_000_000).fill(0);
    const t0 = performance.now();
    expect(jsonShapeProblem(big, limits)).toBe('is over 1024 bytes');
    // Refused on its length alone: a generous bound (stacking its 10 million entries took seconds).
    expect(performance.now() - t0).toBeLessThan(500);
    // Near the limit, the count is close to JSON's length (within a few bytes per value).
    const list = Array.from({ length: 100 }, (_, i) => `item${i}`);
    expect(JSON.stringify(list).length).toBeLessThan(1024);
    expect(jsonShapeProblem(list, limits)).toBeNull();
  });
});
