import { createClient } from 'redis';
import { type BusMessage, encodeMessage, type InboxMessage } from './messages.js';

/** Longest wait between two attempts to reach a lost Redis. */
export const MAX_RECONNECT_MS = 2_000;
/**
 * How long a start waits for Redis to answer: a port that accepts the connection and never answers (a paused Redis,
 * another service, a port-forward whose end is gone) kept a start waiting for good, saying nothing.
 */
export const CONNECT_DEADLINE_MS = 10_000;
/** At most one line about Redis's problems this often. */
const PROBLEM_LOG_MS = 5_000;

export type RedisClient = ReturnType<typeof createClient>;

/**
 * A text with the user and password of any URL in it hidden (`redis://:secret@host` → `redis://***@host`): for logs.
 * Up to the last `@` before the path, as node-redis reads a password holding one (before, `redis://:a@b@host` showed
 * `b`). With `url` (the REDIS_URL), that URL and its user name and password, as written and decoded, are hidden
 * wherever they appear: a password may hold a space, which ends the pattern (`redis://:correct horse@host`).
 */
export function redacted(text: string, url?: string): string {
  let out = text;
  if (url !== undefined) {
    out = out.split(url).join(redactedUrl(url));
    for (const secret of secretsOf(url)) out = out.split(secret).join('***');
  }
  return out.replace(/(\/\/)[^/\s]*@/g, '$1***@');
}

/** A URL as a log may show it: scheme, host, port and path, `***@` for any user or password. */
export function redactedUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return '(a URL that does not parse; not shown)';
  }
  return `${u.protocol}//${u.username !== '' || u.password !== '' ? '***@' : ''}${u.host}${u.pathname === '/' ? '' : u.pathname}`;
}

/** The user name and password of `url`, as written and decoded; short ones (under 4 characters) are left alone. */
function secretsOf(url: string): string[] {
  const written = /^[a-z][a-z0-9+.-]*:\/\/([^/]*)@/i.exec(url)?.[1] ?? '';
  const parts = new Set<string>();
  const colon = written.indexOf(':');
  for (const part of colon === -1 ? [written] : [written.slice(0, colon), written.slice(colon + 1)]) {
    parts.add(part);
    try {
      parts.add(decodeURIComponent(part));
    } catch {
      // not percent-encoded: as written only
    }
  }
  return [...parts].filter((p) => p.length >= 4).sort((a, b) => b.length - a.length);
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
  /** When a connection last came back after a loss (performance.now(); -Infinity: never lost). */
  reconnectedAt = Number.NEGATIVE_INFINITY;
  /**
   * Losses since the start: a read that began before one was answered by the Redis that came back, perhaps empty
   * (node-redis sends what waited as soon as it is connected, and its answer may come before 'ready' is emitted).
   */
  losses = 0;
  /** When it was lost, while it is (null: connected). */
  private lostAt: number | null = null;
  /**
   * The commands' connection (pub: every read and write, the others' heartbeat keys among them): its time connected
   * before the current connection (ms), and when the current one came (null: lost, or never made).
   */
  private upMsBefore = 0;
  private upSince: number | null = null;

  /** Lost and not back yet: nothing reaches the other processes, nor comes from them. */
  get down(): boolean {
    return this.lostAt !== null;
  }

  constructor(
    readonly url: string,
    private readonly prefix: string,
    /** Redis's problems: the server's warn level. */
    private readonly log: (line: string) => void,
    /** Redis back after a loss: the server's info level. */
    private readonly info: (line: string) => void = log,
    /** The longest wait between two attempts to reach a lost Redis. */
    readonly reconnectMaxMs = MAX_RECONNECT_MS,
  ) {
    // The URL's password never reaches a log; a cause that is this message already is not repeated in it.
    const reconnectStrategy = (retries: number, cause: Error) =>
      this.connected
        ? Math.min(100 * 2 ** retries, reconnectMaxMs)
        : cause.message.startsWith('cannot reach Redis at ')
          ? new Error(redacted(cause.message, url))
          : new Error(redacted(`cannot reach Redis at ${url}: ${cause.message}`, url));
    this.pub = createClient({ url, socket: { reconnectStrategy } });
    this.sub = this.pub.duplicate();
    for (const c of [this.pub, this.sub]) c.on('error', (e: Error) => this.problem(`redis: ${redacted(e.message, url)}`));
    // Either connection lost: the other is too, most often (one Redis); the first back marks the return (its
    // listeners run after this one's), and the line is written once both are back.
    for (const c of [this.pub, this.sub]) {
      c.on('reconnecting', () => {
        if (!this.connected || this.lostAt !== null) return;
        this.lostAt = performance.now();
        this.losses += 1;
      });
      c.on('ready', () => {
        if (!this.connected || this.lostAt === null) return;
        this.reconnectedAt = performance.now();
        if (!this.pub.isReady || !this.sub.isReady) return;
        const lostMs = performance.now() - this.lostAt;
        this.lostAt = null;
        this.info(`cluster: redis: connected again after ${(lostMs / 1000).toFixed(1)} s (${redactedUrl(url)})`);
      });
    }
    // The commands' connection alone: the subscriber's (lost by itself where Redis's output buffer limit for
    // subscribers cuts it) does not stop the others' keys being read.
    this.pub.on('reconnecting', () => {
      if (this.upSince === null) return;
      this.upMsBefore += performance.now() - this.upSince;
      this.upSince = null;
    });
    this.pub.on('ready', () => {
      if (this.connected) this.upSince ??= performance.now();
    });
  }

  /**
   * Connects both within `deadlineMs`; a failure says where (the URL without its password) and why, once (a refused
   * password too, or no answer in time: then both connections are dropped, so nothing keeps the process waiting).
   */
  async connect(deadlineMs = CONNECT_DEADLINE_MS): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const silent = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new Error(
              `no answer within ${deadlineMs / 1000} s (the port accepts connections but says nothing: a paused Redis, or another service there?)`,
            ),
          ),
        deadlineMs,
      );
    });
    const connecting = (async () => {
      await this.pub.connect();
      await this.sub.connect();
      // A Redis that wants a password answers the connection and refuses the first command (NOAUTH): asked here,
      // so that it is said as this, naming where (before, the start failed with Redis's bare words).
      await this.pub.ping();
    })();
    try {
      await Promise.race([connecting, silent]);
    } catch (e) {
      connecting.catch(() => {});
      for (const c of [this.pub, this.sub]) if (c.isOpen) c.destroy();
      const m = (e as Error).message;
      throw new Error(redacted(m.startsWith('cannot reach Redis at ') ? m : `cannot reach Redis at ${this.url}: ${m}`, this.url));
    } finally {
      clearTimeout(timer);
    }
    this.connected = true;
    this.upSince = performance.now();
  }

  /**
   * How long the commands' connection has been up in all, outages left out (ms): what the others had to say their
   * keys again in, where Redis comes and goes (a flapping Redis: time since the last return alone never grew long).
   */
  connectedMs(): number {
    return this.upMsBefore + (this.upSince === null ? 0 : performance.now() - this.upSince);
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
