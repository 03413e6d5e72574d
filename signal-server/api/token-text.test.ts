import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Tokenizer } from '../../shared/model/tokenizer.js';
import { TokenTexts, textOfBytes } from './token-text.js';

const MODEL = 'fixtures/models/tiny-untied';
const json = readFileSync(join(MODEL, 'tokenizer.json'), 'utf8');
const config = join(MODEL, 'tokenizer_config.json');
const tokenizer = Tokenizer.fromJson(join(MODEL, 'tokenizer.json'), json, existsSync(config) ? readFileSync(config, 'utf8') : null);
const texts = TokenTexts.fromTokenizerJson(json, (ids) => tokenizer.decode(ids));
const VOCAB = 2048;
const utf8 = new TextEncoder();

describe('TokenTexts (a byte-level BPE: tiny-untied)', () => {
  it('spells every whole-character token as the tokenizer decodes it alone', () => {
    let whole = 0;
    for (let id = 0; id < VOCAB; id++) {
      const t = texts.of(id);
      const decoded = tokenizer.decode([id]);
      if (decoded.includes('\uFFFD')) continue;
      whole++;
      expect(t.token, `token ${id}`).toBe(decoded);
      expect(t.bytes, `token ${id}`).toEqual([...utf8.encode(decoded)]);
    }
    expect(whole).toBeGreaterThan(VOCAB / 2);
  });

  it('gives the exact bytes of tokens that hold part of a character, escaped in the text', () => {
    const partial = [];
    for (let id = 0; id < VOCAB; id++) if (tokenizer.decode([id]).includes('\uFFFD')) partial.push(texts.of(id));
    expect(partial.length).toBeGreaterThan(0);
    for (const t of partial) {
      expect(t.token).toMatch(/\\x[89a-f][0-9a-f]/);
      expect(t.token).not.toContain('\uFFFD');
    }
    // The single-byte tokens of the alphabet are all there, each with its own byte.
    expect(new Set(partial.filter((t) => t.bytes.length === 1).map((t) => t.bytes[0])).size).toBe(
      partial.filter((t) => t.bytes.length === 1).length,
    );
  });

  it('gives the bytes of a text back when its tokens’ bytes are joined, accents and curly quotes included', () => {
    for (const text of ['Elizabeth smiled.', 'café “quoted” — naïve', 'Mr. Darcy’s 10 000 a year…']) {
      const bytes = tokenizer.encode(text).flatMap((id) => texts.of(id).bytes);
      expect(new TextDecoder().decode(Uint8Array.from(bytes))).toBe(text);
    }
  });

  it('spells a special token as its content', () => {
    expect(texts.of(0)).toEqual({ token: '<|endoftext|>', bytes: [...utf8.encode('<|endoftext|>')] });
  });
});

describe('textOfBytes', () => {
  it('decodes whole UTF-8 characters and escapes the bytes of a split one', () => {
    expect(textOfBytes([0x20, 0x63, 0x61, 0x66, 0xc3, 0xa9])).toBe(' café');
    expect(textOfBytes([0x20, 0xe2, 0x80])).toBe(' \\xe2\\x80');
    expect(textOfBytes([0x9c])).toBe('\\x9c');
  });
});

describe('TokenTexts.fromTokenizerJson', () => {
  it('refuses a file without a vocabulary, by name', () => {
    expect(() => TokenTexts.fromTokenizerJson('{"model": {"type": "BPE"}}', () => '')).toThrow(/model\.vocab/);
    expect(() => TokenTexts.fromTokenizerJson('[]', () => '')).toThrow(/"model"/);
  });

  it('reads SentencePiece conventions: ▁ for a space and <0xNN> byte pieces', () => {
    const sp = TokenTexts.fromTokenizerJson(
      JSON.stringify({ model: { type: 'BPE', vocab: { '▁the': 0, '<0xE2>': 1, ok: 2 } }, decoder: { type: 'Metaspace' } }),
      () => 'unused',
    );
    expect(sp.of(0)).toEqual({ token: ' the', bytes: [0x20, 0x74, 0x68, 0x65] });
    expect(sp.of(1)).toEqual({ token: '\\xe2', bytes: [0xe2] });
    expect(sp.of(2)).toEqual({ token: 'ok', bytes: [0x6f, 0x6b] });
  });
});
