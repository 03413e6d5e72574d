/**
 * Bounds the log lines one sender can cause: at most `maxLines` per key (a
 * socket) in each window of `windowMs`; the rest are counted, and reported in
 * one summary line ("N more suppressed") when the key's next window opens, the
 * key ends, or, for a key gone quiet, with the next line of any key once its
 * window is over (at most one sweep a window). Pure: the clock is injected,
 * and lines go to `write`.
 */
/** What a line may carry beside its message: fields of a JSON log line (an HTTP request's method, path, status). */
export type LineFields = Readonly<Record<string, string | number>>;

export interface LogLimit {
  readonly maxLines: number;
  readonly windowMs: number;
}

/** Lines about refused messages, per socket. */
export const REFUSAL_LOG_LIMIT: LogLimit = { maxLines: 10, windowMs: 10_000 };

interface KeyState {
  windowStart: number;
  lines: number;
  suppressed: number;
}

/** Keys remembered at once; beyond it the oldest goes (with its summary), so that many senders cannot grow the map. */
const MAX_KEYS = 10_000;

export class LogLimiter {
  private readonly keys = new Map<string, KeyState>();
  private lastSweep = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly limit: LogLimit,
    private readonly write: (line: string, fields?: LineFields) => void,
    private readonly now: () => number = () => Date.now(),
  ) {}

  /** Writes `line` (with its `fields`) unless `key` has used its lines in this window. */
  line(key: string, line: string, fields?: LineFields): void {
    const t = this.now();
    if (t - this.lastSweep >= this.limit.windowMs) this.sweep(t);
    let s = this.keys.get(key);
    if (s !== undefined && t - s.windowStart >= this.limit.windowMs) {
      this.summarise(key, s);
      s = undefined;
    }
    if (s === undefined) {
      s = { windowStart: t, lines: 0, suppressed: 0 };
      this.keys.set(key, s);
      if (this.keys.size > MAX_KEYS) this.end(this.keys.keys().next().value as string);
    }
    if (s.lines < this.limit.maxLines) {
      s.lines += 1;
      if (fields === undefined) this.write(line);
      else this.write(line, fields);
    } else s.suppressed += 1;
  }

  /** The key is done (its socket left): reports what was suppressed and forgets it. */
  end(key: string): void {
    const s = this.keys.get(key);
    if (s === undefined) return;
    this.keys.delete(key);
    this.summarise(key, s);
  }

  /** Every key whose window is over: its summary, and forgotten (a key that outlives its sockets, an address, too). */
  private sweep(t: number): void {
    this.lastSweep = t;
    for (const [key, s] of this.keys)
      if (t - s.windowStart >= this.limit.windowMs) {
        this.keys.delete(key);
        this.summarise(key, s);
      }
  }

  private summarise(key: string, s: KeyState): void {
    if (s.suppressed > 0)
      this.write(`${key}: ${s.suppressed} more suppressed (at most ${this.limit.maxLines} lines per ${this.limit.windowMs / 1000} s)`);
  }
}
