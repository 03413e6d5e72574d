import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { goldenModelDir, readGolden } from '../../testing/golden.js';
import { ModelError } from './errors.js';
import { Tokenizer } from './tokenizer.js';

const dir = goldenModelDir('tiny-untied');
const tokenizer = Tokenizer.fromJson(
  'tokenizer.json',
  readFileSync(`${dir}/tokenizer.json`, 'utf8'),
  readFileSync(`${dir}/tokenizer_config.json`, 'utf8'),
);

describe('tokenizer', () => {
  it('gives the ids of the Python BPE that trained it', () => {
    for (const p of readGolden('tiny-untied').prompts) expect(tokenizer.encode(p.text)).toEqual(p.ids);
  });

  it.each([
    'Emma Woodhouse, handsome, clever, and rich,',
    '  two  spaces,\nnew lines\n\n and ünïcödé — “quotes” 123',
    'end of text <|endoftext|> inside',
  ])('round-trips %j', (text) => {
    expect(tokenizer.decode(tokenizer.encode(text))).toBe(text);
  });

  it('keeps the special end-of-text token whole', () => {
    expect(tokenizer.encode('a<|endoftext|>b')).toContain(0);
  });

  it('names its special tokens as tokenizer_config.json does: no pad token unless it names one', () => {
    const json = readFileSync(`${dir}/tokenizer.json`, 'utf8');
    const config = JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, 'utf8')) as Record<string, unknown>;
    expect(tokenizer.special).toMatchObject({ eos: '<|endoftext|>', bos: null, pad: null });
    const named = Tokenizer.fromJson('t.json', json, JSON.stringify({ ...config, pad_token: '<|endoftext|>' }));
    expect(named.special).toMatchObject({ eos: '<|endoftext|>', pad: '<|endoftext|>' });
    expect(Tokenizer.fromJson('t.json', json, null).special).toEqual({ eos: null, bos: null, pad: null, chatTemplate: null });
  });

  it('refuses a file that is not a tokenizer', () => {
    expect(() => Tokenizer.fromJson('t.json', '{"vocab": {}}', null)).toThrowError(ModelError);
    expect(() => Tokenizer.fromJson('t.json', 'not json', null)).toThrowError(/t.json: not JSON/);
  });
});
