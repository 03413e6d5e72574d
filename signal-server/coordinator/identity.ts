/**
 * Who a volunteer is, as far as the coordinator can tell: the random client
 * key its browser keeps, and the network address it connects from. Two sockets
 * sharing either are one client: they never hold two replicas of one stage in
 * a route, and a ban on one volunteer bans both of its keys.
 */

/** Addresses of this machine: the local swarm of `npm start` runs its tabs here, so they are told apart by client key alone. */
export const DEFAULT_LOCAL_ADDRESSES: readonly string[] = ['127.0.0.1', '::1', '::ffff:127.0.0.1'];

/** The identity keys of a volunteer: its client key, and its address unless that is one of `localAddresses`. */
export function identityKeys(clientKey: string | null, address: string, localAddresses: readonly string[]): string[] {
  const keys: string[] = [];
  if (clientKey !== null) keys.push(`key:${clientKey}`);
  if (!localAddresses.includes(address)) keys.push(`addr:${addressKey(address)}`);
  return keys;
}

/** The client key among a volunteer's identity keys (`key:…`), if it sent one. */
export function clientKeyOf(keys: readonly string[]): string | undefined {
  return keys.find((k) => k.startsWith('key:'));
}

/**
 * The part of an address that names one client: an IPv4 address (also when
 * IPv4-mapped), or an IPv6 /64 (one subscriber usually holds a whole /64, so
 * its addresses must not count as many clients).
 */
export function addressKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped !== null) return mapped[1] as string;
  if (!address.includes(':')) return address;
  // Expand "::" and keep the first four groups.
  const [head = '', tail = ''] = address.toLowerCase().split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === '' ? [] : tail.split(':');
  const groups = address.includes('::') ? [...h, ...new Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t] : h;
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}
