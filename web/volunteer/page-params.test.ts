import { describe, expect, it } from 'vitest';
import { pageParamProblems, volunteerPageUrl } from './page-params.js';

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

  it('names a fault kind that does not exist', () => {
    expect(problems('?model=austen-2m&fault=wrong-token')).toEqual([]);
    expect(problems('?fault=steal')).toEqual([expect.stringMatching(/^\?fault= must be one of .*wrong-token.*, not "steal"$/)]);
  });

  it('links to the swarm’s own page with the share and pause the visitor was shown (before: model and backend only)', () => {
    expect(volunteerPageUrl('https://swarm.example', { model: 'austen-2m', backend: 'wasm', share: 0.5, autoPause: true })).toBe(
      'https://swarm.example/volunteer/?model=austen-2m&backend=wasm&share=0.5&autopause=1',
    );
    expect(volunteerPageUrl('https://swarm.example', { model: null, backend: null, share: 1, autoPause: false })).toBe(
      'https://swarm.example/volunteer/',
    );
  });

  it('never repeats a long value whole', () => {
    const [message] = problems(`?capture=${'x'.repeat(5_000)}`);
    expect(message).toBe(`?capture= must be on, off or a number of sessions in 1..16, not "${'x'.repeat(32)}…"`);
  });
});
