/**
 * The fallback: the server's own replicas, one per stage, which the
 * coordinator puts in a route where a stage is short of volunteers. They run
 * the code a volunteer's tab runs (ReplicaCore) on the server's runner of the
 * same stage files, and reach the volunteers of the neighbouring stages over
 * their sockets (`frame` events) instead of data channels. A stage the server
 * computes is the server's alone, and every token says so.
 */
import type { StageManifest } from '../../shared/model/manifest.js';
import { CachingExecutor, DEFAULT_MAX_BATCH, type Feeds, type Fetches, type StageExecutor } from '../../shared/model/pipeline.js';
import { StepBatcher } from '../../shared/model/step-batcher.js';
import {
  isServerPeer,
  type ServerToClientEvents,
  type StepDigest,
  type StepFailure,
  type StepLogits,
  serverPeerId,
} from '../../shared/protocol/messages.js';
import { ReplicaCore } from '../../shared/swarm/replica-core.js';
import { sharedFloat32Array } from '../reference/thread-executor.js';
import type { VolunteerLink } from './coordinator.js';

/** off: never; stage: the server computes the stages short of volunteers; whole: it computes every stage of such a request. */
export const FALLBACK_MODES = ['off', 'stage', 'whole'] as const;
export type FallbackMode = (typeof FALLBACK_MODES)[number];

export function isFallbackMode(v: string): v is FallbackMode {
  return (FALLBACK_MODES as readonly string[]).includes(v);
}

/** How far ahead of its next step the server's replica keeps a frame (volunteers keep MAX_STEPS_AHEAD, for slow peers). */
export const SERVER_STEPS_AHEAD = 2;

/** Sessions the server computes stages of at once, by default. */
export const DEFAULT_FALLBACK_MAX_SESSIONS = 4;

export interface FallbackOptions {
  readonly mode: Exclude<FallbackMode, 'off'>;
  /** Sessions the server computes stages of at once; a request that would need one more waits in turn (freeSeats). */
  readonly maxSessions: number;
  /** The server's runner of the served stage files (made on first use; released, where it can be, once its partition is replaced and idle). */
  readonly executor: () => Promise<ReleasableExecutor>;
  /** The most sessions' decode steps of a stage run as one call (DEFAULT_MAX_BATCH when absent); 1 = off. */
  readonly maxBatch?: number;
}

/** What the server replicas send, delivered by the coordinator as a volunteer's messages would be. */
export interface ServerReplicaOutputs {
  /** One frame's messages (a replay's frames come one call each, in order). */
  frame(from: string, to: string, messages: readonly Uint8Array[]): void;
  joined(from: string, sessionId: number): void;
  digest(from: string, m: StepDigest): void;
  logits(from: string, m: StepLogits): void;
  failed(from: string, m: StepFailure): void;
  /** A refusal by the server replica `from`; `sender`: the peer whose message it refused, where the refusal came while it was delivered. */
  rejected(from: string, reason: string, sender: string | null): void;
}

/** A runner that may hold resources to give back (onnxruntime sessions: ThreadExecutor.release). */
export interface ReleasableExecutor extends StageExecutor {
  release?(): Promise<void>;
  /** True once it can run nothing more (its thread stopped): the next run makes another. */
  readonly broken?: boolean;
}

/**
 * One run at a time on the server's runner, made on first use: a runtime
 * session is not re-entrant, and the fallback's compute is bounded by the
 * sessions admitted, not by how many steps arrive at once.
 */
export class SerialExecutor implements StageExecutor {
  /** The KV slabs fed to the runner are made in shared memory: the runner thread reads them where they are. */
  readonly hostArray = sharedFloat32Array;
  private queue: Promise<unknown> = Promise.resolve();
  private inner: Promise<ReleasableExecutor> | null = null;
  private closed = false;

  constructor(private readonly make: () => Promise<ReleasableExecutor>) {}

  run(stage: number, feeds: Feeds, fetches?: Fetches): Promise<Feeds> {
    if (this.closed) return Promise.reject(new Error('the runner of a replaced partition was released'));
    const run = this.queue.then(async () => (await this.current()).run(stage, feeds, fetches));
    this.queue = run.catch(() => {});
    return run;
  }

  /** Releases the runner after the runs queued end; true when there was one to release (it is made on first use). */
  async close(): Promise<boolean> {
    this.closed = true;
    await this.queue;
    const executor = await this.inner?.catch(() => null);
    await executor?.release?.();
    return executor !== undefined && executor !== null;
  }

  /** The runner, made on first use, and made again where the one made stopped (its thread crashed: the runs it held failed). */
  private async current(): Promise<ReleasableExecutor> {
    const made = await this.inner;
    if (made !== undefined && made !== null && made.broken !== true) return made;
    this.inner = this.make();
    return this.inner;
  }
}

/** The stage a server replica's id names, or null for any other id. */
export function serverStageOf(id: string, stages: number): number | null {
  if (!isServerPeer(id)) return null;
  const stage = Number(id.slice(id.indexOf(':') + 1));
  return Number.isInteger(stage) && stage >= 0 && stage < stages && serverPeerId(stage) === id ? stage : null;
}

export class ServerReplicas {
  /** The peer whose frame is being delivered now (null between deliveries): named in the refusals it causes. */
  private delivering: string | null = null;
  private readonly cores = new Map<number, ReplicaCore>();
  private readonly admitted = new Set<number>();
  /** The client each admitted session is for, where it said. */
  private readonly owners = new Map<number, string>();
  /** Sessions waiting for a seat, in the order they began to (each leaves on admission, or when its request ends). */
  private readonly waiters: { readonly sessionId: number; readonly client: string | undefined }[] = [];
  private readonly executor: SerialExecutor;
  /** The replicas of the partition served before this one, while sessions they admitted still run. */
  private previous: ServerReplicas | null = null;
  private retired = false;
  /** Set once retired and idle: resolves when its runner is released (true) or was never made (false). */
  runnerReleased: Promise<boolean> | null = null;
  /** One queue for every stage's steps, so that a batch of sessions moves from stage to stage whole; null when batching is off. */
  private readonly batcher: StepBatcher | null;

  constructor(
    private readonly manifest: StageManifest,
    readonly options: FallbackOptions,
    private readonly out: ServerReplicaOutputs,
  ) {
    this.executor = new SerialExecutor(options.executor);
    const maxBatch = options.maxBatch ?? DEFAULT_MAX_BATCH;
    this.batcher = maxBatch > 1 ? new StepBatcher(manifest, this.executor, maxBatch, 1, () => this.admitted.size) : null;
  }

  /** Steps the server replicas ran, and how many shared a call with another session's. */
  get batching(): StepBatcher['stats'] | null {
    return this.batcher?.stats ?? null;
  }

  get mode(): FallbackOptions['mode'] {
    return this.options.mode;
  }

  /** Sessions using the server replicas now. */
  get busy(): number {
    return this.admitted.size;
  }

  /**
   * A seat for `sessionId` (it may have one already), or false: maxSessions
   * sessions hold one, or `client`'s hold half of them (rounded up), so that
   * one requester cannot take every seat of the server's compute. Seats go in
   * turn (freeSeats): a free seat is the waiting session's (wait()) whose
   * client holds the fewest, the first of those to wait; `running` (a running
   * session's stage lost to the fallback mid-generation, its work so far at
   * stake) goes before them.
   */
  admit(sessionId: number, client?: string, running = false): boolean {
    if (this.admitted.has(sessionId)) return true;
    if (this.retired) return false;
    if (client !== undefined && this.heldBy(client) >= this.perClient) return false;
    if (!running && this.freeSeats(sessionId, client) <= 0) return false;
    if (running && this.admitted.size >= this.options.maxSessions) return false;
    this.admitted.add(sessionId);
    if (client !== undefined) this.owners.set(sessionId, client);
    this.unwait(sessionId);
    return true;
  }

  /**
   * Seats free for `sessionId` of `client`: those no session holds, less those
   * kept for the waiting sessions before it that could take one (their client
   * below its share). Before it: a session whose client holds fewer seats, or
   * as many and began to wait earlier (a session not waiting comes after those
   * of its rank). So a client that holds seats cannot pass them on to itself
   * while one that holds none waits: a freed seat goes to the least served
   * (a red-team pass: two keys resubmitting kept all four seats for as long as
   * they liked, everyone else refused every time).
   */
  freeSeats(sessionId: number, client?: string): number {
    const held = (c: string | undefined) => (c === undefined ? 0 : this.heldBy(c));
    const mine = held(client);
    const at = this.waiters.findIndex((w) => w.sessionId === sessionId);
    let kept = 0;
    for (const [i, w] of this.waiters.entries()) {
      if (w.sessionId === sessionId) continue;
      const theirs = held(w.client);
      if (theirs >= this.perClient) continue;
      if (theirs < mine || (theirs === mine && (at < 0 || i < at))) kept += 1;
    }
    return this.options.maxSessions - this.admitted.size - kept;
  }

  /** `sessionId` waits for a seat, after those waiting already (a second call keeps its place). */
  wait(sessionId: number, client?: string): void {
    if (!this.admitted.has(sessionId) && !this.waiters.some((w) => w.sessionId === sessionId)) this.waiters.push({ sessionId, client });
  }

  /** Whether another session of `client` waits for a seat before `sessionId` (false for a client not said). */
  waitingBefore(sessionId: number, client?: string): boolean {
    if (client === undefined) return false;
    for (const w of this.waiters) {
      if (w.sessionId === sessionId) return false;
      if (w.client === client) return true;
    }
    return false;
  }

  /** `sessionId` waits no more (admitted, answered, cancelled or timed out). */
  unwait(sessionId: number): void {
    const at = this.waiters.findIndex((w) => w.sessionId === sessionId);
    if (at >= 0) this.waiters.splice(at, 1);
  }

  /** Sessions waiting for a seat. */
  get waiting(): number {
    return this.waiters.length;
  }

  /** The most seats one client's sessions hold at once. */
  get perClient(): number {
    return Math.ceil(this.options.maxSessions / 2);
  }

  /** Seats `client`'s sessions hold now. */
  heldBy(client: string): number {
    let n = 0;
    for (const owner of this.owners.values()) if (owner === client) n += 1;
    return n;
  }

  release(sessionId: number): void {
    this.admitted.delete(sessionId);
    this.owners.delete(sessionId);
    this.releaseIfIdle();
    // The coordinator releases every session here: those the replaced partition's replicas admitted too.
    this.previous?.release(sessionId);
    if (this.previous?.runnerReleased !== null) this.previous = null;
  }

  /**
   * Takes over from the replicas of the partition served before (a
   * re-partition): those admit no more sessions, the ones they admitted run
   * on (replayed as the coordinator does), and their runner, with its
   * onnxruntime sessions, is released once the last of them is released here.
   */
  succeeding(previous: ServerReplicas | null): this {
    if (previous === null || previous === this) return this;
    previous.retired = true;
    previous.releaseIfIdle();
    // Sessions waiting for a seat keep their turn on the new partition's replicas.
    for (const w of previous.waiters.splice(0)) this.wait(w.sessionId, w.client);
    // Released at once (idle): the replicas it was still handing over from come here instead, or nothing would
    // ever release them (the coordinator releases sessions through the newest replicas only).
    let handing: ServerReplicas | null = previous;
    if (previous.runnerReleased !== null) {
      handing = previous.previous;
      previous.previous = null;
    }
    this.previous = handing !== null && handing.runnerReleased === null ? handing : null;
    return this;
  }

  /** The server is going away: its runner, and the one it was still handing over from, are released. */
  async close(): Promise<void> {
    this.retired = true;
    await Promise.all([this.executor.close(), this.previous?.close()]);
  }

  /** The runner its stages run on (made on first use). */
  get runner(): SerialExecutor {
    return this.executor;
  }

  private releaseIfIdle(): void {
    if (this.retired && this.admitted.size === 0 && this.runnerReleased === null) this.runnerReleased = this.executor.close();
  }

  private core(stage: number): ReplicaCore {
    let core = this.cores.get(stage);
    if (core === undefined) {
      const id = serverPeerId(stage);
      const out = this.out;
      core = new ReplicaCore(
        this.manifest,
        stage,
        // Its own caches per stage: closing a session at one stage must not drop another stage's.
        new CachingExecutor(this.manifest, this.executor, this.batcher === null ? { maxBatch: 1 } : { batcher: this.batcher }),
        {
          frames: (to, messages) => out.frame(id, to, messages),
          digest: (m) => out.digest(id, m),
          logits: (m) => out.logits(id, m),
          failed: (m) => out.failed(id, m),
          computed: () => {},
          rejected: (reason) => out.rejected(id, reason, this.delivering),
        },
        null,
        () => 0,
        // Its inputs come from volunteers, in step with the coordinator: a frame far ahead is a stranger's memory, not theirs.
        SERVER_STEPS_AHEAD,
      );
      this.cores.set(stage, core);
    }
    return core;
  }

  /** How the coordinator's sessions reach the server replica `id`, as they reach a volunteer; undefined for another id. */
  link(id: string): VolunteerLink | undefined {
    const stage = serverStageOf(id, this.manifest.stages.length);
    if (stage === null) return undefined;
    const handlers: { [E in keyof ServerToClientEvents]?: (...args: Parameters<ServerToClientEvents[E]>) => void } = {
      'session:open': (m) => {
        if (this.core(stage).open(m)) this.out.joined(id, m.sessionId);
      },
      'session:update': (m) => this.core(stage).update(m),
      'step:input': (m) => this.core(stage).input(m),
      'session:close': ({ sessionId }) => this.core(stage).close(sessionId),
    };
    return {
      send: (event, ...args) => {
        const h = handlers[event] as ((...a: typeof args) => void) | undefined;
        // Copied, as a socket would: a later change to the route must not reach an earlier message.
        if (h !== undefined) h(...(structuredClone(args) as typeof args));
      },
      disconnect: () => {},
    };
  }

  /** One data-channel message for the server replica `to`; false when `to` is none. */
  frame(from: string, to: string, bytes: Uint8Array): boolean {
    const stage = serverStageOf(to, this.manifest.stages.length);
    if (stage === null) return false;
    // A refusal while it is delivered names its sender (the log's key: one flooder's lines are not another's).
    this.delivering = from;
    try {
      this.core(stage).frame(from, bytes);
    } finally {
      this.delivering = null;
    }
    return true;
  }
}
