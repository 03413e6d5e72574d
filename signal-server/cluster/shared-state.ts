/**
 * The coordinator's bans and signalling links, as a cluster of servers shares
 * them: a ban made on one server is written to Redis and told to the others; a
 * link between two volunteers is told to the servers they are connected to
 * (which relay their signalling). Both are the coordinator's own classes with
 * a hook: nothing changes for a server alone.
 */
import { Links } from '../coordinator/links.js';
import { BAN_MS, BanList } from '../coordinator/reputation.js';

export class SharedBans extends BanList {
  /** Set by the cluster once it is connected: tells the others (and Redis) of a new ban. */
  share: ((key: string, untilMs: number) => void) | null = null;

  override ban(key: string, now = Date.now()): void {
    const until = now + BAN_MS;
    this.banUntil(key, until, now);
    this.share?.(key, until);
  }
}

export class ClusterLinks extends Links {
  /** Set by the cluster: tells the servers of `a` and `b` (those that are not this one) of a link or unlink. */
  tell: ((t: 'link' | 'unlink', a: string, b: string) => void) | null = null;

  override link(a: string, b: string): void {
    super.link(a, b);
    this.tell?.('link', a, b);
  }

  override unlink(a: string, b: string): void {
    super.unlink(a, b);
    this.tell?.('unlink', a, b);
  }

  /** A link made by a session of another server (no one is told again). */
  linkFromPeer(a: string, b: string): void {
    super.link(a, b);
  }

  unlinkFromPeer(a: string, b: string): void {
    super.unlink(a, b);
  }
}
