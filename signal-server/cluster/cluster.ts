/**
 * Several server processes, one swarm (REDIS_URL). Every process runs its own
 * coordinator; this module joins them through Redis:
 *
 * - Each process publishes its own volunteers (identity keys, stage, readiness,
 *   proof, record) to the bus and to its hash in Redis; the others mirror them
 *   as remote members of their coordinators, so a request on any process is
 *   routed over the volunteers of all of them.
 * - What a coordinator sends a remote volunteer goes to the owning process's
 *   inbox channel, which emits it on the volunteer's socket; the volunteer's
 *   reports about that session come back the same way. Session ids carry the
 *   number of the process that coordinates them, so a report needs no lookup.
 *   One publishing connection per process keeps both directions in order (a
 *   link grant reaches the owner before the session:open that needs it).
 * - Bans are written to Redis and broadcast; each volunteer's record (agreed /
 *   disagreed) is kept by its own process, and each classification is added to
 *   its client's record in Redis under its client key (with those of the
 *   client's other connections, and of votes judged after a connection left),
 *   so it survives a reconnection to any process.
 * - Each process keeps a heartbeat key; one whose key expires is dead: the others
 *   drop its volunteers (their sessions fail over to spares), the links its
 *   sessions made, and close its sessions on their own volunteers.
 */
import { createHash, randomUUID } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import type { LayerRange } from '../../shared/model/stage-graph.js';
import { type FrameIn, packFrameMessages } from '../../shared/protocol/messages.js';
import { MESH_AHEAD } from '../../shared/swarm/mesh-loop.js';
import { MAX_SESSIONS_PER_REPLICA } from '../../shared/swarm/replica-core.js';
import type { AuditCounts } from '../coordinator/audit.js';
import type { ClusterSeam, Coordinator, SessionReport, VolunteerLink } from '../coordinator/coordinator.js';
import { clientKeyOf } from '../coordinator/identity.js';
import { NO_SHOW_WINDOW, type SessionShown } from '../coordinator/no-show-window.js';
import { type ReportKind, sessionTarget } from '../coordinator/report-allowance.js';
import { BAN_MS } from '../coordinator/reputation.js';
import type { NoShow } from '../coordinator/session-types.js';
import { deliverToVolunteer, frameFromPeer, reportToCoordinator } from './inbox.js';
import {
  type BusMessage,
  decode,
  decodeInbox,
  floatBytes,
  type InboxMessage,
  type LinkedPair,
  MAX_LINKS_LISTED,
  MAX_OPEN_LISTED,
  MAX_PROC,
  type OpenSession,
  type PartitionPlan,
  parseBusMessage,
  parsePartitionPlan,
  parseVolunteerState,
  procOfSession,
  SESSIONS_PER_PROC,
  sessionOfMessage,
  type VolunteerState,
} from './messages.js';
import { MAX_RECONNECT_MS, RedisLink, redactedUrl } from './redis-link.js';
import { PROGRESS_EVERY, RemoteSessions } from './remote-sessions.js';
import { ClusterLinks, SharedBans } from './shared-state.js';

/** A server replica's `frame` event (what the fallback sends a volunteer). */
function isFrameIn(m: unknown): m is FrameIn {
  if (typeof m !== 'object' || m === null) return false;
  const { from, data } = m as Record<string, unknown>;
  return typeof from === 'string' && (data instanceof Uint8Array || data instanceof ArrayBuffer);
}

export interface ClusterOptions {
  /** redis://host:port */
  readonly url: string;
  /** Prefix of every Redis key and channel (default "webswarm"): several swarms can share one Redis. */
  readonly prefix?: string;
  /** How often a process renews its heartbeat and looks at the others' (default 1 s). */
  readonly heartbeatMs?: number;
  /** A process whose heartbeat is this old is dead (default 5 s; a heartbeat thread renews it while the main thread is held). */
  readonly deadAfterMs?: number;
  /** How often a process publishes what changed about its volunteers (default 200 ms). */
  readonly publishMs?: number;
  /** How often a process reads the others' volunteers again in full (default 30 s). */
  readonly resyncMs?: number;
  /** How long another process's volunteers may be on another partition than this one's (default ELSEWHERE_LIMIT_MS). */
  readonly elsewhereLimitMs?: number;
  /** The cluster protocol this process says it speaks (default CLUSTER_PROTOCOL; another only in tests). */
  readonly protocol?: number;
  /** Clients whose records and sessions missed Redis keeps at most, the least lately written dropped (default KEPT_CLIENTS). */
  readonly keptClients?: number;
  readonly log: (line: string) => void;
  /** The longest wait between two attempts to reach a lost Redis (default MAX_RECONNECT_MS). */
  readonly reconnectMaxMs?: number;
  /** Where Redis's problems go (lost, unreachable, a failed publication): the server's warn level; `log` by default. */
  readonly warn?: (line: string) => void;
}

/**
 * What processes of a cluster tell each other (messages.ts), by version: a process joins only with those of its
 * own, since another's messages would be dropped as malformed. 2: bytes after a JSON header, refusals as full.
 * 3: a volunteer's capacity and staleness published (every process must plan the same moves). 4: the partition a
 * volunteer's stage is of, and whether it proved one once, published; the leader's re-partition plans. 5: the served
 * context among the settings compared (swarmSettings): a process of 4 would be told apart as of other settings,
 * not of another version. 6: where a session stands, told to its members' processes ('progress'). 7: the sessions
 * open on another process's volunteers, told to it every resync ('open'), which ends those whose close was lost.
 * 8: the links of a process's sessions with another's volunteers, told to it every resync ('links').
 */
export const CLUSTER_PROTOCOL = 8;
/** Heartbeats a live process may go without saying its protocol before it is said to be of a version before them. */
const UNSAID_ROUNDS = 3;
/** A volunteer that refused a session of this process as full counts as full for this many of its publications. */
const FULL_MARK_PUBLICATIONS = 5;
/** How long a volunteer that left is remembered as gone. */
const GONE_MEMORY_MS = 60_000;
/** Sessions and forwarded joins whose connection losses are kept (openedAtLoss, forwardedAtLoss). */
const OUTAGE_MARKED = 4_096;

/** Sets `k` in `map`, dropping the oldest past OUTAGE_MARKED. */
function mark<K>(map: Map<K, number>, k: K, losses: number): void {
  map.set(k, losses);
  if (map.size > OUTAGE_MARKED) map.delete(map.keys().next().value as K);
}

/** How far before the last read's time (plus a ban's length) the next read of the bans begins: clocks may differ. */
const BAN_READ_OVERLAP_MS = 2 * 60_000;
/** Bans written again in one command (rewriteBans). */
const BAN_WRITE_BATCH = 1_000;
/** What `published` holds for a volunteer to publish again (no state's JSON is empty). */
const REPUBLISH = '';
/** How often the others' volunteers are read again in full. */
export const DEFAULT_RESYNC_MS = 30_000;
/** Volunteers whose `gone` a process remembers saying again (notHere): cleared when full. */
const MAX_RETOLD_GONE = 10_000;
/** A process whose heartbeat is this old is dead. */
export const DEFAULT_DEAD_AFTER_MS = 5_000;
/** A process whose main thread has not beaten for this long is let die (its heartbeat thread stops renewing). */
export const STALL_LIMIT_MS = 30_000;
/** The sessions kept under a client key in Redis (the newest), for its next connection (NoShowWindow.prepend). */
const KEPT_SESSIONS = 2 * NO_SHOW_WINDOW;
/**
 * Clients (client keys) whose record and sessions missed Redis keeps, the least lately written dropped first: each key
 * expires a day after its last write, but a client that takes a new key per connection made two a connection without
 * bound (a review's find; a server alone keeps 8 192 records).
 */
export const KEPT_CLIENTS = 50_000;

/**
 * Lua: `touch(index, client, now, kept, prefixes)` marks `client` written at `now` in the sorted set `index`; past
 * `kept` clients, drops the least lately written with their keys (the client with each of `prefixes`). Returns how
 * many were dropped.
 */
const TOUCH = `local function touch(index, client, now, kept, prefixes)
  redis.call('ZADD', index, now, client)
  local over = redis.call('ZCARD', index) - tonumber(kept)
  if over > 0 then
    local gone = redis.call('ZPOPMIN', index, over)
    for i = 1, #gone, 2 do
      for _, prefix in ipairs(prefixes) do redis.call('DEL', prefix .. gone[i]) end
    end
  end
  return over
end
`;

/** Marks client ARGV[1] written at ARGV[2] in the index KEYS[1], keeping ARGV[3] at most (ARGV[4..]: the prefixes). */
const TOUCH_CLIENT = `${TOUCH}return touch(KEYS[1], ARGV[1], ARGV[2], ARGV[3], {unpack(ARGV, 4)})`;

/**
 * Adds ARGV[1] agreed and ARGV[2] disagreed to a client's record sum (KEYS[1]), kept ARGV[3] s from now, and returns its
 * two fields (nil where not there). A client with no sum yet starts from the counts a version before the sum wrote
 * (KEYS[2], `record:`): read once and left behind, they were lost (a review: a liar at 0 agreed, 2 disagreed there
 * came back at 1 and 0 after one honest step). Increments of 0 create nothing (a read); others mark the client written
 * in the index KEYS[3] (ARGV[4..]: TOUCH_CLIENT's arguments), in the same call.
 */
const ADD_TO_RECORD = `${TOUCH}if redis.call('EXISTS', KEYS[1]) == 0 then
  local old = redis.call('HMGET', KEYS[2], 'agreed', 'disagreed')
  if old[1] or old[2] then
    redis.call('HSET', KEYS[1], 'agreed', tonumber(old[1]) or 0, 'disagreed', tonumber(old[2]) or 0)
  end
end
if ARGV[1] ~= '0' then redis.call('HINCRBY', KEYS[1], 'agreed', ARGV[1]) end
if ARGV[2] ~= '0' then redis.call('HINCRBY', KEYS[1], 'disagreed', ARGV[2]) end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
if ARGV[1] ~= '0' or ARGV[2] ~= '0' then touch(KEYS[3], ARGV[4], ARGV[5], ARGV[6], {unpack(ARGV, 7)}) end
return redis.call('HMGET', KEYS[1], 'agreed', 'disagreed')`;

/** Raises a record hash's fields (KEYS[1]) to at least ARGV[1] agreed and ARGV[2] disagreed; kept ARGV[3] s from now. */
const RAISE_RECORD = `for i, f in ipairs({'agreed', 'disagreed'}) do
  local n = tonumber(ARGV[i])
  if (tonumber(redis.call('HGET', KEYS[1], f)) or 0) < n then redis.call('HSET', KEYS[1], f, n) end
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1`;

/** How long a volunteer's record is kept in Redis after its last change. */
export const RECORD_TTL_S = 24 * 3600;
/** Process numbers tried at start before giving up (each one held by a live process is passed over). */
const MAX_NUMBER_TRIES = 64;
/** Sets KEYS[1] to ARGV[1] and KEYS[2] to ARGV[2] where missing or lower, and KEYS[3] for ARGV[3] ms (raiseCounters). */
const RAISE_COUNTERS = [
  "for i = 1, 2 do local c = tonumber(redis.call('GET', KEYS[i]) or '0') if c < tonumber(ARGV[i]) then redis.call('SET', KEYS[i], ARGV[i]) end end",
  "redis.call('SET', KEYS[3], '1', 'PX', ARGV[3]) return 0",
].join(' ');
/** The next plan number (KEYS[1], the counter) past the counter and past ARGV[1] (the latest plan served). */
const NEXT_PLAN =
  "local n = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), tonumber(ARGV[1])) + 1 redis.call('SET', KEYS[1], n) return n";
/** A newcomer's heartbeat key while it is not sure its number is free (claimNumber): never taken for a live process's. */
const CLAIM_PREFIX = 'claim:';

/** How long a closing process tries to tell the others. */
const STOP_TIMEOUT_MS = 2_000;
/** Bans read from Redis at start, at most. */
const MAX_LOADED_BANS = 100_000;
/**
 * How long another process's volunteers may be on another partition than this process's (a re-partition under way:
 * one of the two has not switched yet, its stage files being built) before they are dropped here: while there are
 * such, this process re-balances nothing (Registry.rebalance), and a process that never switches (its build failed)
 * must not hold that off for good. Mirrored again when the two serve one partition.
 */
export const ELSEWHERE_LIMIT_MS = 120_000;

interface Peer {
  readonly volunteers: Set<string>;
  /** Links its sessions made with our volunteers: "a\nb" → count. */
  readonly links: Map<string, number>;
}

export class Cluster implements ClusterSeam {
  readonly bans = new SharedBans();
  /** When the bans in Redis were last read (Date.now()), or null before the first read (readBans). */
  private bansReadAt: number | null = null;
  readonly links = new ClusterLinks();
  /** This process's number in the cluster (1 … 65535), once started. */
  proc = 0;
  private nextSession = 0;
  private readonly redis: RedisLink;
  private coordinator: Coordinator | null = null;
  private readonly peers = new Map<number, Peer>();
  /** Mirrored volunteer → the process it is connected to. */
  private readonly owner = new Map<string, number>();
  /**
   * Our volunteers as last published ('' where to publish again: REPUBLISH). An id stays here until its `gone` is
   * published: before, a lost connection or a lapsed heartbeat cleared the map, and a volunteer that left before the
   * next publication was never said gone nor taken out of our list in Redis: the others listed it (and routed to it)
   * for good (a race found in a test of Redis's return).
   */
  private readonly published = new Map<string, string>();
  /** Volunteers not here said gone again because another process sent to them (notHere), and when. */
  private readonly retoldGone = new Map<string, number>();
  /** Sessions of other processes open on our volunteers. */
  private readonly remote = new RemoteSessions();
  /**
   * Sessions of this process opened on other processes' volunteers, and joins of ours forwarded to other processes,
   * each with this process's connection losses then (OUTAGE_MARKED, the oldest dropped first). A session's messages
   * cross Redis, whose pub/sub loses what it tells while a connection is down: a verdict of a no-show across a loss
   * may be the loss's doing, not the volunteer's (see `noShow`).
   */
  private readonly openedAtLoss = new Map<number, number>();
  private readonly forwardedAtLoss = new Map<string, number>();
  /**
   * Sessions of this process open on other processes' volunteers, as told to them (opened, not closed): process →
   * session → its volunteers there. Told to each every resync (`open`), so that one that lost a close ends it.
   */
  private readonly openThere = new Map<number, Map<number, Set<string>>>();
  /**
   * Links this process's sessions hold with other processes' volunteers, as told to them (linked, not unlinked):
   * process → "a\nb" → count. Told to each every resync (`links`), so that one that lost a link or unlink makes good.
   */
  private readonly linksThere = new Map<number, Map<string, number>>();
  /** Sessions each mirrored volunteer is in, as its process last published. */
  private readonly mirroredSessions = new Map<string, number>();
  /** Mirrored volunteers that refused a session as full here, and until when they count as full. */
  private readonly fullUntil = new Map<string, number>();
  /** Mirrored volunteers that left, and when (a resync never brings them back). */
  private readonly gone = new Map<string, number>();
  /** Live processes that did not say their protocol, by how many heartbeats in a row (UNSAID_ROUNDS). */
  private readonly unsaid = new Map<number, number>();
  /** Each mirrored volunteer's last publication, and its process: mirrored again when this process's partition changes. */
  private readonly states = new Map<string, { readonly p: number; readonly v: VolunteerState }>();
  /**
   * Processes whose volunteers are on another partition than this process's, since when (Date.now(); ELSEWHERE_LIMIT_MS):
   * counted by process, not by volunteer, or each newcomer to a process that never switches would hold off re-balancing
   * here for another ELSEWHERE_LIMIT_MS.
   */
  private readonly elsewhereSince = new Map<number, number>();
  /** The latest re-partition plan served (PartitionPlan.n): an older one that arrives late is ignored. */
  private lastPlan = 0;
  /** Volunteers of a process that died, being dropped. */
  private readonly going = new Set<string>();
  private readonly restored = new Set<string>();
  private readonly timers: ReturnType<typeof setInterval>[] = [];
  /** Processes found to speak this one's cluster protocol: only their volunteers are mirrored. */
  private readonly compatible = new Set<number>();
  /** Processes found to speak another (told once in the log); their messages are ignored. */
  private readonly incompatible = new Set<number>();
  /**
   * What this process writes in its heartbeat key: a number's key that holds another's mark is taken. A number is
   * unique while its process lives, even after Redis lost its data (restarted without persistence): there the
   * counter starts again, and a newcomer that took a live process's number split the cluster without a word (an
   * operator's find).
   */
  private readonly mark = randomUUID();
  /** Each other process's mark, as its heartbeat key last held it (lookAround). */
  private readonly marks = new Map<number, string>();
  /**
   * When each other process's heartbeat key was last seen (lookAround): performance.now(), and the time Redis had
   * been connected by then (RedisLink.connectedMs).
   */
  private readonly seen = new Map<number, { readonly at: number; readonly upMs: number }>();
  /** The main thread's last beat (seconds), read by the heartbeat thread. */
  private readonly beat = new Int32Array(new SharedArrayBuffer(4));
  private worker: Worker | null = null;

  constructor(private readonly options: ClusterOptions) {
    this.redis = new RedisLink(
      options.url,
      options.prefix ?? 'webswarm',
      options.warn ?? options.log,
      options.log,
      options.reconnectMaxMs ?? MAX_RECONNECT_MS,
    );
  }

  /** The server's warn level (`log` where it gives none). */
  private warn(line: string): void {
    (this.options.warn ?? this.options.log)(line);
  }

  private get heartbeatMs(): number {
    return this.options.heartbeatMs ?? 1000;
  }

  private get deadAfterMs(): number {
    return this.options.deadAfterMs ?? DEFAULT_DEAD_AFTER_MS;
  }

  /**
   * How long after Redis came back the others' keys and lists may be missing: their connections' longest wait, then
   * twice the death limit (a process whose threads are starved of the CPU for a while says them again by then).
   */
  private get settleMs(): number {
    return 2 * this.deadAfterMs + this.redis.reconnectMaxMs;
  }

  /** Within settleMs of Redis coming back: no volunteer is taken for gone for want of its process's list. */
  private get settling(): boolean {
    return performance.now() - this.redis.reconnectedAt < this.settleMs;
  }

  /**
   * Whether a process whose heartbeat key is missing is dead. Where Redis was not lost since its key was last seen,
   * the key expired on its own, deadAfterMs after its last beat: dead. Where it was, the key may have gone with
   * Redis's data or expired during the outage, and the process says it again once its connection is back: dead
   * only when Redis has been connected for settleMs since the key was last seen, in all. Counted in all, not from
   * the last return: a Redis that came and went more often than that (a flapping one) kept every process alive for
   * good, a crashed one too, with its volunteers routed and its sessions waited for.
   */
  private heartbeatLapsed(p: number, upMs: number): boolean {
    const seen = this.seen.get(p);
    // Never seen (a number in the set of processes whose key is gone): as it was before the last return.
    if (seen === undefined) return !this.settling;
    // Seen since the last return, and that return settled: its key expired on its own. (Within the settling, one
    // read just after a return that kept Redis's data may have had little time left, its process not back yet.)
    if (this.redis.reconnectedAt < seen.at && !this.settling) return true;
    return upMs - seen.upMs >= this.settleMs;
  }

  /**
   * A number no live process holds, the counter's next, and above every number a live process holds: each raises
   * the counter to the highest number it knows at every heartbeat (raiseCounters), and says so in a key that lasts
   * deadAfterMs; a number whose heartbeat key is there is passed over (claimed with NX). Where that key is missing
   * (a new cluster, or a Redis that lost its data, a restart without persistence, before any live process beat
   * again) the live processes' own keys may be missing too (before, a newcomer took their numbers, every one in
   * turn, and split the cluster without a word: an operator's find). So a number taken then is claimed with a
   * tentative mark and kept only if no live process says it over the time their connections take to come back and
   * beat; one that does overwrites the claim, and another number is taken.
   */
  private async claimNumber(): Promise<number> {
    const claim = `${CLAIM_PREFIX}${this.mark}`;
    for (let i = 0; i < MAX_NUMBER_TRIES; i++) {
      const unsure = (await this.pub.exists(this.key('proc-seq-live'))) === 0;
      const n = ((await this.pub.incr(this.key('proc-seq'))) % MAX_PROC) + 1;
      const key = this.key('alive', n);
      const waitMs = unsure ? 2 * this.heartbeatMs + this.redis.reconnectMaxMs + 100 : 0;
      const took = await this.pub.set(key, unsure ? claim : this.mark, {
        expiration: { type: 'PX', value: this.deadAfterMs + waitMs },
        condition: 'NX',
      });
      if (took === null) continue;
      if (!unsure) return n;
      await new Promise((r) => setTimeout(r, waitMs));
      // Still ours: made our own (XX: unless it expired meanwhile, and then it is tried again).
      if (
        (await this.pub.get(key)) === claim &&
        (await this.pub.set(key, this.mark, { expiration: { type: 'PX', value: this.deadAfterMs }, condition: 'XX' })) !== null
      )
        return n;
      this.options.log(`cluster: process number ${n} is a live process's (Redis lost its keys): taking another`);
    }
    throw new Error(`cluster: no free process number in ${MAX_NUMBER_TRIES} tries: live processes hold every one tried`);
  }

  /**
   * The process counter raised to at least `n`, and the plan counter to at least `plan` (never lowered; one step:
   * two processes' raises cannot lower either), and the key that says a live process did so within deadAfterMs.
   */
  private async raiseCounters(n: number, plan: number): Promise<void> {
    await this.pub.eval(RAISE_COUNTERS, {
      keys: [this.key('proc-seq'), this.key('partition-seq'), this.key('proc-seq-live')],
      arguments: [String(n), String(plan), String(this.deadAfterMs)],
    });
  }

  private get elsewhereLimitMs(): number {
    return this.options.elsewhereLimitMs ?? ELSEWHERE_LIMIT_MS;
  }

  private get publishMs(): number {
    return this.options.publishMs ?? 200;
  }

  private get protocol(): number {
    return this.options.protocol ?? CLUSTER_PROTOCOL;
  }

  /**
   * What this process says it is, under its protocol key: the cluster protocol, then the swarm's settings
   * (Coordinator.swarmSettings). A process that says another is left out: its volunteers run other layers.
   */
  private get said(): string {
    return `${this.protocol} ${this.coordinator?.swarmSettings ?? ''}`;
  }

  /**
   * Where the partition the cluster serves is recorded: under its configured settings (`said`), so that a cluster
   * started again with other settings (another STAGES, say) never adopts a cut planned for those before.
   */
  private get partitionRecordKey(): string {
    return this.key('partition', createHash('sha256').update(this.said).digest('hex').slice(0, 16));
  }

  private get pub() {
    return this.redis.pub;
  }

  private get closed(): boolean {
    return this.redis.closed;
  }

  private problem(line: string): void {
    this.redis.problem(line);
  }

  private key(...parts: (string | number)[]): string {
    return this.redis.key(...parts);
  }

  /** How many other processes this one serves with (their volunteers mirrored here): for tests. */
  peerCount(): number {
    return this.peers.size;
  }

  /** Unique among the cluster's processes: the process's number in the high bits. */
  nextSessionId(): number {
    const n = this.nextSession;
    this.nextSession = (this.nextSession + 1) % SESSIONS_PER_PROC;
    return this.proc * SESSIONS_PER_PROC + n;
  }

  /** Connects, takes a number, loads the bans and the other processes' volunteers, and starts publishing. */
  async start(coordinator: Coordinator): Promise<void> {
    this.coordinator = coordinator;
    await this.redis.connect();
    this.proc = await this.claimNumber();
    await this.pub.set(this.key('protocol', this.proc), this.said);
    await this.heartbeat();
    const now = Date.now();
    const bans = this.key('bans-until');
    await this.pub.zRemRangeByScore(bans, '-inf', now);
    let loaded = await this.readBans();
    // Where a process of the version before wrote them.
    for (const [k, v] of Object.entries(await this.pub.hGetAll(this.key('bans')))) {
      const until = Number(v);
      if (!Number.isFinite(until) || until <= now) void this.pub.hDel(this.key('bans'), k);
      else if (loaded++ < MAX_LOADED_BANS) this.bans.banUntil(k, until);
    }
    this.bans.share = (k, until) => {
      void this.pub
        .multi()
        .zAdd(bans, { score: until, value: k })
        .zRemRangeByScore(bans, '-inf', Date.now())
        .exec()
        .catch((e: Error) => this.problem(`a ban not written: ${e.message}`));
      this.publish(this.key('bus'), { t: 'ban', proc: this.proc, key: k, untilMs: until });
    };
    this.links.tell = (t, a, b) => {
      for (const p of new Set([this.owner.get(a), this.owner.get(b)])) {
        if (p === undefined) continue;
        this.toldLink(p, `${a}\n${b}`, t === 'link' ? 1 : -1);
        this.publish(this.key('proc', p), { t, proc: this.proc, a, b });
      }
    };
    // The heartbeat thread keeps this process alive in the others' eyes while its main thread is held up to
    // STALL_LIMIT_MS; it stops with the process.
    this.worker = new Worker(new URL('./heartbeat-worker.mjs', import.meta.url), {
      workerData: {
        url: this.options.url,
        key: this.key('alive', this.proc),
        mark: this.mark,
        reconnectMaxMs: this.redis.reconnectMaxMs,
        intervalMs: this.heartbeatMs,
        deadAfterMs: this.deadAfterMs,
        stallLimitMs: STALL_LIMIT_MS,
        beat: this.beat.buffer,
      },
    });
    this.worker.on('error', (e: Error) => this.problem(`heartbeat thread: ${e.message}`));
    this.worker.unref();
    await this.redis.sub.subscribe(this.key('bus'), (m) => this.guarded('a bus message', () => this.onBus(m)));
    await this.redis.sub.subscribe(this.key('proc', this.proc), (m) => this.guarded('an inbox message', () => this.onInbox(m)), true);
    await this.lookAround();
    coordinator.cluster = this;
    // The cluster re-partitioned before this process started: it serves that partition too (once built here).
    await this.readPlan(false);
    const heartbeatMs = this.options.heartbeatMs ?? 1000;
    this.timers.push(
      setInterval(
        () =>
          void this.heartbeat()
            .then(() => this.lookAround())
            .then(() => {
              if (this.closed) return;
              this.sweepElsewhere();
              coordinator.rebalance();
              coordinator.clusterTick();
            })
            .catch((e: Error) => this.problem(`heartbeat failed: ${e.message}`)),
        heartbeatMs,
      ),
    );
    this.timers.push(setInterval(() => this.publishVolunteers(), this.publishMs));
    const resync = () => void this.resync().catch((e: Error) => this.problem(`resync failed: ${e.message}`));
    this.timers.push(setInterval(resync, this.options.resyncMs ?? DEFAULT_RESYNC_MS));
    // After a lost connection: what we published meanwhile may be lost (publish it all again), and what the others did.
    this.pub.on('ready', () => {
      this.republish();
      this.raiseRecords();
      this.rewriteBans();
    });
    // Read at once (mirroring only: below), then in full once the others have had time to publish theirs again:
    // once the latest return has settled (a later return, or the other connection's, moves that on; one timer waits).
    let settled: ReturnType<typeof setTimeout> | null = null;
    const whenSettled = () => {
      if (this.closed) return;
      const leftMs = this.settleMs - (performance.now() - this.redis.reconnectedAt);
      if (leftMs <= 0) {
        settled = null;
        resync();
        return;
      }
      settled = setTimeout(whenSettled, leftMs + 1);
      settled.unref();
    };
    this.redis.sub.on('ready', () => {
      resync();
      if (settled === null) whenSettled();
    });
    this.options.log(`cluster: process ${this.proc} joined through ${redactedUrl(this.options.url)} (${this.peers.size} other processes)`);
  }

  /**
   * Stops this process's part in the cluster without a word, as a crash does to the others: no `bye`, its keys left
   * to expire, so they find it dead only when its heartbeat lapses (tests of a process that dies; `stop` says bye).
   */
  async halt(): Promise<void> {
    if (this.closed) return;
    this.redis.closed = true;
    for (const t of this.timers) clearInterval(t);
    await this.worker?.terminate();
    this.redis.destroy();
  }

  /** Leaves the cluster: the others drop this process's volunteers at once. */
  async stop(): Promise<void> {
    if (this.closed) return;
    this.redis.closed = true;
    for (const t of this.timers) clearInterval(t);
    await this.worker?.terminate();
    if (!this.pub.isOpen) return;
    try {
      // Said within STOP_TIMEOUT_MS or not at all (Redis may be the thing that is gone): the others then wait for the heartbeat.
      const bye = this.pub
        .multi()
        .publish(this.key('bus'), JSON.stringify({ t: 'bye', proc: this.proc }))
        .del([this.key('alive', this.proc), this.key('vols', this.proc), this.key('protocol', this.proc)])
        .sRem(this.key('procs'), String(this.proc))
        .exec();
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([bye, new Promise((r) => (timer = setTimeout(r, STOP_TIMEOUT_MS)))]).finally(() => clearTimeout(timer));
    } finally {
      this.redis.destroy();
    }
  }

  /**
   * Handles one message from Redis; a failure (a bug) drops that message and is logged. A listener that throws
   * leaves node-redis's subscribing connection broken for good, open but deaf to every later message of the bus
   * and the inbox (they share it), while the heartbeat thread keeps the process alive in the others' eyes: its
   * sessions' joins and reports never arrived, it struck the others' honest volunteers as no-shows, and they were
   * evicted and banned (a red-team find).
   */
  private guarded(what: string, handle: () => void): void {
    try {
      handle();
    } catch (e) {
      this.problem(`${what} failed and was dropped: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  private publish(channel: string, m: BusMessage | InboxMessage): void {
    this.redis.publish(channel, m);
  }

  private async heartbeat(): Promise<void> {
    if (this.closed) return;
    Atomics.store(this.beat, 0, Math.floor(Date.now() / 1000));
    const before = await this.pub.set(this.key('alive', this.proc), this.mark, {
      expiration: { type: 'PX', value: this.deadAfterMs },
      GET: true,
    });
    await this.pub.sAdd(this.key('procs'), String(this.proc));
    // The counter at or above every number this process knows to be live (its own, its peers'): a Redis that lost
    // the counter gives a newcomer none of theirs once any of them has beaten again. A counter's next is n + 1, so
    // it is raised to n - 1 for the number n (numbers are the counter's next, mod MAX_PROC, plus one).
    // The plan counter too, to the latest plan served here: a plan numbered again from 1 would be ignored as old.
    await this.raiseCounters(Math.max(this.proc, ...this.peers.keys()) - 1, this.lastPlan);
    // Another process took us for dead (our heartbeat lapsed, seen by it though perhaps not by us: a stall, a lost
    // connection) and removed our protocol and volunteers: said again, or it would leave us out for good.
    const said = await this.pub.get(this.key('protocol', this.proc));
    if (said === null) await this.pub.set(this.key('protocol', this.proc), this.said);
    // Our heartbeat had lapsed: the others may have dropped our volunteers; publish them all again.
    // Another's mark there (not a newcomer's tentative claim, which it gives up on seeing ours): two processes of
    // one number would take each other's sessions' messages: said loudly (a restart of either ends it).
    if (before !== null && before !== this.mark && !before.startsWith(CLAIM_PREFIX))
      this.problem(`another process holds this one's number ${this.proc} too (Redis lost its keys while it started): restart one of them`);
    if ((before !== this.mark || said === null) && this.published.size > 0) {
      this.options.log(`cluster: process ${this.proc}'s heartbeat lapsed; publishing its volunteers again`);
      this.republish();
    }
  }

  /** Finds processes that started (mirrors their volunteers) and processes that died (drops theirs). */
  private async lookAround(): Promise<void> {
    if (this.closed) return;
    // The processes we know of too: another survivor may have taken a dead one off the set already.
    const listed = (await this.pub.sMembers(this.key('procs'))).map(Number);
    const procs = [...new Set([...listed, ...this.peers.keys()])].filter((p) => Number.isInteger(p) && p >= 1 && p !== this.proc);
    if (procs.length === 0) return;
    const losses = this.redis.losses;
    const alive = await this.pub.mGet(procs.map((p) => this.key('alive', p)));
    // Read across a loss (answered by the Redis that came back, perhaps empty, maybe before its return was marked):
    // no judgement on it; the next heartbeat reads again.
    if (this.redis.down || this.redis.losses !== losses) return;
    // When the keys were read, and Redis's connected time by then: the loop below awaits (a read queued across an
    // outage takes as long), and a key read before a loss must not count as seen after the return.
    const read = { at: performance.now(), upMs: this.redis.connectedMs() };
    // Just after Redis came back the others' keys may be gone (expired during the outage, or lost with Redis's data):
    // each says its own again once its connections are back. Until then no process is taken for dead (before, each
    // dropped the others' volunteers and re-partitioned for stages short, with every volunteer still there).
    for (const [i, p] of procs.entries()) {
      const mark = alive[i] ?? null;
      if (mark === null) {
        if (this.heartbeatLapsed(p, read.upMs)) this.dead(p, 'its heartbeat stopped');
        continue;
      }
      this.seen.set(p, read);
      // Another process's mark under a number we knew: the one we knew died (while Redis was away, say) and a
      // newcomer took its number. The one we knew is dropped (its sessions here end), then the newcomer is met.
      if (!mark.startsWith(CLAIM_PREFIX)) {
        const known = this.marks.get(p);
        this.marks.set(p, mark);
        if (known !== undefined && known !== mark) {
          this.dead(p, 'a new process took its number', false);
          continue;
        }
      }
      if (this.compatible.has(p) || this.incompatible.has(p)) continue;
      const protocol = await this.pub.get(this.key('protocol', p));
      // Not said: a process taken for dead says it again at its next heartbeat (asked again next time), one of a
      // version before cluster protocols never does (left out, and said so once).
      if (protocol === null) {
        const rounds = (this.unsaid.get(p) ?? 0) + 1;
        this.unsaid.set(p, rounds);
        if (rounds === UNSAID_ROUNDS)
          this.warn(
            `cluster: process ${p} speaks cluster protocol 1 or none and this one ${this.protocol}: it is left out (its volunteers are not used here, nor this one's there); run one version of webswarm in a cluster`,
          );
        continue;
      }
      this.unsaid.delete(p);
      if (protocol !== this.said) {
        this.incompatible.add(p);
        this.peers.delete(p);
        const space = protocol.indexOf(' ');
        const theirs = space < 0 ? protocol : protocol.slice(0, space);
        // Warnings: the cluster is split, an operator's mistake that LOG_LEVEL=warn must not hide.
        this.warn(
          theirs === String(this.protocol)
            ? `cluster: process ${p} serves other settings (${protocol.slice(space + 1).slice(0, 400)}) than this one (${this.coordinator?.swarmSettings ?? ''}): it is left out (its volunteers, which hold other layers, are not used here, nor this one's there); every process behind one URL must serve the same model with the same STAGES, REDUNDANCY, WEIGHTS, GRAPH and CONTEXT`
            : `cluster: process ${p} speaks cluster protocol ${theirs.slice(0, 20)} and this one ${this.protocol}: it is left out (its volunteers are not used here, nor this one's there); run one version of webswarm in a cluster`,
        );
        continue;
      }
      this.compatible.add(p);
      this.peer(p);
      const vols = await this.pub.hGetAll(this.key('vols', p));
      for (const raw of Object.values(vols)) {
        const v = decode(raw, parseVolunteerState);
        if (v !== null) this.mirror(p, v);
      }
    }
  }

  private peer(p: number): Peer {
    let peer = this.peers.get(p);
    if (peer === undefined) {
      peer = { volunteers: new Set(), links: new Map() };
      this.peers.set(p, peer);
    }
    return peer;
  }

  /**
   * A process died or left: its volunteers go (their sessions here fail over), its links and sessions end. Its keys
   * are removed from Redis unless a new process holds its number already (`keys` false).
   */
  private dead(p: number, why: string, keys = true): void {
    const c = this.coordinator;
    const peer = this.peers.get(p);
    this.peers.delete(p);
    this.openThere.delete(p);
    this.linksThere.delete(p);
    this.elsewhereSince.delete(p);
    // Every last publication of its volunteers, those dropped for staying on another partition too.
    for (const [id, state] of this.states) if (state.p === p) this.states.delete(id);
    // Its number may come back with another process: asked again then.
    this.compatible.delete(p);
    this.incompatible.delete(p);
    this.unsaid.delete(p);
    if (keys) {
      this.marks.delete(p);
      this.seen.delete(p);
      void this.pub
        .multi()
        .sRem(this.key('procs'), String(p))
        .del([this.key('vols', p), this.key('protocol', p)])
        .exec()
        .catch(() => {});
    }
    if (c === null) return;
    // Its sessions on our volunteers end: it coordinated them.
    for (const [sessionId, ids] of this.remote.endAll(p)) for (const id of ids) c.localLink(id)?.send('session:close', { sessionId });
    if (peer === undefined) return;
    this.options.log(`cluster: process ${p} is gone (${why}): dropping its ${peer.volunteers.size} volunteers`);
    // None of them is a spare for another that goes before it.
    for (const id of peer.volunteers) this.going.add(id);
    for (const id of peer.volunteers) {
      this.going.delete(id);
      this.owner.delete(id);
      this.mirroredSessions.delete(id);
      this.fullUntil.delete(id);
      c.left(id, true);
    }
    for (const [pair, n] of peer.links) {
      const [a = '', b = ''] = pair.split('\n');
      for (let i = 0; i < n; i++) this.links.unlinkFromPeer(a, b);
    }
  }

  private mirror(p: number, v: VolunteerState): void {
    const c = this.coordinator;
    if (c === null || c.localMember(v.id) !== undefined) return;
    const was = this.owner.get(v.id);
    if (was !== undefined && was !== p) return;
    this.states.set(v.id, { p, v });
    // Its stage is of another partition than this process serves (a re-partition under way): mirrored as not ready
    // and holding no seat, for ELSEWHERE_LIMIT_MS at most.
    const here = v.partition === c.partitionKey;
    if (here) this.elsewhereSince.delete(p);
    else {
      const since = this.elsewhereSince.get(p) ?? Date.now();
      this.elsewhereSince.set(p, since);
      if (Date.now() - since > this.elsewhereLimitMs) {
        this.unmirror(p, v.id);
        return;
      }
    }
    this.owner.set(v.id, p);
    this.mirroredSessions.set(v.id, v.sessions);
    this.peer(p).volunteers.add(v.id);
    const link: VolunteerLink = {
      send: (event, ...args) => {
        const m = args[0];
        // A server replica's data-channel messages (the fallback): their bytes after a JSON header.
        if (event === 'frame' && isFrameIn(m)) {
          const data = m.data instanceof Uint8Array ? m.data : new Uint8Array(m.data);
          this.publish(this.key('proc', p), { t: 'frame', proc: this.proc, from: m.from, to: v.id, data });
          return;
        }
        const sessionId = event === 'session:open' || event === 'session:close' ? sessionTarget(m) : null;
        if (sessionId !== null && event === 'session:open') {
          if (!this.openedAtLoss.has(sessionId)) mark(this.openedAtLoss, sessionId, this.lossMark());
          this.toldOpen(p, sessionId, v.id, true);
        } else if (sessionId !== null) this.toldOpen(p, sessionId, v.id, false);
        this.publish(this.key('proc', p), { t: 'send', proc: this.proc, to: v.id, event, m } as InboxMessage);
      },
      disconnect: () => this.publish(this.key('proc', p), { t: 'disconnect', proc: this.proc, id: v.id }),
    };
    c.mirror(link, {
      ...v,
      counts: { agreed: v.agreed, disagreed: v.disagreed },
      ready: v.ready && here,
      // As its process published it, elsewhere too: one that leaves mid-switch is a departure like any (distrusted,
      // and planned for); the planner leaves out those on another partition itself.
      vouched: v.vouched,
      elsewhere: !here,
    });
  }

  /** Drops a mirrored volunteer that did not leave (on another partition too long): its last state is kept. */
  private unmirror(p: number, id: string): void {
    if (this.owner.get(id) !== p) return;
    this.owner.delete(id);
    this.mirroredSessions.delete(id);
    this.fullUntil.delete(id);
    this.peers.get(p)?.volunteers.delete(id);
    this.coordinator?.left(id, true);
  }

  /** Drops the volunteers that stayed on another partition than this process's past ELSEWHERE_LIMIT_MS. */
  private sweepElsewhere(): void {
    const now = Date.now();
    for (const [p, since] of this.elsewhereSince) {
      if (now - since <= this.elsewhereLimitMs) continue;
      const c = this.coordinator;
      for (const id of [...(this.peers.get(p)?.volunteers ?? [])]) if (c?.registry.get(id)?.elsewhere === true) this.unmirror(p, id);
    }
  }

  /** Serves a plan of the leader (or the record at start), unless a later one was served. */
  private adopt(plan: PartitionPlan): void {
    if (plan.n <= this.lastPlan) return;
    this.lastPlan = plan.n;
    this.coordinator?.adoptPlan(
      plan.ranges.map(([start, end]) => ({ start, end })),
      new Map(plan.stageOf),
    );
  }

  /** A mirrored volunteer of process `p` left it. */
  private forget(p: number, id: string): void {
    // Its sessions here are no business of its process now (their close never reaches it).
    for (const [sessionId, ids] of this.openThere.get(p) ?? [])
      if (ids.delete(id) && ids.size === 0) this.openThere.get(p)?.delete(sessionId);
    const told = this.linksThere.get(p);
    for (const pair of told?.keys() ?? []) if (pair.split('\n').includes(id)) told?.delete(pair);
    if (this.states.get(id)?.p === p) this.states.delete(id);
    if (this.owner.get(id) !== p) return;
    this.gone.set(id, Date.now());
    this.owner.delete(id);
    this.mirroredSessions.delete(id);
    this.fullUntil.delete(id);
    this.peers.get(p)?.volunteers.delete(id);
    this.coordinator?.left(id);
  }

  /**
   * Reads every known process's volunteers again: pub/sub delivers at most once, so a message lost while a
   * connection was down (a volunteer that came or went) is made good here, after a reconnection and every RESYNC_MS.
   * Volunteers missing from a process's list are forgotten only where no return of Redis is settling and none
   * came during the read (just after one, the lists may be empty until their processes publish them again).
   */
  private async resync(): Promise<void> {
    this.tellOpen();
    this.tellLinks();
    await this.tidyOwnList();
    // What the bus told while a connection was down is lost (pub/sub delivers at most once): the bans and the plan
    // are read again from where they are written first (before, a ban told in a cut never reached this process, and
    // a plan told in one split the cluster for good: red-team finds).
    await this.readBans();
    await this.readPlan(true);
    const losses = this.redis.losses;
    const now = Date.now();
    for (const [id, at] of this.gone) if (now - at > GONE_MEMORY_MS) this.gone.delete(id);
    for (const p of [...this.peers.keys()]) {
      if (!this.compatible.has(p)) continue;
      // Only those mirrored before the read can be stale: one that came meanwhile may be missing from it.
      const before = new Set(this.peers.get(p)?.volunteers ?? []);
      const vols = await this.pub.hGetAll(this.key('vols', p));
      if (this.closed) return;
      const present = new Set<string>();
      for (const raw of Object.values(vols)) {
        const v = decode(raw, parseVolunteerState);
        if (v === null) continue;
        present.add(v.id);
        // One that went meanwhile may still be in it: never brought back.
        if (!this.gone.has(v.id)) this.mirror(p, v);
      }
      // Just after Redis came back their list may be empty (lost with Redis's data) until they publish it again; a
      // read queued while Redis was away is answered by the one that came back (before, a full read begun before a
      // restart forgot every volunteer of the others from its empty lists: a test on a loaded machine).
      const settled = !this.settling && !this.redis.down && this.redis.losses === losses;
      if (settled) for (const id of before) if (!present.has(id)) this.forget(p, id);
    }
  }

  private onBus(raw: string): void {
    const m = decode(raw, parseBusMessage);
    const c = this.coordinator;
    if (m === null) {
      this.problem('dropped a malformed bus message');
      return;
    }
    if (m.proc === this.proc || c === null || this.incompatible.has(m.proc)) return;
    switch (m.t) {
      case 'vol':
        // A process not yet known to speak this protocol: its volunteers are read in full once it is (lookAround).
        if (this.compatible.has(m.proc)) this.mirror(m.proc, m.v);
        return;
      case 'gone':
        this.forget(m.proc, m.id);
        return;
      case 'ban':
        this.bans.banUntil(m.key, m.untilMs);
        if (this.bans.banned(m.key)) c.cutBanned(m.key);
        return;
      case 'bye':
        this.dead(m.proc, 'it closed');
        return;
      case 'plan':
        if (this.compatible.has(m.proc)) this.adopt(m);
        return;
      default:
        m satisfies never;
    }
  }

  private onInbox(raw: Buffer): void {
    const m = decodeInbox(raw);
    const c = this.coordinator;
    if (m === null) {
      this.problem('dropped a malformed inbox message');
      return;
    }
    if (c === null || this.closed || this.incompatible.has(m.proc)) return;
    switch (m.t) {
      case 'send':
        if (c.localLink(m.to) === undefined) this.notHere(m.to);
        else deliverToVolunteer(c, m, this.remote, this.options.log);
        return;
      case 'disconnect':
        c.localLink(m.id)?.disconnect();
        return;
      case 'link':
      case 'unlink': {
        if (c.localMember(m.a) === undefined && c.localMember(m.b) === undefined) return;
        const links = this.peer(m.proc).links;
        const pair = `${m.a}\n${m.b}`;
        const n = links.get(pair) ?? 0;
        if (m.t === 'link') {
          this.links.linkFromPeer(m.a, m.b);
          links.set(pair, n + 1);
        } else if (n > 0) {
          this.links.unlinkFromPeer(m.a, m.b);
          if (n > 1) links.set(pair, n - 1);
          else links.delete(pair);
        }
        return;
      }
      case 'links': {
        // What the sender's sessions hold now: a link or unlink of them lost in a cut is made good (before, a lost
        // unlink left the pair free to signal each other for as long as both stayed, a lost link kept a session's
        // replicas from connecting).
        const held = this.peer(m.proc).links;
        const told = new Map(m.pairs.map(([a, b, n]) => [`${a}\n${b}`, n]));
        let mended = 0;
        for (const pair of new Set([...held.keys(), ...told.keys()])) {
          const [a = '', b = ''] = pair.split('\n');
          const n = held.get(pair) ?? 0;
          const want = told.get(pair) ?? 0;
          if (want === n || (want > n && c.localMember(a) === undefined && c.localMember(b) === undefined)) continue;
          for (let i = n; i < want; i++) this.links.linkFromPeer(a, b);
          for (let i = want; i < n; i++) this.links.unlinkFromPeer(a, b);
          if (want > 0) held.set(pair, want);
          else held.delete(pair);
          mended++;
        }
        if (mended > 0)
          this.options.log(
            `cluster: process ${m.proc}'s links with this process's volunteers made good (${mended} pairs: a link or unlink was lost)`,
          );
        return;
      }
      case 'report':
        if (this.owner.get(m.from) === m.proc) reportToCoordinator(c, m, this.proc);
        return;
      case 'audit':
        // Ours, or ours that left in the middle of that process's session (it heard of the departure after its vote):
        // it counts into the record it left with (Audit.forget), as on one server.
        // Counted into its client's record in Redis there already (Roster.judge): its counts here are raised to that sum,
        // never counted again (a vote here may have raised them to a sum holding it already: a review's find). Not
        // counted there (Redis failed): counted here.
        if (c.localMember(m.id) !== undefined || c.audit.departedKeys(m.id) !== undefined) {
          if (m.sum === undefined) c.audit.credit(m.id, m.agreed);
          else c.audit.raise(m.id, m.sum, m.agreed);
        }
        return;
      case 'challenge':
        c.challengeAgain(m.id);
        return;
      case 'frame':
        frameFromPeer(c, m, this.proc, this.owner.get(m.from), this.options.log);
        return;
      case 'noshow':
        if (procOfSession(m.sessionId) !== m.proc) return;
        // Its join was forwarded there while this process's connection was down, or one was lost since: that process
        // may never have heard it (before, an honest volunteer was struck for each join lost so, and evicted and
        // banned at the third: a red-team find). A strike for a session it joined in time stands otherwise.
        if (this.acrossLoss(this.forwardedAtLoss.get(`${m.proc} ${m.sessionId} ${m.id}`)))
          this.options.log(
            `volunteer ${m.id}'s no-show in session ${m.sessionId} of process ${m.proc} is not counted: its join was forwarded across a lost connection to Redis`,
          );
        else c.showedElsewhere(m.id, m.sessionId, m.why);
        // Judged there: that session no longer waits for it (before, a departure named it, already struck, and the
        // session that did wait for it went unjudged: a red-team find).
        this.remote.answered(m.proc, m.sessionId, m.id);
        return;
      case 'progress':
        if (procOfSession(m.sessionId) === m.proc) this.remote.progressed(m.proc, m.sessionId, m.step);
        return;
      case 'open': {
        const open = new Map(m.sessions.map(([sessionId, ids]) => [sessionId, new Set(ids)]));
        const ended = this.remote.keepOnly(m.proc, open);
        for (const [sessionId, ids] of ended) for (const id of ids) c.localLink(id)?.send('session:close', { sessionId });
        if (ended.length > 0)
          this.options.log(
            `cluster: process ${m.proc} runs ${ended.length} sessions no more whose close was lost: ended on this process's volunteers`,
          );
        return;
      }
      default:
        m satisfies never;
    }
  }

  // ClusterSeam: what the coordinator asks of the cluster.

  forward(volunteer: string, report: SessionReport): boolean {
    const p = procOfSession(report.m.sessionId);
    // A session that process never opened on this volunteer is none of its business: the coordinator here
    // answers the made-up id (ERR_UNKNOWN_SESSION), and the process it names hears nothing (it has no budget for it).
    if (p === this.proc || !this.peers.has(p) || !this.remote.opensOn(p, report.m.sessionId, volunteer)) return false;
    // It showed up (a strike the coordinating process sends for this session still stands: NoShowWindow, unless the
    // join was forwarded across a lost connection: onInbox 'noshow').
    if (report.event === 'session:joined') {
      this.coordinator?.showedElsewhere(volunteer, report.m.sessionId, null);
      const key = `${p} ${report.m.sessionId} ${volunteer}`;
      if (!this.forwardedAtLoss.has(key)) mark(this.forwardedAtLoss, key, this.lossMark());
    }
    // Joined or refused: that process no longer waits for it (awaitedElsewhere). Not "my inputs had no majority": that
    // process takes it for evidence about the stage before, not a refusal, and still waits (a red-team find).
    if (report.event === 'session:joined' || (report.event === 'step:failed' && report.m.code !== 'ERR_NO_QUORUM'))
      this.remote.answered(p, report.m.sessionId, volunteer);
    if (report.event === 'step:logits') {
      const { logits, ...m } = report.m;
      this.publish(this.key('proc', p), {
        t: 'report',
        proc: this.proc,
        from: volunteer,
        event: report.event,
        m,
        bytes: floatBytes(logits),
      });
    } else this.publish(this.key('proc', p), { t: 'report', proc: this.proc, from: volunteer, event: report.event, m: { ...report.m } });
    return true;
  }

  forwardFrames(from: string, to: string, messages: readonly Uint8Array[]): Uint8Array[] {
    const here: Uint8Array[] = [];
    const there = new Map<number, Uint8Array[]>();
    for (const msg of messages) {
      const session = sessionOfMessage(msg);
      const p = session === null ? this.proc : procOfSession(session);
      // As for reports: only for a session that process opened on this volunteer; anything else is refused here.
      if (session === null || p === this.proc || !this.peers.has(p) || !this.remote.opensOn(p, session, from)) here.push(msg);
      else there.set(p, [...(there.get(p) ?? []), msg]);
    }
    for (const [p, batch] of there) {
      this.publish(this.key('proc', p), { t: 'frame', proc: this.proc, from, to, data: packFrameMessages(batch) });
    }
    return here;
  }

  owesReport(volunteer: string, kind: ReportKind, sessionId: number, step: number): boolean {
    const p = procOfSession(sessionId);
    // The mesh loop runs up to MESH_AHEAD steps past a session's last.
    const maxSteps = (this.coordinator?.maxPositions ?? 0) + MESH_AHEAD + 1;
    // Only a last stage's replica owes logits (as on one server: generation.ts owesReport).
    if (kind === 'logits' && this.coordinator?.onLastStage(volunteer) !== true) return false;
    return p !== this.proc && this.peers.has(p) && this.remote.admitFree(p, sessionId, volunteer, kind, step, maxSteps);
  }

  owesJoin(volunteer: string, sessionId: number): boolean {
    const p = procOfSession(sessionId);
    return p !== this.proc && this.peers.has(p) && this.remote.admitFreeJoin(p, sessionId, volunteer);
  }

  audited(volunteer: string, agreed: boolean, sum: AuditCounts | null): void {
    const p = this.owner.get(volunteer);
    if (p !== undefined)
      this.publish(this.key('proc', p), { t: 'audit', proc: this.proc, id: volunteer, agreed, ...(sum === null ? {} : { sum }) });
  }

  recorded(keys: readonly string[], agreed: boolean): Promise<AuditCounts | null> {
    // An increment, not the counts of one connection: a connection of the client on another server (open beside it,
    // or since) and a vote that lands after a connection left both count into it. Before, each connection wrote its
    // own counts over the last, so a liar's lie judged after it left, and a sibling tab's lies, were written over.
    return this.addToRecord(keys, agreed ? 1 : 0, agreed ? 0 : 1).catch((e: Error) => {
      this.problem(`a classification of a volunteer's client not written: ${e.message}`);
      return null;
    });
  }

  /** Adds to the record sum of `keys`' client (ADD_TO_RECORD); its counts after, or null where it has none. */
  private async addToRecord(keys: readonly string[] | undefined, agreed: number, disagreed: number): Promise<AuditCounts | null> {
    const k = this.clientKey('records', keys);
    const legacy = this.clientKey('record', keys);
    const touch = this.touchArguments(keys);
    if (k === null || legacy === null || touch === null || this.closed) return null;
    // One call: the record and the client's place among those kept (two, before).
    const reply = await this.pub.eval(ADD_TO_RECORD, {
      keys: [k, legacy, this.key('clients')],
      arguments: [String(agreed), String(disagreed), String(RECORD_TTL_S), ...touch],
    });
    if (!Array.isArray(reply) || (reply[0] === null && reply[1] === null)) return null;
    // A field not there is 0 (as HINCRBY takes it: a record raised after Redis lost it holds only what was not 0).
    const [a, d] = [Number(reply[0] ?? 0), Number(reply[1] ?? 0)];
    return Number.isSafeInteger(a) && Number.isSafeInteger(d) && a >= 0 && d >= 0 ? { agreed: a, disagreed: d } : null;
  }

  servesElsewhere(volunteer: string): boolean {
    return this.remote.involves(volunteer);
  }

  keepNoShows(keys: readonly string[], sessions: readonly SessionShown[]): void {
    const k = this.clientKey('noshows', keys);
    if (k === null || sessions.length === 0 || this.closed) return;
    // Ordered by when each was recorded, by this process's clock (a process's session ids all sort after those of the
    // processes before it, and a process that restarts gives them again).
    void this.pub
      .multi()
      .zAdd(
        k,
        sessions.map((x) => ({ score: x.at, value: `${x.sessionId}:${x.missed ? 1 : 0}:${x.at}` })),
      )
      .zRemRangeByRank(k, 0, -KEPT_SESSIONS - 1)
      .expire(k, RECORD_TTL_S)
      .exec()
      .catch((e: Error) => this.problem(`sessions missed by a volunteer's client not written: ${e.message}`));
    this.touchClient(keys);
  }

  /** The client of `keys` was written to Redis now: its place in the index that bounds them (KEPT_CLIENTS). */
  private touchClient(keys: readonly string[] | undefined): void {
    const touch = this.touchArguments(keys);
    if (touch === null || this.closed) return;
    this.pub
      .eval(TOUCH_CLIENT, { keys: [this.key('clients')], arguments: touch })
      .catch((e: Error) => this.problem(`a client's place among those kept not written: ${e.message}`));
  }

  /** TOUCH_CLIENT's arguments for the client of `keys` written now, or null where it has no client key. */
  private touchArguments(keys: readonly string[] | undefined): string[] | null {
    const key = keys === undefined ? undefined : clientKeyOf(keys);
    if (key === undefined) return null;
    return [
      key.slice(4),
      String(Date.now()),
      String(this.options.keptClients ?? KEPT_CLIENTS),
      ...(['records', 'record', 'noshows'] as const).map((kind) => `${this.key(kind)}:`),
    ];
  }

  awaitedElsewhere(volunteer: string): number | undefined {
    return this.remote.awaiting(volunteer);
  }

  moved(volunteer: string): void {
    this.remote.dropped(volunteer);
  }

  reachable(volunteer: string): boolean {
    // Another process's, while Redis is away: nothing reaches it from here. Not routed (before, a new session took
    // it, waited its join time for nothing, then fell back: an operator's find).
    return !(this.redis.down && this.owner.has(volunteer));
  }

  sessionsOf(volunteer: string, here: number): number {
    if (this.going.has(volunteer)) return Number.POSITIVE_INFINITY;
    const fullUntil = this.fullUntil.get(volunteer);
    if (fullUntil !== undefined && Date.now() < fullUntil) return MAX_SESSIONS_PER_REPLICA;
    this.fullUntil.delete(volunteer);
    const mirrored = this.mirroredSessions.get(volunteer);
    // Ours: those here and those other processes opened on it. Another's: its count may lag ours by a publication.
    return mirrored === undefined ? here + this.remote.of(volunteer) : Math.max(here, mirrored);
  }

  noShow(volunteer: string, sessionId: number, why: NoShow): void {
    const p = this.owner.get(volunteer);
    // Refused as full: so it is here too for a few publications of its count (routes pass it by meanwhile), and
    // after that its count as published, which a session that came and went between two publications left unchanged.
    if (why === 'full' && p !== undefined) this.fullUntil.set(volunteer, Date.now() + FULL_MARK_PUBLICATIONS * this.publishMs);
    if (p === undefined) return;
    // This process's connection to Redis was lost while the session ran: what the volunteer said may be what was lost
    // (its join, its reports, its refusal). Not sent: before, an honest volunteer was struck for each, and evicted and
    // banned at the third (a red-team find).
    if (this.acrossLoss(this.openedAtLoss.get(sessionId))) {
      this.options.log(
        `volunteer ${volunteer}'s no-show (${why}) in session ${sessionId} is not counted: this process's connection to Redis was lost while the session ran`,
      );
      return;
    }
    this.publish(this.key('proc', p), { t: 'noshow', proc: this.proc, id: volunteer, sessionId, why });
  }

  /** Session `sessionId` was opened (or closed) on `volunteer`, of process `p`, as told to it. */
  private toldOpen(p: number, sessionId: number, volunteer: string, open: boolean): void {
    let sessions = this.openThere.get(p);
    if (sessions === undefined) {
      if (!open) return;
      sessions = new Map();
      this.openThere.set(p, sessions);
    }
    const ids = sessions.get(sessionId) ?? new Set<string>();
    if (open) {
      ids.add(volunteer);
      sessions.set(sessionId, ids);
      // As many as the other process tracks of ours (it drops the oldest past them too).
      if (sessions.size > MAX_OPEN_LISTED) sessions.delete(sessions.keys().next().value as number);
    } else if (ids.delete(volunteer) && ids.size === 0) sessions.delete(sessionId);
  }

  /** Tells every other process which of this process's sessions are open on its volunteers (see `openThere`). */
  private tellOpen(): void {
    if (this.closed) return;
    for (const p of this.compatible) {
      const sessions = [...(this.openThere.get(p) ?? [])].map(([sessionId, ids]): OpenSession => [sessionId, [...ids]]);
      this.publish(this.key('proc', p), { t: 'open', proc: this.proc, sessions });
    }
  }

  private toldLink(p: number, pair: string, by: 1 | -1): void {
    let pairs = this.linksThere.get(p);
    if (pairs === undefined) {
      pairs = new Map();
      this.linksThere.set(p, pairs);
    }
    const n = (pairs.get(pair) ?? 0) + by;
    if (n > 0) pairs.set(pair, n);
    else pairs.delete(pair);
  }

  /** Tells every other process which links this process's sessions hold with its volunteers (see `linksThere`). */
  private tellLinks(): void {
    if (this.closed) return;
    for (const p of this.compatible) {
      const told = this.linksThere.get(p) ?? new Map<string, number>();
      if (told.size > MAX_LINKS_LISTED) {
        this.problem(`${told.size} links with process ${p}'s volunteers, over the ${MAX_LINKS_LISTED} a resync tells: not told`);
        continue;
      }
      const pairs = [...told].map(([pair, n]): LinkedPair => {
        const [a = '', b = ''] = pair.split('\n');
        return [a, b, n];
      });
      this.publish(this.key('proc', p), { t: 'links', proc: this.proc, pairs });
    }
  }

  /** What `acrossLoss` later compares with: the connection losses so far, or -1 while a connection is down. */
  private lossMark(): number {
    return this.redis.down ? -1 : this.redis.losses;
  }

  /** Whether a connection was lost since `marked` (lossMark then), or is down now. */
  private acrossLoss(marked: number | undefined): boolean {
    return marked !== undefined && (marked < 0 || this.redis.down || this.redis.losses !== marked);
  }

  stepBegan(sessionId: number, step: number, members: Iterable<string>): void {
    if (step % PROGRESS_EVERY !== 0) return;
    const procs = new Set<number>();
    for (const id of members) {
      const p = this.owner.get(id);
      if (p !== undefined && p !== this.proc) procs.add(p);
    }
    for (const p of procs) this.publish(this.key('proc', p), { t: 'progress', proc: this.proc, sessionId, step });
  }

  challenge(volunteer: string): void {
    const p = this.owner.get(volunteer);
    if (p !== undefined) this.publish(this.key('proc', p), { t: 'challenge', proc: this.proc, id: volunteer });
  }

  leads(): boolean {
    return [...this.compatible].every((p) => p > this.proc);
  }

  publishPlan(ranges: readonly LayerRange[], stageOf: ReadonlyMap<string, number>): void {
    if (this.closed) return;
    const pairs = ranges.map((r) => [r.start, r.end] as const);
    void (async () => {
      // Past every plan served here as well: a counter lost with Redis's data would number it again from 1, and the
      // others would ignore it as old (their heartbeats raise the counter too, but a plan may come first).
      const n = Number(await this.pub.eval(NEXT_PLAN, { keys: [this.key('partition-seq')], arguments: [String(this.lastPlan)] }));
      if (!Number.isSafeInteger(n)) throw new Error(`the plan counter gave ${n}`);
      this.lastPlan = Math.max(this.lastPlan, n);
      // The record a process that starts later adopts (without the placements: they are this moment's), and one that
      // lost the bus's plan in a cut (with them: a follower that read the record first adopted the plan without them,
      // and ignored the bus's of the same number, placing its volunteers against the leader's plan: a review's find).
      const placed = [...stageOf];
      await this.pub.set(this.partitionRecordKey, JSON.stringify({ n, ranges: pairs, stageOf: placed }));
      this.publish(this.key('bus'), { t: 'plan', proc: this.proc, n, ranges: pairs, stageOf: placed });
    })().catch((e: Error) => this.problem(`re-partition plan not published: ${e.message}`));
  }

  partitionChanged(): void {
    // Every process has its window again against the partition served here now.
    this.elsewhereSince.clear();
    for (const { p, v } of [...this.states.values()]) this.mirror(p, v);
  }

  /**
   * What is kept in Redis under a client key (its address is shared by many): its `records` (a hash of its counts,
   * the sum of its connections' classifications), or the sessions its connections that left missed and joined
   * (`noshows`, a sorted set of `id:missed:at`). `record` is where a version before the sum wrote each connection's own
   * counts over the last: where the client has no sum yet, its sum starts from it (ADD_TO_RECORD); never written here
   * (such a process, beside this one in a rolling upgrade, would lower the sum).
   */
  private clientKey(kind: 'records' | 'record' | 'noshows', keys: readonly string[] | undefined): string | null {
    const key = keys === undefined ? undefined : clientKeyOf(keys);
    return key === undefined ? null : this.key(kind, key.slice(4));
  }

  /**
   * A volunteer that comes back (to this process or after another died) finds its record again, and the sessions
   * its client's connections that left missed: before, each connection of a cluster started with none, so a client
   * closed a connection two strikes short of eviction and opened another, as often as it liked.
   */
  private restore(id: string): void {
    const keys = this.coordinator?.localMember(id)?.keys;
    const nk = this.clientKey('noshows', keys);
    if (nk !== null)
      this.pub
        .zRange(nk, -KEPT_SESSIONS, -1)
        .then((members) => {
          const missed = parseKeptSessions(members);
          if (missed.length < members.length) this.problem(`${members.length - missed.length} malformed entries under ${nk}: ignored`);
          const count = missed.length === 0 ? undefined : this.coordinator?.resumeNoShows(id, missed);
          if (count !== undefined)
            this.options.log(
              `cluster: volunteer ${id} takes up its client's last sessions (${count} of its last ${NO_SHOW_WINDOW} missed)`,
            );
        })
        .catch((e: Error) => this.problem(`sessions missed by the client of ${id} not read: ${e.message}`));
    this.addToRecord(keys, 0, 0)
      .then((counts) => {
        const c = this.coordinator;
        if (c === null || counts === null) return;
        const now = c.audit.get(id);
        if (c.localMember(id) === undefined || now.agreed + now.disagreed > 0) return;
        c.audit.set(id, counts);
        this.options.log(`cluster: volunteer ${id} resumes its record (${counts.agreed} agreed, ${counts.disagreed} disagreed)`);
      })
      .catch((e: Error) => this.problem(`the record of the client of ${id} not read: ${e.message}`));
  }

  /**
   * After a lost connection Redis may have lost its data (a restart): each of our volunteers' client records is raised
   * to at least what the volunteer holds here (its client's sum as it last stood), or the next increments would count
   * from nothing (before, each connection wrote its own counts whole; a review of the sum found a liar's record lost).
   */
  private raiseRecords(): void {
    const c = this.coordinator;
    if (c === null || this.closed) return;
    for (const v of c.registry.all()) {
      const k = this.clientKey('records', c.localMember(v.id)?.keys);
      const { agreed, disagreed } = c.audit.get(v.id);
      if (k === null || agreed + disagreed === 0) continue;
      this.pub
        .eval(RAISE_RECORD, { keys: [k], arguments: [String(agreed), String(disagreed), String(RECORD_TTL_S)] })
        .catch((e: Error) => this.problem(`the record of the client of ${v.id} not raised: ${e.message}`));
    }
  }

  /**
   * Reads the bans in Redis (scored by when each ends): every one in force the first time, then those made since a
   * little before the last read (BAN_READ_OVERLAP_MS: the processes' clocks may differ). A ban new here cuts off this
   * process's volunteers that hold its key. Returns how many were read.
   */
  private async readBans(): Promise<number> {
    const now = Date.now();
    if (this.closed || this.redis.down) return 0;
    const from = this.bansReadAt === null ? now : Math.max(now, this.bansReadAt + BAN_MS - BAN_READ_OVERLAP_MS);
    const read = await this.pub.zRangeWithScores(this.key('bans-until'), '+inf', from, {
      BY: 'SCORE',
      REV: true,
      LIMIT: { offset: 0, count: MAX_LOADED_BANS },
    });
    if (this.closed) return 0;
    this.bansReadAt = now;
    for (const { value, score } of read) {
      const known = this.bans.banned(value);
      this.bans.banUntil(value, score);
      if (!known && this.bans.banned(value)) this.coordinator?.cutBanned(value);
    }
    return read.length;
  }

  /**
   * After a lost connection: the bans in force known here are written to Redis again where it holds fewer than this
   * process knows (a Redis that came back empty lost them, and a process started after it took every liar's key for
   * clean). Each keeps the later end where Redis has it too.
   */
  private rewriteBans(): void {
    const key = this.key('bans-until');
    const held = this.bans.inForce().slice(0, MAX_LOADED_BANS);
    if (held.length === 0 || this.closed) return;
    void (async () => {
      // Those in force only: a snapshot restored from long ago holds ended ones no ban since has swept.
      if ((await this.pub.zCount(key, Date.now(), '+inf')) >= held.length) return;
      for (let i = 0; i < held.length; i += BAN_WRITE_BATCH)
        await this.pub.zAdd(
          key,
          held.slice(i, i + BAN_WRITE_BATCH).map(([value, score]) => ({ value, score })),
          { comparison: 'GT' },
        );
    })().catch((e: Error) => this.problem(`the bans not written again: ${e.message}`));
  }

  /**
   * Serves the partition record in Redis where it is a later plan than the one served here, with its placements
   * (`placed`; at start they are another moment's, and left out).
   */
  private async readPlan(placed: boolean): Promise<void> {
    if (this.closed) return;
    const record = await this.pub.get(this.partitionRecordKey);
    const plan = record === null ? null : decode(record, parsePartitionPlan);
    if (plan !== null) this.adopt(placed ? plan : { ...plan, stageOf: [] });
    else if (record !== null) this.problem('the partition record in Redis is malformed: ignored');
  }

  /** Takes `id` out of our list in Redis and tells the others it is gone. */
  private unlist(id: string): void {
    void this.pub.hDel(this.key('vols', this.proc), id).catch(() => {});
    this.publish(this.key('bus'), { t: 'gone', proc: this.proc, id });
  }

  /**
   * Another process sent to `id`, a volunteer not connected here: its `gone` was lost (a cut, or Redis away, as it was
   * published), and that process still lists it, routes to it and waits for its join until its settling is over
   * (before, for that long; a volunteer that left there a moment ago, not yet said gone, is said at the next
   * publication). Said again, once a second at most for one volunteer.
   */
  private notHere(id: string): void {
    if (this.published.has(id)) return;
    const now = performance.now();
    const at = this.retoldGone.get(id);
    if (at !== undefined && now - at < 1000) return;
    if (this.retoldGone.size >= MAX_RETOLD_GONE) this.retoldGone.clear();
    this.retoldGone.set(id, now);
    this.unlist(id);
  }

  /** Every volunteer of ours published again at the next publication, those that left meanwhile said gone. */
  private republish(): void {
    for (const id of this.published.keys()) this.published.set(id, REPUBLISH);
  }

  /**
   * Makes our list in Redis what we published: an entry of a volunteer not ours (any more) is taken out and said
   * gone (a Redis restored from a snapshot taken before it left, say, which the others would mirror for good), and
   * one of ours missing from it (lost with Redis's data) is published again. An entry written after the read is
   * in `published` before its write is sent, so it is never taken for stale.
   */
  private async tidyOwnList(): Promise<void> {
    if (this.closed || this.redis.down) return;
    const listed = new Set(await this.pub.hKeys(this.key('vols', this.proc)));
    if (this.closed) return;
    for (const id of listed) {
      if (this.published.has(id)) continue;
      this.unlist(id);
    }
    for (const [id, json] of this.published) if (json !== REPUBLISH && !listed.has(id)) this.published.set(id, REPUBLISH);
  }

  /** Publishes what changed about our volunteers since the last time. */
  private publishVolunteers(): void {
    const c = this.coordinator;
    if (c === null || this.closed) return;
    const seen = new Set<string>();
    const here = c.sessionsHere();
    const partition = c.partitionKey;
    for (const v of c.registry.all()) {
      const member = c.localMember(v.id);
      if (member === undefined) continue;
      seen.add(v.id);
      if (!this.restored.has(v.id)) {
        this.restored.add(v.id);
        this.restore(v.id);
      }
      const counts = c.audit.get(v.id);
      const state: VolunteerState = {
        id: v.id,
        keys: member.keys,
        backend: v.backend,
        adapter: v.adapter,
        stage: v.stage,
        ready: v.ready,
        stepMs: v.stepMs,
        proven: member.proven,
        joinedAt: v.joinedAt,
        agreed: counts.agreed,
        disagreed: counts.disagreed,
        sessions: this.sessionsOf(v.id, here.get(v.id) ?? 0),
        ...(v.sessionLimit === undefined ? {} : { sessionLimit: v.sessionLimit }),
        ...(v.memoryBytes === undefined ? {} : { memoryBytes: v.memoryBytes }),
        ...(v.bufferLimitBytes === undefined ? {} : { bufferLimitBytes: v.bufferLimitBytes }),
        ...(v.stale === true ? { stale: true } : {}),
        partition,
        vouched: member.vouched,
      };
      const json = JSON.stringify(state);
      if (this.published.get(v.id) === json) continue;
      this.published.set(v.id, json);
      void this.pub.hSet(this.key('vols', this.proc), v.id, json).catch(() => {});
      this.publish(this.key('bus'), { t: 'vol', proc: this.proc, v: state });
    }
    for (const id of this.published.keys()) {
      if (seen.has(id)) continue;
      this.published.delete(id);
      this.restored.delete(id);
      this.remote.forget(id);
      this.unlist(id);
    }
  }
}

/** The sessions kept under a client key (`id:missed:at`, oldest first): whether each was missed; malformed ones left out. */
export function parseKeptSessions(members: readonly string[]): boolean[] {
  const out: boolean[] = [];
  for (const m of members) {
    const match = /^\d{1,15}:([01]):\d{1,15}$/.exec(m);
    if (match !== null) out.push(match[1] === '1');
  }
  return out;
}
