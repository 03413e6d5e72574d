// The embed widget's data attributes: what an embedder writes, what the widget uses, and the console sentence for
// every value it did not take as written (before, each was replaced without a word).
import { describe, expect, it } from 'vitest';
import { hardwareWords, widgetOptions } from './options.js';

const ORIGIN = 'https://swarm.example';

describe('widgetOptions', () => {
  it('takes every documented value as written, and says nothing', () => {
    const { options, problems } = widgetOptions(
      { model: 'austen-2m', position: 'top-left', theme: 'dark', autoPause: 'false', maxShare: '0.25', backend: 'wasm' },
      ORIGIN,
    );
    expect(options).toEqual({
      origin: ORIGIN,
      model: 'austen-2m',
      position: 'top-left',
      theme: 'dark',
      autoPause: false,
      maxShare: 0.25,
      backend: 'wasm',
    });
    expect(problems).toEqual([]);
  });

  it('uses the defaults for attributes that are absent, and says nothing', () => {
    const { options, problems } = widgetOptions({}, ORIGIN);
    expect(options).toEqual({
      origin: ORIGIN,
      model: null,
      position: 'bottom-right',
      theme: 'auto',
      autoPause: true,
      maxShare: 0.5,
      backend: null,
    });
    expect(problems).toEqual([]);
  });

  it('names each value it does not know, and what it uses instead', () => {
    const { options, problems } = widgetOptions(
      { position: 'middle', theme: 'purple', backend: 'cuda', autoPause: 'no', maxShare: 'abc' },
      ORIGIN,
    );
    expect(options).toMatchObject({ position: 'bottom-right', theme: 'auto', backend: null, autoPause: true, maxShare: 0.5 });
    expect(problems).toEqual([
      'data-max-share="abc" is not a number from 0.05 to 1: 0.5 is used',
      'data-backend="cuda" is not one of wasm, webgpu: WebGPU where there is an adapter is used',
      'data-position="middle" is not one of bottom-right, bottom-left, top-right, top-left: bottom-right is used',
      'data-theme="purple" is not one of light, dark, auto: auto is used',
      'data-auto-pause="no" is not one of true, false: true is used',
    ]);
  });

  it('keeps a share outside 0.05–1 to that range, and says so: 50 meant as 50 % is full speed, in the console', () => {
    expect(widgetOptions({ maxShare: '50' }, ORIGIN)).toEqual({
      options: expect.objectContaining({ maxShare: 1 }),
      problems: ['data-max-share="50" is outside 0.05–1 (a share of the time: 0.5 is half): 1 is used'],
    });
    expect(widgetOptions({ maxShare: '0.01' }, ORIGIN).options.maxShare).toBe(0.05);
    expect(widgetOptions({ maxShare: '0.01' }, ORIGIN).problems).toHaveLength(1);
    expect(widgetOptions({ maxShare: '50%' }, ORIGIN).problems).toEqual([
      'data-max-share="50%" is not a number from 0.05 to 1: 0.5 is used',
    ]);
    expect(widgetOptions({ maxShare: '0.50' }, ORIGIN)).toEqual({ options: expect.objectContaining({ maxShare: 0.5 }), problems: [] });
    expect(widgetOptions({ maxShare: '1' }, ORIGIN).problems).toEqual([]);
  });
});

describe('hardwareWords', () => {
  it('says what the card promises: the CPU when WASM is asked for, the GPU when WebGPU is', () => {
    expect(hardwareWords('wasm')).toBe('on its CPU');
    expect(hardwareWords('webgpu')).toBe('on its GPU');
    expect(hardwareWords(null)).toBe('on its GPU where it offers one, else on the CPU');
  });
});
