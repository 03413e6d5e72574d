import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readWholeFile } from './read-whole-file.js';

let work: string;
beforeEach(() => {
  work = mkdtempSync(join(tmpdir(), 'webswarm-read-'));
});
afterEach(() => rmSync(work, { recursive: true, force: true }));

describe('readWholeFile', () => {
  it('reads a file in chunks, the last one short, into one array', () => {
    const bytes = Uint8Array.from({ length: 10_000 }, (_, i) => (i * 7) % 251);
    const path = join(work, 'f.bin');
    writeFileSync(path, bytes);
    expect(readWholeFile(path, 1024)).toEqual(bytes);
    expect(readWholeFile(path)).toEqual(bytes);
  });

  it('reads an empty file', () => {
    const path = join(work, 'empty.bin');
    writeFileSync(path, new Uint8Array(0));
    expect(readWholeFile(path).byteLength).toBe(0);
  });
});
