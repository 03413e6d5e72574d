import { describe, expect, it } from 'vitest';
import { parseRanges, resolvePartition } from './partition.js';

describe('partition', () => {
  it('spreads layers evenly, extra layers first', () => {
    expect(resolvePartition(7, { stages: 3 })).toEqual([
      { start: 0, end: 3 },
      { start: 3, end: 5 },
      { start: 5, end: 7 },
    ]);
    expect(resolvePartition(6, { stages: 6 })).toHaveLength(6);
  });

  it('takes explicit ranges from the command line', () => {
    expect(resolvePartition(6, { ranges: parseRanges('0-1,1-5,5-6') })).toEqual([
      { start: 0, end: 1 },
      { start: 1, end: 5 },
      { start: 5, end: 6 },
    ]);
  });

  it('refuses gaps, overlaps, short covers and bad counts', () => {
    expect(() => resolvePartition(6, { ranges: parseRanges('0-2,3-6') })).toThrowError(/consecutive/);
    expect(() => resolvePartition(6, { ranges: parseRanges('0-4,2-6') })).toThrowError(/consecutive/);
    expect(() => resolvePartition(6, { ranges: parseRanges('0-4') })).toThrowError(/end at 4/);
    expect(() => resolvePartition(6, { stages: 0 })).toThrowError(/0 stages/);
    expect(() => parseRanges('0-2,x')).toThrowError(/"x" is not a range/);
  });
});
