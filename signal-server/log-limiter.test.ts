import { describe, expect, it } from 'vitest';
import { LogLimiter } from './log-limiter.js';

function rig() {
  let t = 0;
  const lines: string[] = [];
  const limiter = new LogLimiter(
    { maxLines: 3, windowMs: 1000 },
    (l) => lines.push(l),
    () => t,
  );
  return { limiter, lines, advance: (ms: number) => (t += ms) };
}

describe('LogLimiter', () => {
  it('writes the first lines of a window, then one summary of the rest when the next window opens', () => {
    const { limiter, lines, advance } = rig();
    for (let i = 0; i < 1000; i++) limiter.line('s1', `refused ${i}`);
    expect(lines).toEqual(['refused 0', 'refused 1', 'refused 2']);
    advance(1000);
    limiter.line('s1', 'refused again');
    expect(lines.slice(3)).toEqual(['s1: 997 more suppressed (at most 3 lines per 1 s)', 'refused again']);
  });

  it('keeps each key apart, and reports what was suppressed when a key ends', () => {
    const { limiter, lines } = rig();
    for (let i = 0; i < 5; i++) limiter.line('a', `a${i}`);
    limiter.line('b', 'b0');
    limiter.end('a');
    limiter.end('b');
    limiter.end('never seen');
    expect(lines).toEqual(['a0', 'a1', 'a2', 'b0', 'a: 2 more suppressed (at most 3 lines per 1 s)']);
  });

  it('reports a key gone quiet with the next line of any key once its window is over, and forgets it', () => {
    const { limiter, lines, advance } = rig();
    for (let i = 0; i < 5; i++) limiter.line('a', `a${i}`);
    advance(500);
    limiter.line('b', 'b0');
    expect(lines).toEqual(['a0', 'a1', 'a2', 'b0']);
    advance(600);
    limiter.line('c', 'c0');
    expect(lines.slice(4)).toEqual(['a: 2 more suppressed (at most 3 lines per 1 s)', 'c0']);
    // Forgotten: a's next window starts anew, and b (nothing suppressed) went without a line.
    limiter.line('a', 'a5');
    expect(lines.slice(6)).toEqual(['a5']);
  });
});
