import type { LineSink } from '../signal-server/log.js';

const CLEAR_LINE = '\r\u001b[2K';

/**
 * One line of progress at the bottom of a terminal, under the log: each log
 * line written through it clears the status, is written, and the status is
 * drawn again below it. Only for terminals (it writes escape codes).
 */
export class StatusLine implements LineSink {
  readonly isTTY = true;
  private status = '';

  constructor(private readonly out: { write(chunk: string): unknown; readonly columns?: number }) {}

  /** Writes whole lines (ending in a newline) above the status. */
  write(chunk: string): boolean {
    this.out.write(this.status === '' ? chunk : `${CLEAR_LINE}${chunk}${this.fit(this.status)}`);
    return true;
  }

  /** Replaces the status line. */
  set(status: string): void {
    this.status = status.replace(/\s+/g, ' ');
    this.out.write(`${CLEAR_LINE}${this.fit(this.status)}`);
  }

  /** Removes the status line; later writes are plain lines. */
  clear(): void {
    if (this.status !== '') this.out.write(CLEAR_LINE);
    this.status = '';
  }

  /** A status longer than the terminal is wide would wrap, and then \r no longer clears it. */
  private fit(s: string): string {
    const width = Math.max(20, (this.out.columns || 80) - 1);
    return s.length <= width ? s : `${s.slice(0, width - 1)}…`;
  }
}
