import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Tokenizer } from '../../shared/model/tokenizer.js';
import { goldenModelDir } from '../../testing/golden.js';
import { TextStream } from './text-stream.js';

// A toy decoder: each id is one piece of text; id 9 stands for half of a multi-byte character.
const PIECES = ['Hello', ',', ' world', '!', ' The', ' end', '\n', '\n\n', 'X'];
const decode = (ids: readonly number[]) => ids.map((i) => (i === 9 ? '\uFFFD' : PIECES[i])).join('');

function run(ids: number[], stops: string[]) {
  return streamAll(new TextStream(decode, stops), ids);
}

describe('TextStream', () => {
  it('streams every piece when there is no stop sequence, and the pieces add up to the text', () => {
    const r = run([0, 1, 2, 3], []);
    expect(r.pieces.slice(0, 4)).toEqual(['Hello', ',', ' world', '!']);
    expect(r.pieces.join('')).toBe('Hello, world!');
    expect(r.stopped).toBe(false);
  });

  it('cuts the text before the first stop sequence and stops at the token that completed it', () => {
    const r = run([0, 1, 2, 3, 4, 5], [' wor', '!']);
    expect(r.text).toBe('Hello,');
    expect(r.pieces.join('')).toBe('Hello,');
    expect(r.stopped).toBe(true);
    expect(r.used).toBe(3);
  });

  it('holds back an ending that may begin a stop sequence, and releases it when it does not', () => {
    const s = new TextStream(decode, [' worm']);
    expect(s.push([0])).toBe('Hello');
    expect(s.push([0, 1])).toBe(',');
    // " world" could not be " worm" any more once "l" arrives: nothing to hold back.
    expect(s.push([0, 1, 2])).toBe(' world');
    const t = new TextStream(decode, ['\n\n\n']);
    expect(t.push([6])).toBe('');
    expect(t.push([6, 7])).toBe('');
    expect(t.stopped).toBe(true);
    expect(t.text).toBe('');
  });

  it('flushes what it held back when the generation ends for another reason', () => {
    const s = new TextStream(decode, ['\n\nEND']);
    expect(s.push([0, 7])).toBe('Hello');
    expect(s.finish([0, 7])).toBe('\n\n');
    expect(s.text).toBe('Hello\n\n');
  });

  it('holds back half a character', () => {
    const s = new TextStream(decode, []);
    expect(s.push([0, 9])).toBe('Hello');
    expect(s.push([0, 9, 8])).toBe('\uFFFDX');
  });
});

describe('TextStream on a byte-level tokenizer (tiny-untied)', () => {
  const dir = goldenModelDir('tiny-untied');
  const json = readFileSync(`${dir}/tokenizer.json`, 'utf8');
  const config = JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, 'utf8')) as Record<string, unknown>;
  const t = Tokenizer.fromJson('t.json', json, JSON.stringify(config));
  const decode = (ids: readonly number[]) => t.decode(ids);
  // Ids 196 and 170 are the bytes C3 and A9: "é" split across two tokens.
  const [c3, a9] = [196, 170];

  it('a stop of U+FFFD does not fire on a character split across two tokens, and does on one left unfinished', () => {
    expect([decode([c3]), decode([c3, a9])]).toEqual(['\uFFFD', 'é']);
    const split = new TextStream(decode, ['\uFFFD']);
    expect(split.push([c3])).toBe('');
    expect(split.push([c3, a9])).toBe('é');
    expect(split.stopped).toBe(false);
    // C3 then a space: the character is never finished, its U+FFFD is the text's, and the stop ends it there.
    const space = t.encode(' ')[0] as number;
    const unfinished = new TextStream(decode, ['\uFFFD']);
    expect(unfinished.push([c3])).toBe('');
    expect(unfinished.push([c3, space])).toBe('');
    expect([unfinished.stopped, unfinished.text]).toEqual([true, '']);
  });

  it("with clean_up_tokenization_spaces on in the model's config, the text keeps growing and a stop sequence is seen", () => {
    const cleaning = Tokenizer.fromJson('t.json', json, JSON.stringify({ ...config, clean_up_tokenization_spaces: true }));
    const ids = cleaning.encode(' , and , so');
    const whole = streamAll(new TextStream((x) => cleaning.decode(x), []), ids);
    expect(whole.text).toBe(' , and , so');
    const stopped = streamAll(new TextStream((x) => cleaning.decode(x), [',']), ids);
    expect([stopped.text, stopped.stopped, stopped.used]).toEqual([' ', true, 2]);
  });
});

/** Streams `ids` token by token: the pieces, the text, whether a stop sequence ended it, and how many ids it used. */
function streamAll(s: TextStream, ids: readonly number[]) {
  const pieces: string[] = [];
  let used = 0;
  for (let n = 1; n <= ids.length && !s.stopped; n++) {
    pieces.push(s.push(ids.slice(0, n)));
    used = n;
  }
  pieces.push(s.finish(ids.slice(0, used)));
  return { pieces, text: s.text, stopped: s.stopped, used };
}

/** A SentencePiece-style tokenizer (Llama's decoders: ▁ for a space, byte fallback, the first token's space stripped). */
function sentencePieceTokenizer(): { tokenizer: Tokenizer; vocabSize: number } {
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = 3 + b;
  for (const w of ['▁', '▁the', '▁The', 'the', '▁cat', '▁sat', '.', ',', '▁Hello', 'é', '▁naïve', "'s", 'a', '▁a', '\n', '▁▁'])
    vocab[w] ??= Object.keys(vocab).length;
  const json = {
    version: '1.0',
    added_tokens: [],
    normalizer: null,
    pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false },
    post_processor: null,
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: { type: 'BPE', unk_token: '<unk>', fuse_unk: true, byte_fallback: true, vocab, merges: [] },
  };
  return { tokenizer: Tokenizer.fromJson('sp', JSON.stringify(json), '{}'), vocabSize: Object.keys(vocab).length };
}

/** Seeded ids (a linear congruential generator): the same sequences every run. */
function randomIds(seed: number, n: number, vocab: number): number[] {
  let x = seed;
  return Array.from({ length: n }, () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x % vocab;
  });
}

describe('TextStream on real tokenizers: windows give exactly what decoding every id gave', () => {
  const austen = Tokenizer.fromJson(
    'austen-2m',
    readFileSync('models/austen-2m/tokenizer.json', 'utf8'),
    readFileSync('models/austen-2m/tokenizer_config.json', 'utf8'),
  );
  const sp = sentencePieceTokenizer();
  const austenText = austen.encode(readFileSync('models/austen-2m/samples.txt', 'utf8')).slice(0, 600);
  const cases: { name: string; tokenizer: Tokenizer; ids: number[] }[] = [
    { name: 'austen-2m, its samples', tokenizer: austen, ids: austenText },
    // Random ids split multi-byte characters and make invalid UTF-8.
    ...[1, 2, 3].map((seed) => ({ name: `austen-2m, random ids (seed ${seed})`, tokenizer: austen, ids: randomIds(seed, 300, 2048) })),
    ...[4, 5, 6].map((seed) => ({
      name: `SentencePiece-style, random ids (seed ${seed})`,
      tokenizer: sp.tokenizer,
      ids: randomIds(seed, 300, sp.vocabSize),
    })),
  ];
  for (const c of cases) {
    for (const stops of [[], ['\n\n', ' the'], ['Mr. Darcy', 'é', '.']]) {
      it(`${c.name}, stops ${JSON.stringify(stops)}`, () => {
        const decode = (ids: readonly number[]) => c.tokenizer.decode(ids);
        const windowed = streamAll(new TextStream(decode, stops), c.ids);
        const whole = streamAll(new TextStream(decode, stops, false), c.ids);
        expect(windowed.pieces).toEqual(whole.pieces);
        expect(windowed.text).toBe(whole.text);
        expect(windowed.used).toBe(whole.used);
        if (stops.length === 0) expect(windowed.text).toBe(c.tokenizer.decode(c.ids));
      });
    }
  }

  it('decodes a few ids a token, not every id so far: 2 048 tokens decode ~10⁴ ids, not ~2·10⁶', () => {
    const ids = austen.encode(readFileSync('models/austen-2m/samples.txt', 'utf8').repeat(8)).slice(0, 2048);
    expect(ids.length).toBe(2048);
    const s = new TextStream((x) => austen.decode(x), ['THE END']);
    streamAll(s, ids);
    // Per token: the last chunk (about 1 id) twice and the new id, plus the finish's one whole decode.
    expect(s.decodedIds).toBeLessThan(6 * 2048 + 2048);
    expect(s.text).toBe(austen.decode(ids));
  });
});
