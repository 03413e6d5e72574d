import { describe, expect, it } from 'vitest';
import { TextStream } from './text-stream.js';

// A toy decoder: each id is one piece of text; id 9 stands for half of a multi-byte character.
const PIECES = ['Hello', ',', ' world', '!', ' The', ' end', '\n', '\n\n', 'X'];
const decode = (ids: readonly number[]) => ids.map((i) => (i === 9 ? '\uFFFD' : PIECES[i])).join('');

function run(ids: number[], stops: string[]) {
  const s = new TextStream(decode, stops);
  const pieces: string[] = [];
  let used = 0;
  for (let n = 1; n <= ids.length && !s.stopped; n++) {
    pieces.push(s.push(ids.slice(0, n)));
    used = n;
  }
  pieces.push(s.finish(ids.slice(0, used)));
  return { pieces, text: s.text, stopped: s.stopped, used };
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
