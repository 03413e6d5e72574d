// Log formats: pino's JSON lines for machines, one short line a record for a
// person at a terminal, and `auto` choosing by whether the output is a terminal.
import { describe, expect, it } from 'vitest';
import { createLogger, formatLogLine, printable, resolveLogFormat } from './log.js';

function capture(): { lines: string[]; write(chunk: string): void } {
  const lines: string[] = [];
  return { lines, write: (chunk: string) => void lines.push(chunk) };
}

describe('log formats', () => {
  it('auto is pretty on a terminal and JSON anywhere else; json and pretty are what they say', () => {
    expect(resolveLogFormat('auto', true)).toBe('pretty');
    expect(resolveLogFormat('auto', false)).toBe('json');
    expect(resolveLogFormat('auto', undefined)).toBe('json');
    expect(resolveLogFormat('json', true)).toBe('json');
    expect(resolveLogFormat('pretty', false)).toBe('pretty');
  });

  it('pretty writes time, level, message and the extra fields on one line, without pino’s own fields', () => {
    const time = new Date(2026, 0, 2, 13, 4, 5).getTime();
    const line = formatLogLine(
      `${JSON.stringify({ level: 40, time, pid: 7, hostname: 'h', name: 'webswarm', msg: 'slow replica', stage: 2, ids: ['a'] })}\n`,
    );
    expect(line).toBe('13:04:05 WARN  slow replica stage=2 ids=["a"]\n');
    expect(formatLogLine('not json')).toBe('not json\n');
  });

  it('pretty writes a client’s control characters, line breaks and bidirectional overrides as escapes, other text as it is', () => {
    expect(printable('a\nb\r\tc\u001b[2J\u0007\u007f\u0085\u2028\u2029\u202e\u2066 é 日本 “q”')).toBe(
      'a\\nb\\r\\tc\\u001b[2J\\u0007\\u007f\\u0085\\u2028\\u2029\\u202e\\u2066 é 日本 “q”',
    );
    const line = formatLogLine(JSON.stringify({ level: 50, time: 0, msg: 'x\n00:00:00 ERROR forged', 'k\u001b': 'v\n' }));
    expect(line.split('\n')).toHaveLength(2); // one line and its end
    expect(line).toContain('x\\n00:00:00 ERROR forged k\\u001b=v\\n');
    // Invisible ones too, and inside an extra that is an object (JSON.stringify keeps C1 and U+2028 as they are).
    expect(printable('a\u200bb\u200ec\u200fd\u061ce\ufefff\u2060g')).toBe('a\\u200bb\\u200ec\\u200fd\\u061ce\\ufefff\\u2060g');
    const object = formatLogLine(JSON.stringify({ level: 30, time: 0, msg: 'm', detail: { text: 'x\u009b2J\u202eevil\u2028y' } }));
    expect(object).toContain('detail={"text":"x\\u009b2J\\u202eevil\\u2028y"}');
  });

  it('a pretty logger writes human lines and a json logger JSON lines to the same kind of sink', () => {
    const pretty = capture();
    createLogger('info', pretty, 'pretty').info({ url: 'http://127.0.0.1:1' }, 'listening');
    expect(pretty.lines).toHaveLength(1);
    expect(pretty.lines[0]).toMatch(/^\d\d:\d\d:\d\d INFO {2}listening url=http:\/\/127\.0\.0\.1:1\n$/);

    const json = capture();
    createLogger('info', json, 'json').info({ url: 'http://127.0.0.1:1' }, 'listening');
    expect(json.lines).toHaveLength(1);
    expect(JSON.parse(json.lines[0] ?? '')).toMatchObject({ level: 30, msg: 'listening', url: 'http://127.0.0.1:1' });
  });
});
