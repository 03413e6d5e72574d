import { parseArgs } from 'node:util';
import { describe, expect, it } from 'vitest';
import { editDistance, unknownOptionHint } from './closest-name.js';

/** What parseArgs throws for `args` with the flags `names`. */
function thrown(args: string[], names: string[]): unknown {
  try {
    parseArgs({ options: Object.fromEntries(names.map((n) => [n, { type: 'string' as const }])), args, strict: true });
  } catch (e) {
    return e;
  }
  throw new Error('parseArgs took it');
}

describe('the name an operator likely meant', () => {
  it('counts insertions, deletions, substitutions and two neighbours swapped as one edit each', () => {
    expect(editDistance('PORT', 'PORT')).toBe(0);
    expect(editDistance('PROT', 'PORT')).toBe(1);
    expect(editDistance('API_KEY', 'API_KEYS')).toBe(1);
    expect(editDistance('HOME', 'HOST')).toBe(2);
    expect(editDistance('', 'abc')).toBe(3);
  });

  it('names the flag an unknown one was one or two edits from, else where the flags are listed; other errors as they are', () => {
    const flags = ['port', 'host', 'volunteers', 'redundancy'];
    // Before: "Unknown option '--prot'" alone (the server's own start), with no usage line.
    expect(unknownOptionHint(thrown(['--prot', '1'], flags), flags)).toBe("Unknown option '--prot': did you mean --port?");
    expect(unknownOptionHint(thrown(['--volunters=2'], flags), flags)).toBe("Unknown option '--volunters': did you mean --volunteers?");
    expect(unknownOptionHint(thrown(['--zzzz', '1'], flags), flags, 'README.md')).toBe("Unknown option '--zzzz' (every flag: README.md)");
    expect(unknownOptionHint(thrown(['--zzzz', '1'], flags), flags)).toBe("Unknown option '--zzzz'");
    expect(unknownOptionHint(new Error('PORT must be an integer'), flags)).toBe('PORT must be an integer');
  });
});
