import type { Feeds, SessionExecutor, StageExecutor } from '../model/pipeline.js';

/** Smallest share a volunteer may set (below it, a step would wait tens of times its compute time). */
export const MIN_SHARE = 0.05;

/**
 * Reads a share from a URL or a data attribute: a number, kept to
 * [MIN_SHARE, 1] (`?share=0.01` asks for as little as may be, so it is the
 * least, never full speed; `7` is full speed); anything that is not a number
 * is the fallback. The page and the widget show the share they use.
 */
export function parseShare(raw: string | null | undefined, fallback: number): number {
  const n = raw === null || raw === undefined || raw.trim() === '' ? Number.NaN : Number(raw);
  return Number.isFinite(n) ? Math.min(1, Math.max(MIN_SHARE, n)) : fallback;
}

/**
 * Keeps a volunteer's compute to at most `share` of wall time, as BOINC's CPU
 * throttle does: after a run of t ms the next one may start only t·(1−share)/share
 * ms after it ended. A throttled replica is a slow one, which the quorum never
 * waits for; share 1 runs at full speed.
 */
export class DutyCycle {
  private readyAt = 0;

  constructor(
    readonly share: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(share >= MIN_SHARE && share <= 1)) throw new RangeError(`share must be in [${MIN_SHARE}, 1], got ${share}`);
  }

  /** How long to wait before the next run may start. */
  waitMs(): number {
    return Math.max(0, this.readyAt - this.now());
  }

  /** A run took `ms` and ended now. */
  ran(ms: number): void {
    this.readyAt = this.now() + (ms * (1 - this.share)) / this.share;
  }

  /** Wraps a session executor so that its steps keep to the share (its truncations and releases are not throttled). */
  wrapSessions(
    inner: SessionExecutor,
    sleep: (ms: number) => Promise<void> = (ms) => new Promise<void>((r) => setTimeout(() => r(), ms)),
  ): SessionExecutor {
    return {
      step: async (session, stage, input, logitsFrom) => {
        const wait = this.waitMs();
        if (wait > 0) await sleep(wait);
        const t0 = this.now();
        try {
          return await inner.step(session, stage, input, logitsFrom);
        } finally {
          this.ran(this.now() - t0);
        }
      },
      truncate: (session, positions) => inner.truncate(session, positions),
      release: (session) => inner.release(session),
    };
  }

  /** Wraps an executor so that its runs keep to the share. */
  wrap(
    inner: StageExecutor,
    sleep: (ms: number) => Promise<void> = (ms) => new Promise<void>((r) => setTimeout(() => r(), ms)),
  ): StageExecutor {
    return {
      run: async (stage: number, feeds: Feeds) => {
        const wait = this.waitMs();
        if (wait > 0) await sleep(wait);
        const t0 = this.now();
        try {
          return await inner.run(stage, feeds);
        } finally {
          this.ran(this.now() - t0);
        }
      },
    };
  }
}
