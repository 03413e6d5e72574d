import { addressKey } from './coordinator/identity.js';

/**
 * Engine.IO connections held at once, per client address (an IPv4 address or
 * an IPv6 /64, as identity.ts keys a client): each costs the server its
 * Engine.IO state, its budgets and, once subscribed, the feeds it is sent, so
 * one address may hold at most `max` of them. This machine's own addresses
 * (LOCAL_ADDRESSES: the tests' tabs, a reverse proxy not declared as one) are
 * not counted, as for volunteers' hellos. Pure bookkeeping; client-connections.ts
 * admits a connection with `admit` as it opens and gives its place back when it closes.
 */
export const DEFAULT_MAX_SOCKETS_PER_ADDRESS = 64;

export class AddressSockets {
  private readonly held = new Map<string, number>();

  constructor(
    /** Connections an address may hold at once; 0: no limit. */
    readonly max: number,
    private readonly localAddresses: readonly string[],
  ) {
    if (!(Number.isInteger(max) && max >= 0))
      throw new RangeError(`the sockets per address must be a whole number ≥ 0 (0: no limit), got ${max}`);
  }

  /**
   * A place for one more connection from `address`: a function that gives it back (call it once, when the connection
   * closes), or null when the address holds `max` already.
   */
  admit(address: string): (() => void) | null {
    if (this.max === 0 || this.localAddresses.includes(address)) return () => {};
    const key = addressKey(address);
    const n = this.held.get(key) ?? 0;
    if (n >= this.max) return null;
    this.held.set(key, n + 1);
    let given = false;
    return () => {
      if (given) return;
      given = true;
      const left = (this.held.get(key) ?? 1) - 1;
      if (left <= 0) this.held.delete(key);
      else this.held.set(key, left);
    };
  }
}
