// Test helper: a server's log lines, as the tests read them.
import { Writable } from 'node:stream';
import { createLogger, type Logger, type LogLevel } from '../log.js';

/** The server's log lines, as the tests read them, and the logger that writes them (at `level`, in `format`). */
export function serverLog(level: LogLevel = 'info', format: 'json' | 'pretty' = 'json'): { lines: string[]; logger: Logger } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n'));
      done();
    },
  });
  return { lines, logger: createLogger(level, sink, format) };
}
