import { randomUUID } from 'node:crypto';
import { bufferLimitBytes, offeredBytes } from '../../shared/protocol/capacity.js';
import type { WireErrorCode } from '../../shared/protocol/errors.js';
import type { Backend, VolunteerHello, VolunteerView } from '../../shared/protocol/messages.js';
import { KeyedBuckets, type KeyedBucketsOptions } from '../keyed-buckets.js';
import type { AuditCounts } from './audit.js';
import type { MirroredVolunteer, VolunteerLink } from './coordinator-types.js';
import type { GenerationSession } from './generation.js';
import { clientKeyOf, DEFAULT_LOCAL_ADDRESSES, identityKeys } from './identity.js';
import { NO_SHOW_WINDOW, NoShowWindow } from './no-show-window.js';
import { OpenSessions } from './open-sessions.js';
import { cannotHold } from './placement.js';
import { DEFAULT_CHALLENGE_TIMEOUT_MS } from './readiness.js';
import type { ClientRecord } from './record-memory.js';
import { sessionLimitOf } from './registry.js';
import { reputation, shouldEvict } from './reputation.js';
import type { Move } from './scheduler.js';
import type { NoShow } from './session-types.js';
import { assignment, established, type Member, refuse, type SwarmState, withdrawChallenge } from './swarm-state.js';

/** Volunteers connected at once from one address (one IPv6 /64), other than this machine's. */
export const MAX_VOLUNTEERS_PER_ADDRESS = 16;
/**
 * Hellos one address (other than this machine's) may say at once, and then 30 a minute: its 16 tabs reconnecting
 * after a network blip, twice over, are within it; a loop of connect, hello, disconnect (535 a second from one
 * address, each writing a joined and a left line to the log) is not.
 */
export const DEFAULT_HELLO_BUDGET: KeyedBucketsOptions = { burst: 32, perMinute: 30 };

/**
 * A volunteer's score goes out at most once a this many ms while it agrees (the newest counts, trailing); a
 * disagreement goes out at once. Every vote used to send one to every replica of the route: r × stages socket
 * messages a token, each waking the tab's renderer for a number it redraws once a second (bench/redundancy.ts).
 */
export const SCORE_EVERY_MS = 1000;

/** What the roster needs of the coordinator's other parts. */
export interface RosterHooks {
  /** A replica of a running session left or moved: another takes its place. */
  failOver(session: GenerationSession, left: string): void;
  /** A replica left a session that waited for it to join: a no-show (SessionRunner.noShow). */
  leftUnjoined(sessionId: number, left: string, why: NoShow): void;
  /** A departure (or a move) may leave a stage short: the re-partitioner looks. */
  considerRepartition(departure: boolean): void;
  /** A client that proved a stage left, or missed a load deadline: not counted for a switch back for a while. */
  distrust(keys: readonly string[]): void;
}

/**
 * How long a volunteer given a stage (at its hello, by a move, by a re-partition) has to load it and say ready
 * (then it is challenged) while it holds a seat there. Past it, it holds none (Volunteer.stale): the stages are
 * balanced and newcomers placed without it, and the re-partitioner no longer counts it (it is un-vouched until it
 * proves a stage again). It is not evicted: an honest tab may load slowly, and is counted again once ready. Before,
 * a stranger that said hello and nothing more was moved into a stage a departure left short and held it, every
 * request refused; and one that proved a stage once and then ignored its new assignment (or a tab whose stage failed
 * to load) held a stage short after a switch back (red-team finds). Twice a replay's wait for a new partition
 * (REPLAY_ROUTE_WAIT_MS): a stage's download may take longer than a replay waits.
 */
export const LOAD_DEADLINE_MS = 120_000;

/**
 * The volunteers of this server (and those of others mirrored here): hello,
 * stage assignment and moves, departure, scores and eviction.
 */
export class Roster {
  private readonly localAddresses: readonly string[];
  /** Volunteers of this server cut off (their address's limit, a ban), until their transport tells they left. */
  private readonly cutOff = new WeakSet<Member>();
  /** Volunteers of this server given a stage and not ready yet, each until its load deadline (LOAD_DEADLINE_MS). */
  private readonly loading = new Map<string, ReturnType<typeof setTimeout>>();
  /** Each address's hellos (DEFAULT_HELLO_BUDGET). */
  private readonly hellos: KeyedBuckets;

  constructor(
    private readonly s: SwarmState,
    private readonly h: RosterHooks,
  ) {
    this.localAddresses = s.options.localAddresses ?? DEFAULT_LOCAL_ADDRESSES;
    this.hellos = new KeyedBuckets(s.options.helloBudget ?? DEFAULT_HELLO_BUDGET);
  }

  /** A volunteer says hello: registered under an id of the server's, assigned a stage; or refused (faults, bans). */
  hello(link: VolunteerLink, address: string, m: VolunteerHello): string | null {
    const refuse = (code: WireErrorCode, message: string) => {
      this.s.log(`refused volunteer from ${address}: ${code} ${message}`);
      for (const o of this.s.observers) o.onHelloRefused?.(code);
      link.send('server:error', { code, message });
      link.disconnect();
      return null;
    };
    if (m.fault !== null && !this.s.options.allowFaults)
      return refuse('ERR_FAULTS_REFUSED', `this server does not accept injected faults (${m.fault})`);
    const keys = identityKeys(m.clientKey, address, this.localAddresses);
    if (keys.some((k) => this.s.bans.banned(k)))
      return refuse('ERR_BANNED', 'this volunteer (its client key or address) was evicted for misbehaving; try again later');
    // One address (not this machine's) holds a bounded number of volunteers: a flood of sockets registers no further.
    const addressKey = keys.find((k) => k.startsWith('addr:'));
    const wait = addressKey === undefined ? 0 : this.hellos.take(addressKey);
    if (wait > 0) {
      const budget = this.s.options.helloBudget ?? DEFAULT_HELLO_BUDGET;
      return refuse(
        'ERR_RATE_LIMITED',
        `too many volunteers said hello from this address lately (${budget.burst} at once, then ${budget.perMinute} a minute); try again in ${Math.ceil(wait / 1000)} s`,
      );
    }
    if (addressKey !== undefined) {
      let same = 0;
      for (const other of this.s.members.values()) if (other.keys.includes(addressKey)) same += 1;
      if (same >= MAX_VOLUNTEERS_PER_ADDRESS)
        return refuse(
          'ERR_RATE_LIMITED',
          `${same} volunteers are connected from this address already (at most ${MAX_VOLUNTEERS_PER_ADDRESS})`,
        );
    }
    // The id is the server's, never the client's: nobody can claim another volunteer's id.
    const id = this.s.options.newId?.() ?? randomUUID();
    if (this.s.members.has(id)) return refuse('ERR_BAD_HANDSHAKE', 'that volunteer id is taken');
    const opened = new OpenSessions(() => sessionLimitOf(this.s.registry.get(id)));
    // Its client's record (record-memory.ts): the one a connection of its client key still open counts into (they
    // share one), or the one it left this server with lately; a cluster's comes from Redis instead.
    const kept = this.s.cluster === null ? this.clientRecord(keys) : undefined;
    const member: Member = {
      id,
      link: opened.watch(link),
      keys,
      fault: m.fault,
      remote: false,
      proven: false,
      vouched: false,
      challenge: null,
      withdrawn: null,
      // Sessions missed count a connection's own (a tab throttled in the background is that tab): a window resumed
      // with its record, a fresh one beside an open connection of its key (judged with those its key's connections
      // that left beside it missed: RecordMemory.missedBy).
      noShows: kept?.resumed?.noShows ?? new NoShowWindow(),
      silence: null,
      opened,
      score: { sentAt: -Infinity, timer: null, held: null },
    };
    this.s.members.set(id, member);
    const held = { bufferLimitBytes: bufferLimitBytes(m.backend, m.capacity), keys };
    const stage = this.s.registry.join(id, m.backend, m.adapter, Date.now(), offeredBytes(m.backend, m.capacity), held);
    if (stage === null) {
      this.s.members.delete(id);
      if (kept?.resumed !== undefined) this.s.records.remember(keys, kept.resumed);
      return refuse('ERR_CAPACITY', cannotHold(offeredBytes(m.backend, m.capacity), held.bufferLimitBytes, this.s.registry));
    }
    link.send('volunteer:welcome', { volunteerId: id });
    link.send('volunteer:assign', assignment(this.s, stage));
    if (kept !== undefined) {
      const { agreed, disagreed } = this.s.audit.share(id, kept.counts);
      this.s.log(
        kept.resumed === undefined
          ? `volunteer ${id} shares its client's record with its open connection (${agreed} agreed, ${disagreed} disagreed)`
          : `volunteer ${id} resumes its record (${agreed} agreed, ${disagreed} disagreed, ${kept.resumed.noShows.count} of its last ${NO_SHOW_WINDOW} sessions missed)`,
      );
      // Its page shows the record it resumed, not a newcomer's.
      this.sendScore(member, { agreed, disagreed }, true);
    }
    this.expectLoad([id]);
    // No planning here: the planner counts proven volunteers only, and a hello proves nothing (its proof asks).
    this.s.log(
      `volunteer ${id} (${m.backend}${m.fault === null ? '' : `, fault ${m.fault}`}, from ${address}) joined: stage ${stage}; replicas per stage ${this.s.registry.replicasPerStage().join('/')}`,
    );
    this.s.options.statusChanged?.();
    return id;
  }

  /**
   * The counts of the client with these identity keys, if it has a record here: those a connection of its client key
   * still open counts into, else those of the record it left with lately (`resumed`, taken from the memory).
   */
  private clientRecord(keys: readonly string[]): { readonly counts: AuditCounts; readonly resumed?: ClientRecord } | undefined {
    const key = clientKeyOf(keys);
    if (key === undefined) return undefined;
    const sibling = this.openSibling(key);
    if (sibling !== undefined) return { counts: this.s.audit.recordOf(sibling.id) };
    const resumed = this.s.records.resume(keys);
    return resumed === undefined ? undefined : { counts: resumed.counts, resumed };
  }

  /** A connection of this server with client key `key` (`key:…`) open now. */
  private openSibling(key: string): Member | undefined {
    for (const m of this.s.members.values()) if (!m.remote && m.keys.includes(key)) return m;
    return undefined;
  }

  /**
   * A volunteer's connection ended: its sessions fail over, its record goes, the stages re-balance. `processGone`: a
   * mirrored volunteer whose server is gone, not a client that left.
   */
  left(id: string, processGone = false): void {
    const member = this.s.members.get(id);
    if (member === undefined) return;
    if (member.challenge?.timer != null) clearTimeout(member.challenge.timer);
    if (member.score.timer !== null) clearTimeout(member.score.timer);
    const loading = this.loading.get(id);
    if (loading !== undefined) clearTimeout(loading);
    this.loading.delete(id);
    // One that proved a stage and left: it may come back, but not to switch the swarm back (see LiveRepartition). Not
    // the volunteers of a server of a cluster that died or blinked: they come back too, and before, one lost heartbeat
    // kept the swarm on a cut of fewer stages for 10 minutes after they all came back ready (a red-team find).
    if (member.vouched && !processGone) this.h.distrust(member.keys);
    // In a session's route, running or lately finished, now or before a replacement took it out (a move, a retry):
    // its last steps may be judged after it went (Audit.forget). Before, only a member of a running route now: a liar
    // moved to another stage (an accomplice's departure made it) just before it left was counted nowhere (a red-team
    // find). In a cluster, in another server's session too: that server may judge a step before it hears of the
    // departure, and sends the verdict here (before, dropped: this server kept no record for it).
    const midSession =
      [...this.s.sessions.values(), ...this.s.finished.values()].some((session) => session.involves(id)) ||
      (!member.remote && this.s.cluster?.servesElsewhere(id) === true);
    // Given a session and gone before it joined: a no-show, counted into the record it leaves (a strike may evict
    // it and ban its keys). Before, only a connection that stayed was one: a client could let every session it was
    // given wait up to the join grace, close the connection just before, and come back with its key, unjudged for
    // ever. One strike a departure, however many sessions (on however many servers) waited for it: an honest tab
    // closed while a burst of requests was being opened on it must not be evicted for it. A session it was absent from
    // is judged before one it refused as full (which its own server may judge its due); a session of another server
    // of a cluster (this server saw it opened, and not answered) after those here: that one no longer holds the
    // volunteer to judge it. Judged by its own server only, not while this server shuts down, and not for one cut
    // off with its keys banned (judged already); one evicted without a ban (a challenge left unanswered) is: before,
    // that was a way out of a session unjudged (a red-team find).
    const banned = this.cutOff.has(member) && member.keys.some((k) => this.s.bans.banned(k));
    if (!member.remote && !banned && !this.s.closing) {
      let waited: { readonly sessionId: number; readonly why: NoShow } | undefined;
      for (const session of this.s.sessions.values()) {
        const why = session.unjoinedAs(id);
        if (why !== null && (waited === undefined || why === 'absent')) waited = { sessionId: session.sessionId, why };
        if (why === 'absent') break;
      }
      const elsewhere = waited === undefined ? this.s.cluster?.awaitedElsewhere(id) : undefined;
      if (elsewhere !== undefined) waited = { sessionId: elsewhere, why: 'absent' };
      if (waited !== undefined) this.h.leftUnjoined(waited.sessionId, id, waited.why);
    }
    this.s.members.delete(id);
    this.s.links.drop(id);
    for (const session of this.s.sessions.values()) this.h.failOver(session, id);
    // Its client's record, where this was its last connection here, is remembered under its client key
    // (record-memory.ts): a volunteer that comes back with it resumes it (or is refused, if banned). In a cluster its
    // record stays in Redis under its client key (../cluster/), and follows it to any server. Its last steps, judged
    // after it went, still count into it (Audit.forget): so a record is remembered, empty or not, where a connection
    // that left mid-session still counts into it (this one, or one that left before it: a red-team find was a liar
    // that lied, left, and closed its never-proven second connection before the vote landed), or of one that
    // proved a stage here; of others, only where not empty.
    const key = clientKeyOf(member.keys);
    const record = { counts: this.s.audit.recordOf(id), noShows: member.noShows };
    this.s.audit.forget(id, member.keys, midSession);
    const empty = record.counts.agreed + record.counts.disagreed === 0 && record.noShows.count === 0;
    const worthKeeping = member.vouched || !empty || this.s.audit.awaits(record.counts);
    if (!member.remote && key !== undefined) {
      // Its sessions missed go on with the client's next connection, or into the record remembered after the last.
      // In a cluster, they are kept in Redis under its client key, for its next connection on any server.
      if (this.s.cluster !== null) this.s.cluster.keepNoShows(member.keys, member.noShows.own());
      else if (this.openSibling(key) !== undefined) this.s.records.keepMissed(member.keys, member.noShows);
      else if (worthKeeping || this.s.records.keepsMissed(member.keys)) this.s.records.remember(member.keys, record);
    }
    const moves = this.s.registry.leave(id);
    this.move(moves);
    this.s.log(`volunteer ${id} left; replicas per stage ${this.s.registry.replicasPerStage().join('/')}`);
    // One that never proved a stage changed nothing the planner counts (unless its going moved others).
    if (member.vouched || moves.length > 0) this.h.considerRepartition(true);
    this.s.options.statusChanged?.();
  }

  /** Tells moved volunteers their new stages (to load and prove); their sessions fail over at once. */
  move(moves: readonly Move[]): void {
    for (const move of moves) {
      const moved = this.s.members.get(move.volunteer);
      if (moved !== undefined) {
        moved.proven = false;
        // A challenge of the stage it leaves is no test of the new one: its ready for the new stage is challenged afresh.
        withdrawChallenge(moved);
        moved.link.send('volunteer:assign', assignment(this.s, move.to));
        if (!moved.remote) this.s.cluster?.moved(move.volunteer);
      }
      // It drops its old stage, and with it its sessions there: they fail over now, not after a step timeout.
      for (const session of this.s.sessions.values()) this.h.failOver(session, move.volunteer);
      this.s.log(`volunteer ${move.volunteer} moved from stage ${move.from} to ${move.to}`);
    }
    this.expectLoad(moves.map((m) => m.volunteer));
  }

  /**
   * Volunteers of this server were given a stage to load (a hello, a move, a switch): each holds its seat there
   * until its load deadline; one not ready by then holds none (LOAD_DEADLINE_MS), and the stages are balanced anew.
   */
  expectLoad(ids: readonly string[]): void {
    const ms = this.s.options.loadDeadlineMs ?? LOAD_DEADLINE_MS;
    for (const id of ids) {
      const member = this.s.members.get(id);
      if (member === undefined || member.remote) continue;
      this.armLoadDeadline(id, member, ms, ms);
    }
  }

  /** Looks at `member` after `waitMs`: not ready, and no challenge of its ready pending, it holds no seat. */
  private armLoadDeadline(id: string, member: Member, waitMs: number, deadlineMs: number): void {
    const before = this.loading.get(id);
    if (before !== undefined) clearTimeout(before);
    const stage = this.s.registry.get(id)?.stage;
    const timer = setTimeout(() => {
      this.loading.delete(id);
      if (this.s.closing || this.s.members.get(id) !== member) return;
      // Its ready came and its challenge is pending (queued, computed, or with it): the deadline is for the load; the
      // challenge's own timeout judges the answer. Before, an honest volunteer answering within that timeout was
      // un-vouched all the same (a red-team find), and a swarm without spares switched back and forth.
      if (member.challenge !== null) {
        this.armLoadDeadline(id, member, this.s.options.challengeTimeoutMs ?? DEFAULT_CHALLENGE_TIMEOUT_MS, deadlineMs);
        return;
      }
      if (!this.s.registry.markStale(id)) return;
      const vouched = member.vouched;
      member.vouched = false;
      this.h.distrust(member.keys);
      this.s.log(`volunteer ${id} did not load stage ${stage ?? '?'} within ${deadlineMs} ms: it holds no seat until it is ready`);
      this.move(this.s.registry.rebalanceNow());
      if (vouched) this.h.considerRepartition(true);
      this.s.options.statusChanged?.();
    }, waitMs);
    timer.unref?.();
    this.loading.set(id, timer);
  }

  /** Stops the load deadlines (the server is going away). */
  stop(): void {
    for (const timer of this.loading.values()) clearTimeout(timer);
    this.loading.clear();
  }

  /** Evicts a volunteer: tells it why, bans its keys when `ban`, and ends its connection. */
  expel(id: string, code: WireErrorCode, reason: string, ban: boolean): void {
    const member = this.s.members.get(id);
    if (member === undefined) return;
    this.s.log(`volunteer ${id} evicted (${code}): ${reason}`);
    refuse(this.s, id, code === 'ERR_CHALLENGE_FAILED' || code === 'ERR_EQUIVOCATION' ? code : 'ERR_EVICTED', `evicted: ${reason}`);
    // The transport's disconnect handler calls left(): sessions fail over, stages re-balance.
    queueMicrotask(() => member.link.disconnect());
    // Told its own reason above; its siblings are told theirs.
    this.cutOff.add(member);
    if (ban) this.ban(member.keys);
  }

  /** Bans these identity keys, and cuts off this server's volunteers that hold one of them. */
  private ban(keys: readonly string[]): void {
    for (const k of keys) this.s.bans.ban(k);
    for (const k of keys) this.cutBanned(k);
  }

  /**
   * Cuts off this server's volunteers that a new ban names (the same client key or address as one evicted, here
   * or on another server of a cluster): a ban refuses a client, not only its next hello, or a sibling placed
   * beforehand on another server would keep its seat.
   */
  cutBanned(key: string): void {
    for (const m of this.s.members.values()) {
      if (m.remote || !m.keys.includes(key) || this.cutOff.has(m)) continue;
      this.cutOff.add(m);
      refuse(this.s, m.id, 'ERR_BANNED', 'this volunteer (its client key or address) was evicted for misbehaving; try again later');
      queueMicrotask(() => m.link.disconnect());
    }
  }

  /**
   * Tells a volunteer its score; evicts (and bans its keys) after repeated disagreement. `counted`: another server of
   * a cluster classified it, and counted it into its client's record in Redis already.
   */
  judge(id: string, counts: AuditCounts, agreed: boolean, counted = false): void {
    const member = this.s.members.get(id);
    if (member === undefined) {
      // A connection that left, judged on its last steps: its client's record counted it (a liar that lied and left
      // before the honest reports came). Over the line, its keys are banned and its open connections cut off.
      const who = this.s.audit.departedKeys(id);
      if (who === undefined) return;
      if (!agreed && shouldEvict(counts)) {
        this.s.log(
          `volunteer ${id} (gone) would be evicted: ${counts.disagreed} outputs that disagreed with the majority, ${counts.agreed} that agreed; its keys are banned`,
        );
        this.ban(who);
      }
      // In a cluster, into its client's record in Redis too (a volunteer of another server as well: this one knows
      // its keys): before, only into the copy kept here, which the client's next connection never read.
      if (!counted) void this.countInCluster(id, who, agreed);
      return;
    }
    if (member.remote) {
      // Into its client's record in Redis here, then told to its server: before, only told, and a verdict lost on the
      // way (a connection to Redis down) was counted nowhere (a red-team find). Over the line, its keys are banned here.
      const cluster = this.s.cluster;
      void this.countInCluster(id, member.keys, agreed).then((sum) => cluster?.audited(id, agreed, sum));
      return;
    }
    // Counted into its client's record in Redis by the server that classified it, which sent the sum: judged here on it.
    if (!counted) void this.countInCluster(id, member.keys, agreed);
    this.sendScore(member, counts, !agreed);
    // At a disagreement only: a record resumed over the line (one evicted before, back after its ban) is evicted
    // at its next disagreement, not at the agreement that follows its return.
    if (!agreed && shouldEvict(counts))
      this.expel(id, 'ERR_EVICTED', `${counts.disagreed} outputs that disagreed with the majority, ${counts.agreed} that agreed`, true);
  }

  /**
   * In a cluster, counts a classification of `id` (this server's, or one that left) into its client's record in Redis,
   * the sum of the client's connections on every server; a disagreement that puts that sum over the line evicts `id`
   * and bans its keys, which cuts off the client's connections on every server. Before, each connection was judged
   * on its own counts: tabs of one client on two servers lied twice each, unjudged.
   */
  private countInCluster(id: string, keys: readonly string[], agreed: boolean): Promise<AuditCounts | null> {
    const cluster = this.s.cluster;
    if (cluster === null) return Promise.resolve(null);
    return cluster
      .recorded(keys, agreed)
      .then((sum) => {
        this.judgeSum(id, keys, agreed, sum);
        return sum;
      })
      .catch((e: Error) => {
        this.s.log(`the record of volunteer ${id}'s client not judged: ${e.message}`);
        return null;
      });
  }

  /** After countInCluster: `sum` is the client's record on every server after one more classification of `id`. */
  private judgeSum(id: string, keys: readonly string[], agreed: boolean, sum: AuditCounts | null): void {
    if (sum === null || this.s.closing) return;
    const member = this.s.members.get(id);
    // A connection shows (and is routed by) its client's record, as connections of one client share one on a server
    // alone; never lowered (Redis lost its data, say).
    const now = this.s.audit.get(id);
    const more = sum.agreed + sum.disagreed > now.agreed + now.disagreed;
    if (member !== undefined && !member.remote && more && sum.agreed >= now.agreed && sum.disagreed >= now.disagreed) {
      this.s.audit.set(id, sum);
      this.sendScore(member, sum, false);
    }
    if (agreed || !shouldEvict(sum)) return;
    const why = `${sum.disagreed} outputs of its client that disagreed with the majority, ${sum.agreed} that agreed (on every server)`;
    if (member !== undefined && !member.remote && !this.cutOff.has(member)) this.expel(id, 'ERR_EVICTED', why, true);
    else if (!keys.every((k) => this.s.bans.banned(k))) {
      this.s.log(`volunteer ${id} would be evicted: ${why}; its keys are banned`);
      this.ban(keys);
    }
  }

  /** Sends every score still held back: the server is going away. */
  flushScores(): void {
    for (const m of this.s.members.values()) if (m.score.timer !== null) this.sendScore(m, null, true);
  }

  /**
   * Sends `counts` (null: the one held back) now if a disagreement (`urgent`) or none went out for
   * `SCORE_EVERY_MS`; else holds it back until then, the newest replacing an older one.
   */
  private sendScore(member: Member, counts: AuditCounts | null, urgent: boolean): void {
    const score = member.score;
    if (counts !== null) score.held = counts;
    if (score.timer !== null) clearTimeout(score.timer);
    score.timer = null;
    const wait = score.sentAt + SCORE_EVERY_MS - Date.now();
    if (!urgent && wait > 0) {
      score.timer = setTimeout(() => this.sendScore(member, null, true), wait);
      score.timer.unref?.();
      return;
    }
    if (score.held === null) return;
    member.link.send('volunteer:score', { ...score.held, reputation: reputation(score.held) });
    score.sentAt = Date.now();
    score.held = null;
  }

  /** Every volunteer with its stage, backend, state and audit counts. */
  volunteers(): VolunteerView[] {
    const busy = new Set<string>();
    for (const session of this.s.sessions.values()) for (const id of session.route.flat()) busy.add(id);
    return this.s.registry.all().map((v) => {
      const counts = this.s.audit.get(v.id);
      const state = !v.ready ? 'loading' : busy.has(v.id) ? 'busy' : 'ready';
      return {
        id: v.id,
        stage: v.stage,
        backend: v.backend as Backend,
        adapter: v.adapter,
        state,
        ready: v.ready,
        ...counts,
        reputation: reputation(counts),
        established: established(this.s, v.id),
      };
    });
  }

  // The seams of a cluster of servers (../cluster/): volunteers of other servers mirrored here.

  /** Adds or updates a volunteer of another server: a route candidate here, reached through `link`. */
  mirror(link: VolunteerLink, v: MirroredVolunteer): void {
    const member = this.s.members.get(v.id);
    if (member !== undefined && !member.remote) return;
    const had = member === undefined ? undefined : this.s.registry.get(v.id);
    const before = had === undefined ? undefined : { stage: had.stage, elsewhere: had.elsewhere === true, stale: had.stale === true };
    const vouched = v.vouched ?? v.proven;
    if (member === undefined) {
      this.s.members.set(v.id, {
        id: v.id,
        link,
        keys: v.keys,
        fault: null,
        remote: true,
        proven: v.proven,
        vouched,
        challenge: null,
        withdrawn: null,
        noShows: new NoShowWindow(),
        silence: null,
        opened: null,
        score: { sentAt: -Infinity, timer: null, held: null },
      });
    } else {
      // Missed a load deadline on its server (published stale): as one of this server's that did (armLoadDeadline),
      // not counted for a switch back for a while, and the leader of a cluster's re-partitions looks again.
      if (member.vouched && v.stale === true && before?.stale !== true) {
        this.h.distrust(member.keys);
        queueMicrotask(() => this.h.considerRepartition(true));
      }
      member.proven = v.proven;
      member.vouched = vouched;
    }
    this.s.registry.mirror({ ...v, remote: true });
    // Moved by its own server: it dropped its sessions of the stage it left, ours too, which fail over now as a move
    // here fails them over. Before, its silence in them was struck once a session, and three strikes evicted and
    // banned an honest volunteer that its server had moved (a departure there moves one: any churn did it). So too
    // where its server (or this one) switched to another partition.
    if (before !== undefined && (before.stage !== v.stage || (v.elsewhere === true && !before.elsewhere)))
      for (const session of this.s.sessions.values()) this.h.failOver(session, v.id);
    this.s.audit.set(v.id, v.counts);
    if (member === undefined) this.holdAddress(v.keys);
    this.s.options.statusChanged?.();
  }

  /**
   * One address holds MAX_VOLUNTEERS_PER_ADDRESS volunteers over the whole cluster: hellos said to several servers
   * at once each passed a count that did not see the others yet. Every server ranks them the same way (earliest
   * joined first, then by id) and cuts off its own beyond the limit, so that the servers together keep that many.
   */
  private holdAddress(keys: readonly string[]): void {
    const addressKey = keys.find((k) => k.startsWith('addr:'));
    if (addressKey === undefined) return;
    const same = [...this.s.members.values()].filter((m) => m.keys.includes(addressKey) && !this.cutOff.has(m));
    if (same.length <= MAX_VOLUNTEERS_PER_ADDRESS) return;
    const joined = (id: string) => this.s.registry.get(id)?.joinedAt ?? Number.POSITIVE_INFINITY;
    same.sort((a, b) => joined(a.id) - joined(b.id) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    for (const m of same.slice(MAX_VOLUNTEERS_PER_ADDRESS)) {
      if (m.remote) continue;
      this.cutOff.add(m);
      refuse(
        this.s,
        m.id,
        'ERR_RATE_LIMITED',
        `${same.length} volunteers are connected from this address to the servers of this swarm (at most ${MAX_VOLUNTEERS_PER_ADDRESS}); this one joined last`,
      );
      // After the reason; the transport's disconnect handler calls left().
      queueMicrotask(() => m.link.disconnect());
    }
  }

  /** A volunteer of this server: its identity keys, whether it proved its stage and proved one here once; undefined for others. */
  localMember(id: string): { readonly keys: readonly string[]; readonly proven: boolean; readonly vouched: boolean } | undefined {
    const m = this.s.members.get(id);
    return m === undefined || m.remote ? undefined : { keys: m.keys, proven: m.proven, vouched: m.vouched };
  }

  /** How this server reaches one of its own volunteers; undefined for volunteers of other servers. */
  localLink(id: string): VolunteerLink | undefined {
    const m = this.s.members.get(id);
    return m === undefined || m.remote ? undefined : m.link;
  }

  /** Is this volunteer one of another server's, mirrored here? */
  isRemote(id: string): boolean {
    return this.s.members.get(id)?.remote === true;
  }

  /**
   * Moves volunteers of this server to stages short of replicas, counting those of the
   * others: volunteers that joined several servers at once may have picked the same stage.
   */
  rebalance(): void {
    const moves = this.s.registry.rebalanceNow();
    this.move(moves);
    if (moves.length > 0) this.s.options.statusChanged?.();
  }
}
