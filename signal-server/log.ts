import { pino } from 'pino';

export type Logger = pino.Logger;

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Structured logs: one JSON object a line on stdout (pino), at `level`. */
export function createLogger(level: LogLevel, destination?: NodeJS.WritableStream): Logger {
  return destination === undefined ? pino({ name: 'webswarm', level }) : pino({ name: 'webswarm', level }, destination);
}

/** Logs nothing: the default for servers that tests create. */
export const silentLogger: Logger = pino({ level: 'silent' });
