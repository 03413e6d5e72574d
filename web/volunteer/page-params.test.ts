import { describe, expect, it } from 'vitest';
import { pageParamProblems } from './page-params.js';

const problems = (search: string) => pageParamProblems(new URLSearchParams(search));

describe('the volunteer page’s parameters, checked before the visitor is asked', () => {
  it('takes what runs', () => {
    expect(problems('')).toEqual([]);
    expect(problems('?backend=wasm&datapath=worker&share=0.5&capture=on&model=austen-2m&autopause=1')).toEqual([]);
    expect(problems('?backend=webgpu&datapath=main&share=2&capture=4')).toEqual([]);
  });

  it('names each value that cannot run (before, ?backend= and ?datapath= were ignored, ?capture= said so only after the click)', () => {
    expect(problems('?backend=nonsense&datapath=x&share=abc&capture=foo')).toEqual([
      '?backend= must be wasm or webgpu, not "nonsense"',
      '?datapath= must be main or worker, not "x"',
      '?share= must be a number (the most of the time to compute, 0.05–1), not "abc"',
      '?capture= must be on, off or a number of sessions in 1..16, not "foo"',
    ]);
    expect(problems('?capture=0')).toEqual(['?capture= must be on, off or a number of sessions in 1..16, not "0"']);
  });

  it('never repeats a long value whole', () => {
    const [message] = problems(`?capture=${'x'.repeat(5_000)}`);
    expect(message).toBe(`?capture= must be on, off or a number of sessions in 1..16, not "${'x'.repeat(32)}…"`);
  });
});
