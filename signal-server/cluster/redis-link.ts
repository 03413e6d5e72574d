import { createClient } from 'redis';
import { type BusMessage, encodeMessage, type InboxMessage } from './messages.js';

/** Longest wait between two attempts to reach a lost Redis. */
const MAX_RECONNECT_MS = 2_000;
/** At most one line about Redis's problems this often. */
const PROBLEM_LOG_MS = 5_000;

export type RedisClient = ReturnType<typeof createClient>;

/**
 * A text with the user and password of any URL in it hidden (`redis://:secret@host` → `redis://***@host`): for logs.
 * Up to the last `@` before the path, as node-redis reads a password holding one (before, `redis://:a@b@host` showed
 * `b`).
 */
export function redacted(text: string): string {
  return text.replace(/(\/\/)[^/\s]*@/g, '$1***@');
}

/**
 * A process's two connections to Redis (one publishes and reads, one
 * subscribes), its keys and its log of Redis's problems. Unreachable at start:
 * connecting fails with a clear error; lost later: reconnected with back-off.
 */
export class RedisLink {
  readonly pub: RedisClient;
  readonly sub: RedisClient;
  /** Set once closing: nothing more is published. */
  closed = false;
  private connected = false;
  private lastProblemAt = Number.NEGATIVE_INFINITY;
  private problemsSuppressed = 0;

  constructor(
    readonly url: string,
    private readonly prefix: string,
    private readonly log: (line: string) => void,
  ) {
    // The URL's password never reaches a log; a cause that is this message already is not repeated in it.
    const reconnectStrategy = (retries: number, cause: Error) =>
      this.connected
        ? Math.min(100 * 2 ** retries, MAX_RECONNECT_MS)
        : cause.message.startsWith('cannot reach Redis at ')
          ? new Error(redacted(cause.message))
          : new Error(redacted(`cannot reach Redis at ${url}: ${cause.message}`));
    this.pub = createClient({ url, socket: { reconnectStrategy } });
    this.sub = this.pub.duplicate();
    for (const c of [this.pub, this.sub]) c.on('error', (e: Error) => this.problem(`redis: ${redacted(e.message)}`));
  }

  /** Connects both; a failure says where (the URL without its password) and why, once (a refused password too). */
  async connect(): Promise<void> {
    try {
      await this.pub.connect();
      await this.sub.connect();
    } catch (e) {
      const m = (e as Error).message;
      throw new Error(redacted(m.startsWith('cannot reach Redis at ') ? m : `cannot reach Redis at ${this.url}: ${m}`));
    }
    this.connected = true;
  }

  /** Logs a problem with Redis at most once per PROBLEM_LOG_MS (an outage fails every message). */
  problem(line: string): void {
    const now = Date.now();
    if (now - this.lastProblemAt < PROBLEM_LOG_MS) {
      this.problemsSuppressed += 1;
      return;
    }
    this.lastProblemAt = now;
    const more = this.problemsSuppressed > 0 ? ` (${this.problemsSuppressed} more since the last line)` : '';
    this.problemsSuppressed = 0;
    this.log(`cluster: ${line}${more}`);
  }

  /** A key or channel of this swarm: "<prefix>:a:b". */
  key(...parts: (string | number)[]): string {
    return [this.prefix, ...parts].join(':');
  }

  publish(channel: string, m: BusMessage | InboxMessage): void {
    if (this.closed) return;
    this.pub.publish(channel, encodeMessage(m)).catch((e: Error) => this.problem(`publish failed: ${e.message}`));
  }

  /** Ends both connections at once. */
  destroy(): void {
    this.sub.destroy();
    this.pub.destroy();
  }
}
