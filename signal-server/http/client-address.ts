import { BlockList, isIP } from 'node:net';

/** Most `X-Forwarded-For` entries read (a longer header is someone's invention, not a chain of proxies). */
const MAX_HOPS = 32;

/** `::ffff:1.2.3.4` → `1.2.3.4`: a proxy listed as IPv4 is met as an IPv4-mapped IPv6 address on a dual-stack socket. */
function unmapped(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m === null ? address : (m[1] as string);
}

/** An IP address's bytes (4 or 16; an IPv6 address may end in dotted IPv4), or null when it is not one. */
export function addressBytes(address: string): number[] | null {
  const family = isIP(address);
  if (family === 4) return address.split('.').map(Number);
  if (family !== 6) return null;
  let text = address.toLowerCase();
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  const tailBytes = v4 === null ? [] : (v4[1] as string).split('.').map(Number);
  if (v4 !== null)
    text = text
      .slice(0, -(v4[1] as string).length)
      .replace(/:$/, ':0:0')
      .replace(/::0:0$/, '::');
  const [head = '', tail] = text.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const bytes = groups.flatMap((g) => {
    const n = Number.parseInt(g, 16);
    return [n >> 8, n & 0xff];
  });
  if (tailBytes.length === 4) bytes.splice(12, 4, ...tailBytes);
  return bytes;
}

/** Whether `address` has a bit set past the first `prefix` (a range not written from its first address). */
export function hostBitsSet(address: string, prefix: number): boolean {
  const bytes = addressBytes(address) ?? [];
  return bytes.some((b, i) => {
    const kept = Math.min(8, Math.max(0, prefix - i * 8));
    return (b & (0xff >> kept)) !== 0;
  });
}

/**
 * The reverse proxies (load balancers) whose `X-Forwarded-For` this server
 * believes. Behind them every connection comes from a proxy's address, so the
 * client's own address (what bans, the per-address limit, the rule of one
 * replica per client in a stage and the API's rate limit are keyed by) must
 * be read from the header they append. Only from them: a client that
 * connects directly and sends the header itself is keyed by its own address.
 */
export class TrustedProxies {
  private readonly list = new BlockList();
  readonly size: number;

  /**
   * @param entries addresses ("10.0.0.7", "::1") or CIDR ranges ("10.0.0.0/8", "fd00::/8")
   * @throws RangeError naming an entry that is neither
   */
  constructor(entries: readonly string[]) {
    for (const raw of entries) {
      const entry = raw.trim();
      const [address = '', bits, extra] = entry.split('/');
      const family = isIP(address);
      if (family === 0 || extra !== undefined) throw new RangeError(`trusted proxy "${entry}" is not an IP address or a CIDR range`);
      const type = family === 4 ? 'ipv4' : 'ipv6';
      if (bits === undefined) {
        this.list.addAddress(address, type);
        continue;
      }
      const prefix = /^\d{1,3}$/.test(bits) ? Number(bits) : Number.NaN;
      if (!(prefix >= 0 && prefix <= (family === 4 ? 32 : 128)))
        throw new RangeError(`trusted proxy "${entry}": /${bits} is not a prefix length for IPv${family}`);
      // A range written from an address inside it (10.0.0.1/8): a typo for the address alone or for the range's
      // first address, and which one is not ours to guess (before, taken as the whole range without a word).
      if (hostBitsSet(address, prefix))
        throw new RangeError(
          `trusted proxy "${entry}" has bits set past its /${bits}: write the one address without /${bits}, or the range from its first address`,
        );
      this.list.addSubnet(address, prefix, type);
    }
    this.size = entries.length;
  }

  /** Whether connections from `address` are a trusted proxy's. */
  trusts(address: string): boolean {
    if (this.size === 0) return false;
    const a = unmapped(address);
    const family = isIP(a);
    return family !== 0 && this.list.check(a, family === 4 ? 'ipv4' : 'ipv6');
  }

  /**
   * The client's address: the connection's own unless it comes from a trusted
   * proxy; then the header is read from the right (each proxy appends the
   * address it was connected from) past every trusted proxy, and the first
   * address that is not one is the client. A malformed entry ends the walk at
   * the last address a trusted proxy vouched for.
   */
  clientAddress(peer: string | undefined, forwardedFor: string | readonly string[] | undefined): string {
    const own = peer ?? 'unknown';
    if (forwardedFor === undefined || !this.trusts(own)) return own;
    const hops = (typeof forwardedFor === 'string' ? forwardedFor : forwardedFor.join(','))
      .split(',')
      .map((h) => h.trim())
      .slice(-MAX_HOPS);
    let client = own;
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i] as string;
      if (isIP(hop) === 0) break;
      client = hop;
      if (!this.trusts(hop)) break;
    }
    return client;
  }
}

/** No proxy trusted: every client is keyed by its connection's address. */
export const NO_PROXIES = new TrustedProxies([]);
