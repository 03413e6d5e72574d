/**
 * Operations queued per key (a session): each runs after the key's operations
 * before it, whether they succeeded or failed; keys do not wait for each
 * other. A session's steps, cuts and close must not overlap: a roll-back that
 * comes while a step computes applies to what the step left.
 */
export class KeyedSerial {
  private readonly tails = new Map<number, Promise<unknown>>();

  /** Runs `f` after the key's operations before it. */
  run<T>(key: number, f: () => Promise<T>): Promise<T> {
    const next = (this.tails.get(key) ?? Promise.resolve()).then(f);
    const tail = next.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return next;
  }

  /** True while an operation of the key is queued or running. */
  busy(key: number): boolean {
    return this.tails.has(key);
  }
}
