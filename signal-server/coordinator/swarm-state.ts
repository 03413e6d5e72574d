import type { WireErrorCode } from '../../shared/protocol/errors.js';
import { isServerPeer, type StageAssignment } from '../../shared/protocol/messages.js';
import type { Audit, AuditCounts } from './audit.js';
import type { ChallengeOracle } from './challenge.js';
import type { ClusterSeam, CoordinatorOptions, ServedModelInfo, VolunteerLink } from './coordinator-types.js';
import type { ServerReplicas } from './fallback.js';
import type { GenerationSession } from './generation.js';
import type { Links } from './links.js';
import type { NoShowWindow } from './no-show-window.js';
import type { SwarmObserver } from './observer.js';
import type { OpenSessions } from './open-sessions.js';
import type { RecordMemory } from './record-memory.js';
import type { Registry } from './registry.js';
import { type BanList, reputation } from './reputation.js';
import type { SilenceCarry } from './silent-members.js';

/** Agreements (with reputation ≥ ESTABLISHED_REPUTATION) after which a volunteer counts as established. */
export const ESTABLISHED_AFTER = 10;
export const ESTABLISHED_REPUTATION = 0.8;

/** A volunteer as the coordinator keeps it (its stage and readiness are the registry's). */
export interface Member {
  readonly id: string;
  readonly link: VolunteerLink;
  readonly keys: readonly string[];
  readonly fault: string | null;
  /** A volunteer of another server of the cluster, mirrored here (its server challenges and judges it). */
  readonly remote: boolean;
  /** Passed a challenge since its stage was assigned. */
  proven: boolean;
  /**
   * Passed a challenge on this server once (a move or a re-partition does not take that back): only such
   * volunteers count as a stage's replicas when re-partitioning, never one whose hello is all it sent.
   */
  vouched: boolean;
  challenge: {
    readonly id: number;
    /** The stage it tests: an answer counts for that stage only (a move may come before the answer). */
    readonly stage: number;
    readonly expected: number[];
    readonly sentAt: number;
    readonly timer: ReturnType<typeof setTimeout> | null;
  } | null;
  /**
   * Its last challenge withdrawn by a move or a switch of partition (`withdrawChallenge`): a proof of it that crossed
   * the withdrawal is dropped quietly, not refused as a bad message (an honest race a switch met in a CI run).
   */
  withdrawn: number | null;
  /** Sessions it missed among its last ones (three evict it: `MAX_NO_SHOWS`). */
  readonly noShows: NoShowWindow;
  /** What its silence in its last session left for its next (SilentMembers.carry), or null. */
  silence: SilenceCarry | null;
  /** Sessions opened on it through its link, from any server (this server's volunteers only; null for a mirrored one). */
  readonly opened: OpenSessions | null;
  /** When its score was last sent, one held back and the timer that sends it (`Roster.judge`: at most one a `SCORE_EVERY_MS`). */
  score: { sentAt: number; timer: ReturnType<typeof setTimeout> | null; held: AuditCounts | null };
}

/**
 * What the coordinator's parts (roster, readiness, routes, sessions,
 * re-partitioning, peer traffic, completions) share: one object, made by the
 * coordinator; the fields a re-partition changes are changed here for all.
 */
export interface SwarmState {
  /** The partition served now (a re-partition replaces it). */
  model: ServedModelInfo;
  readonly options: CoordinatorOptions;
  readonly log: (line: string) => void;
  readonly registry: Registry;
  readonly links: Links;
  readonly audit: Audit;
  readonly bans: BanList;
  /** The records of volunteers that left this server, by client key (a server alone; a cluster keeps them in Redis). */
  readonly records: RecordMemory;
  readonly members: Map<string, Member>;
  readonly sessions: Map<number, GenerationSession>;
  /** Recently finished sessions: late reports from stragglers for them are expected, not errors. */
  readonly finished: Map<number, GenerationSession>;
  /** The client (API key or address) each running session is for, where it says: the fallback shares its seats among them. */
  readonly sessionClients: Map<number, string>;
  readonly observers: SwarmObserver[];
  /** Random source for routes and spot checks (seeded in tests). */
  readonly random: () => number;
  /** The server's own replicas, where the operator allows the fallback (of the partition served now). */
  fallback: ServerReplicas | null;
  /** Computes challenges for the partition served now. */
  oracle: ChallengeOracle;
  /** Bumped by every re-partition: challenges made for an older partition are dropped. */
  epoch: number;
  closing: boolean;
  /** Set by a cluster of servers (../cluster/); null for a server alone. */
  cluster: ClusterSeam | null;
}

/** An assignment to a stage of the partition served now. */
export function assignment(s: SwarmState, stage: number): StageAssignment {
  const { modelId, baseUrl, partition } = s.model;
  return { modelId, stage, baseUrl, ...(partition === undefined ? {} : { partition }) };
}

/** Tells a volunteer of an error (and logs it). */
export function refuse(s: SwarmState, id: string, code: WireErrorCode, message: string): void {
  s.log(`${id}: ${code} ${message}`);
  s.members.get(id)?.link.send('server:error', { code, message });
}

/** Has an established record: proven, and enough agreement (the server's own replicas always). Newcomers never outvote it. */
export function established(s: SwarmState, id: string): boolean {
  if (isServerPeer(id)) return true;
  const c = s.audit.get(id);
  return s.members.get(id)?.proven === true && c.agreed >= ESTABLISHED_AFTER && reputation(c) >= ESTABLISHED_REPUTATION;
}

/** How to reach a route's member: a volunteer's link, or the server replica's. */
export function linkOf(s: SwarmState, id: string): VolunteerLink | undefined {
  return isServerPeer(id) ? s.fallback?.link(id) : s.members.get(id)?.link;
}

/** Withdraws `member`'s open challenge (its stage or partition changed): its timer stops, a late proof of it is dropped. */
export function withdrawChallenge(member: Member): void {
  if (member.challenge === null) return;
  if (member.challenge.timer !== null) clearTimeout(member.challenge.timer);
  member.withdrawn = member.challenge.id;
  member.challenge = null;
}
