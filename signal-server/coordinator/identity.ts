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
  if (!localAddresses.includes(address)) keys.push(`addr:${address}`);
  return keys;
}
