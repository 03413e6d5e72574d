import { pino } from 'pino';

export type Logger = pino.Logger;

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** json: one pino object a line; pretty: one short human line a record; auto: pretty on a terminal, json otherwise. */
export const LOG_FORMATS = ['json', 'pretty', 'auto'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** What `auto` means for an output: pretty only where a person reads it (a terminal). */
export function resolveLogFormat(format: LogFormat, isTTY: boolean | undefined): 'json' | 'pretty' {
  return format === 'auto' ? (isTTY === true ? 'pretty' : 'json') : format;
}

/** Anything a line can be written to: a stream, or a status line that keeps itself below the logs. */
export interface LineSink {
  write(chunk: string): unknown;
}

const LEVEL_NAMES: Readonly<Record<number, string>> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
/** pino's own fields, not shown as extras in a pretty line. */
const OWN_FIELDS = new Set(['level', 'time', 'pid', 'hostname', 'name', 'msg', 'v']);

/**
 * Control characters (C0, DEL, C1), line and paragraph separators, bidirectional marks and overrides, zero-width
 * characters and the byte-order mark: each a terminal would act on, or a reader not see or take for another line.
 */
const UNPRINTABLE =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters it finds
  /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2069\ufeff]/g;

const NAMED_ESCAPES: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/**
 * `text` with each unprintable character written as an escape (`\n`, `\u001b`): a pretty line holds client text
 * (a volunteer's failure message, a partition name), and before, a newline in it started a line of the client's
 * making ("12:00:00 ERROR …") and an ESC reached the operator's terminal.
 */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => NAMED_ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** One of pino's JSON lines as `HH:MM:SS LEVEL message key=value…`; a line that is not such JSON is passed through. */
export function formatLogLine(jsonLine: string): string {
  let record: unknown;
  try {
    record = JSON.parse(jsonLine);
  } catch {
    return jsonLine.endsWith('\n') ? jsonLine : `${jsonLine}\n`;
  }
  if (typeof record !== 'object' || record === null || Array.isArray(record)) return `${jsonLine.trimEnd()}\n`;
  const r = record as Record<string, unknown>;
  const time = typeof r.time === 'number' ? new Date(r.time).toTimeString().slice(0, 8) : '--:--:--';
  const level = (typeof r.level === 'number' ? LEVEL_NAMES[r.level] : undefined) ?? String(r.level);
  const extras = Object.entries(r)
    .filter(([k]) => !OWN_FIELDS.has(k))
    .map(([k, v]) => `${printable(k)}=${printable(typeof v === 'string' ? v : JSON.stringify(v))}`);
  return `${[time, level.padEnd(5), typeof r.msg === 'string' ? printable(r.msg) : '', ...extras].join(' ').trimEnd()}\n`;
}

/**
 * Structured logs at `level`: pino's JSON lines on `destination` (stdout by
 * default), or with format `pretty` one human line per record.
 */
export function createLogger(level: LogLevel, destination?: LineSink, format: 'json' | 'pretty' = 'json'): Logger {
  if (format === 'pretty') {
    const out = destination ?? process.stdout;
    return pino({ name: 'webswarm', level }, { write: (line: string) => void out.write(formatLogLine(line)) });
  }
  return destination === undefined ? pino({ name: 'webswarm', level }) : pino({ name: 'webswarm', level }, destination);
}

/** Logs nothing: the default for servers that tests create. */
export const silentLogger: Logger = pino({ level: 'silent' });
