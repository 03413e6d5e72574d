import { MAX_SESSIONS_PER_REPLICA } from '../../shared/swarm/replica-core.js';
import type { VolunteerLink } from './coordinator-types.js';

/** Sessions remembered as open on one volunteer at most (a replica holds MAX_SESSIONS_PER_REPLICA; the rest is slack). */
const MAX_OPEN = 1_024;
/** Refusals remembered (the newest), until the coordinator that asked counts them or not. */
const MAX_JUDGED = 256;

/** How a volunteer's "I am full" was judged: how many sessions it had been opened on when this one was sent. */
export interface FullRefusal {
  readonly held: number;
  /** Its session limit when that session was sent. */
  readonly limit: number;
  /** It held its limit already (MAX_SESSIONS_PER_REPLICA, or fewer where its ready said so): the refusal was its due, not a no-show. */
  readonly honest: boolean;
}

/**
 * What this server has told one of its own volunteers, wherever the session
 * came from (this process's coordinator, or another process of a cluster
 * through its inbox): every `session:open` and `session:close` passes through
 * its link, in the order the volunteer gets them. So when the volunteer
 * refuses a session as full (`ERR_REPLICA_FULL`), its own server knows how
 * many sessions it had been opened on, and not closed, when that one was sent,
 * which is what the replica itself counted: a refusal with its limit
 * (MAX_SESSIONS_PER_REPLICA, or what its ready said) held is honest (a cluster's processes each counted
 * it a publication late), one with fewer is not.
 */
export class OpenSessions {
  /** Session id → sessions open on it before that one was sent, and its limit then. */
  private readonly open = new Map<number, { held: number; limit: number }>();
  private readonly judged = new Map<number, FullRefusal>();

  /**
   * `limit` is the volunteer's session limit now (sessionLimitOf): each session is judged against the limit in force
   * when it was sent, so a volunteer cannot lower its limit just before it refuses one.
   */
  constructor(private readonly limit: () => number = () => MAX_SESSIONS_PER_REPLICA) {}

  /** `link`, seeing what is sent through it. */
  watch(link: VolunteerLink): VolunteerLink {
    return {
      send: (event, ...args) => {
        const sessionId = (args[0] as { sessionId?: unknown } | undefined)?.sessionId;
        if (typeof sessionId === 'number') {
          if (event === 'session:open') this.opened(sessionId);
          else if (event === 'session:close') this.open.delete(sessionId);
        }
        link.send(event, ...args);
      },
      disconnect: () => link.disconnect(),
    };
  }

  /** Sessions open on it now, as sent. */
  get size(): number {
    return this.open.size;
  }

  private opened(sessionId: number): void {
    // A session opened again (a replay, a repair) is the one it holds already: the replica takes it even when full.
    if (this.open.has(sessionId)) return;
    if (this.open.size >= MAX_OPEN) this.open.delete(this.open.keys().next().value as number);
    this.open.set(sessionId, { held: this.open.size, limit: this.limit() });
  }

  /**
   * It refused `sessionId` as full: judged against what it held when that was sent, and it holds it no more.
   * Undefined for a session never opened on it (its no-show, if any, stands).
   */
  refusedFull(sessionId: number): FullRefusal | undefined {
    const sent = this.open.get(sessionId);
    if (sent === undefined) return undefined;
    const verdict = { held: sent.held, limit: sent.limit, honest: sent.held >= sent.limit };
    // Those sent after it found it not held: one fewer than counted.
    let after = false;
    for (const [id, n] of this.open) {
      if (after) this.open.set(id, { held: n.held - 1, limit: n.limit });
      else after = id === sessionId;
    }
    this.open.delete(sessionId);
    this.judged.delete(sessionId);
    this.judged.set(sessionId, verdict);
    if (this.judged.size > MAX_JUDGED) this.judged.delete(this.judged.keys().next().value as number);
    return verdict;
  }

  /** How its refusal of `sessionId` as full was judged; undefined where it never said so. */
  verdict(sessionId: number): FullRefusal | undefined {
    return this.judged.get(sessionId);
  }
}
