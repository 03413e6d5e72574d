import type { ServerResponse } from 'node:http';
import { ISOLATION_HEADERS } from '../http/static-files.js';

/** Server-sent events, with the status line held back until the first event so that early failures keep their HTTP status. */
export class EventStream {
  private started = false;
  private behind = false;
  /** `behind` is called once, when the bytes waiting for the reader pass `behindBytes`; nothing more is sent but `last`. */
  constructor(
    private readonly res: ServerResponse,
    private readonly behindBytes: number,
    private readonly onBehind: () => void,
  ) {}
  /** One event; `event` names it (the Responses API's events are named, chat's and completions' are not). */
  send(data: unknown, event?: string): boolean {
    // Another choice of the request failed (or the client went) and the response has ended: the rest is not wanted.
    if (this.res.writableEnded || this.res.destroyed || this.behind) return false;
    this.write(data, event);
    if (this.res.writableLength > this.behindBytes) {
      this.behind = true;
      this.onBehind();
    }
    return true;
  }
  /** An event sent whether or not the reader is behind (the stream's end, or a bounded group of them); whether it went. */
  last(data: unknown, event?: string): boolean {
    if (this.res.writableEnded || this.res.destroyed) return false;
    this.write(data, event);
    return true;
  }
  private write(data: unknown, event?: string): void {
    if (!this.started) {
      this.started = true;
      this.res.writeHead(200, {
        ...ISOLATION_HEADERS,
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        'x-accel-buffering': 'no',
      });
    }
    const name = event === undefined ? '' : `event: ${event}\n`;
    this.res.write(`${name}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
  }
  get isBehind(): boolean {
    return this.behind;
  }
  get isStarted(): boolean {
    return this.started;
  }
}
