// The status line stays below the log on a terminal: each log line clears it,
// is written, and the status is drawn again; a long status is cut to the width.
import { describe, expect, it } from 'vitest';
import { StatusLine } from './status-line.js';

const CLEAR = '\r\u001b[2K';

function terminal(columns: number): { columns: number; written: string[]; write(chunk: string): void } {
  const written: string[] = [];
  return { columns, written, write: (chunk: string) => void written.push(chunk) };
}

describe('StatusLine', () => {
  it('passes lines through while there is no status, then keeps the status under each line', () => {
    const t = terminal(80);
    const s = new StatusLine(t);
    s.write('building\n');
    s.set('[1 s] ready per stage 0/3');
    s.write('volunteer a joined\n');
    s.set('[2 s] ready per stage 1/3');
    s.clear();
    s.write('ready\n');
    expect(t.written).toEqual([
      'building\n',
      `${CLEAR}[1 s] ready per stage 0/3`,
      `${CLEAR}volunteer a joined\n[1 s] ready per stage 0/3`,
      `${CLEAR}[2 s] ready per stage 1/3`,
      CLEAR,
      'ready\n',
    ]);
  });

  it('cuts a status wider than the terminal, so that it never wraps', () => {
    const t = terminal(24);
    new StatusLine(t).set('x'.repeat(40));
    expect(t.written).toEqual([`${CLEAR}${'x'.repeat(22)}…`]);
  });
});
