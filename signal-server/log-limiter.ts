/**
 * Bounds the log lines one sender can cause: at most `maxLines` per key (a
 * socket) in each window of `windowMs`; the rest are counted, and reported in
 * one summary line ("N more suppressed") when the key's next window opens or
 * the key ends. Pure: the clock is injected, and lines go to `write`.
 */
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

  constructor(
    private readonly limit: LogLimit,
    private readonly write: (line: string) => void,
    private readonly now: () => number = () => Date.now(),
  ) {}

  /** Writes `line` unless `key` has used its lines in this window. */
  line(key: string, line: string): void {
    const t = this.now();
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
      this.write(line);
    } else s.suppressed += 1;
  }

  /** The key is done (its socket left): reports what was suppressed and forgets it. */
  end(key: string): void {
    const s = this.keys.get(key);
    if (s === undefined) return;
    this.keys.delete(key);
    this.summarise(key, s);
  }

  /**
   * Reports what `key` had suppressed so far, keeping its window: for a key that outlives what it was about (an
   * address whose last socket left comes back with a new one, and must not find its lines again).
   */
  flush(key: string): void {
    const s = this.keys.get(key);
    if (s === undefined) return;
    this.summarise(key, s);
    s.suppressed = 0;
  }

  private summarise(key: string, s: KeyState): void {
    if (s.suppressed > 0)
      this.write(`${key}: ${s.suppressed} more suppressed (at most ${this.limit.maxLines} lines per ${this.limit.windowMs / 1000} s)`);
  }
}
