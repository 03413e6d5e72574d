/// <reference lib="webworker" />
// The replica's per-token data path inside the compute worker (?datapath=worker):
// frames come in on the data channels the main thread transferred here, the
// ReplicaCore votes on them and computes on this thread's own executor (no
// postMessage per step), and the output leaves on the same channels. Only what
// goes to the socket (digests, logits, failures) and status cross to the main
// thread, off the critical path.
import type { StageManifest } from '../../shared/model/manifest.js';
import type { SessionExecutor } from '../../shared/model/pipeline.js';
import { notBinary, rejectionCode } from '../../shared/protocol/frames.js';
import { DelayLine } from '../../shared/swarm/delay-line.js';
import { DutyCycle } from '../../shared/swarm/duty-cycle.js';
import { faultBehaviour } from '../../shared/swarm/faults.js';
import { MAX_STEPS_AHEAD, ReplicaCore } from '../../shared/swarm/replica-core.js';
import { StepTrace } from '../volunteer/step-trace.js';
import type { ReplicaEvent, ToReplica } from './datapath-messages.js';

/** Frames held for a channel still opening (beyond, they are dropped and reported). */
const MAX_QUEUED = 4096;

/** A frames channel the worker holds: `queue` holds what was sent before it opened (null once open). */
interface Link {
  readonly dc: RTCDataChannel;
  readonly link: number;
  queue: Uint8Array[] | null;
}

/**
 * How long refused frames are counted here before the count goes to the main
 * thread: one event per reason code per interval, not one per frame (a flood of
 * 10 000 junk messages would otherwise be 10 000 posts and status updates on
 * the page's thread).
 */
const REJECTED_FLUSH_MS = 100;

/** How long after a step its trace stamps are handed to the main thread (batched, off the critical path). */
const TRACE_FLUSH_MS = 200;

export class WorkerReplica {
  private readonly channels = new Map<string, Link>();
  private core: ReplicaCore | null = null;
  private readonly net = new DelayLine();
  private trace: StepTrace | null = null;
  private traced = 0;
  private lastComputeMs = 0;
  /** Refusals not yet reported, by code: the latest reason and how many. */
  private readonly refused = new Map<string, { reason: string; count: number }>();
  private refusedTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly post: (e: ReplicaEvent, transfer?: Transferable[]) => void,
    /** The worker's session executor and manifest, once a stage is loaded. */
    private readonly loaded: () => { readonly manifest: StageManifest; readonly sessions: SessionExecutor } | null,
  ) {}

  handle(m: ToReplica): void {
    switch (m.type) {
      case 'replica:start':
        this.start(m);
        return;
      case 'replica:channel':
        this.adopt(m.peer, m.link, m.channel);
        return;
      case 'replica:unlink':
        this.unlink(m.peer);
        return;
      case 'replica:frame':
        this.core?.frame(m.peer, m.bytes);
        return;
      case 'replica:send': {
        // Handed over by the main thread: sent (or held) here or dropped, never handed back again (no ping-pong).
        const l = this.channels.get(m.peer);
        if (l === undefined || !this.sendOn(l, m.messages))
          this.reject(`ERR_NOT_LINKED no open channel to ${m.peer} for ${m.messages.length} frames`);
        return;
      }
      case 'replica:open':
        this.core?.open(m.open);
        return;
      case 'replica:update':
        this.core?.update(m.update);
        return;
      case 'replica:close':
        this.core?.close(m.sessionId);
        return;
      case 'replica:unreached':
        this.core?.unreached(m.sessionId, m.peers);
        return;
      case 'replica:input':
        this.core?.input(m.input);
        return;
      case 'replica:challenge': {
        const core = this.core;
        if (core === null) {
          this.post({ kind: 'proof', id: m.id, digest: null, error: 'no stage is loaded' });
          return;
        }
        core.challenge(m.challenge).then(
          (digest) => this.post({ kind: 'proof', id: m.id, digest, error: null }),
          (e: unknown) => this.post({ kind: 'proof', id: m.id, digest: null, error: e instanceof Error ? e.message : String(e) }),
        );
        return;
      }
      case 'replica:net':
        this.net.setDelay(m.delayMs);
        return;
      default: {
        const never: never = m;
        this.reject(`ERR_BAD_MESSAGE unknown replica message ${JSON.stringify(never)}`);
      }
    }
  }

  /** What inbound frames hold in this worker now (ReplicaCore.held); null before a replica starts. */
  held(): ReturnType<ReplicaCore['held']> | null {
    return this.core?.held() ?? null;
  }

  private start(m: Extract<ToReplica, { type: 'replica:start' }>): void {
    const l = this.loaded();
    if (l === null) {
      this.post({ kind: 'failed', m: { sessionId: 0, step: 0, code: 'ERR_NOT_ASSIGNED', message: 'no stage is loaded in the worker' } });
      return;
    }
    this.trace = m.trace ? new StepTrace() : null;
    const timed: SessionExecutor = {
      step: async (session, stage, input, logitsFrom) => {
        const t0 = performance.now();
        const out = await l.sessions.step(session, stage, input, logitsFrom);
        this.lastComputeMs = performance.now() - t0;
        return out;
      },
      truncate: (s, p) => l.sessions.truncate(s, p),
      release: (s) => l.sessions.release(s),
    };
    const throttled = new DutyCycle(m.share).wrapSessions(timed);
    const trace = this.trace;
    const last = m.stage === l.manifest.stages.length - 1;
    this.core = new ReplicaCore(
      l.manifest,
      m.stage,
      trace === null ? throttled : trace.wrap(throttled, () => this.lastComputeMs),
      {
        frames: (to, messages) => {
          if (trace !== null && messages[0] !== undefined) trace.markFrame(messages[0], 'sent');
          this.send(to, messages);
        },
        // As on the main thread: a stage that feeds another sends its frames first; its digest follows.
        digest: last ? (d) => this.post({ kind: 'digest', m: d }) : (d) => queueMicrotask(() => this.post({ kind: 'digest', m: d })),
        logits: (lg) => {
          trace?.mark(lg.sessionId, lg.step, 'sent');
          // The logits row is this step's alone (ReplicaCore copies it): moved, not copied, to the main thread.
          this.post({ kind: 'logits', m: lg }, [lg.logits]);
        },
        failed: (f) => this.post({ kind: 'failed', m: f }),
        computed: () => {
          this.post({ kind: 'computed' });
          this.scheduleTrace();
        },
        rejected: (reason, count) => this.reject(reason, count),
      },
      m.fault === null ? null : faultBehaviour(m.fault.kind, m.fault.seed),
      () => this.lastComputeMs,
      MAX_STEPS_AHEAD,
      m.maxSessions,
    );
  }

  /**
   * Sends on the worker's own channel to `to` (through the bench's delay
   * line), else hands the frames to the main thread: the server's replicas
   * over the socket, or a peer whose channel is not here.
   */
  private send(to: string, messages: readonly Uint8Array[]): void {
    const l = this.channels.get(to);
    if (l === undefined) {
      this.post({ kind: 'frames', to, messages });
      return;
    }
    // A channel that closed meanwhile: the main thread's mesh opens the connection again and hands them back.
    const now = () => void (this.sendOn(l, messages) || this.post({ kind: 'frames', to, messages }));
    if (this.net.delayMs === 0 && this.net.pending === 0) now();
    else this.net.run(now);
  }

  /** Sends now, or holds until the channel opens; false when it is closed (or too much waits). */
  private sendOn(l: Link, messages: readonly Uint8Array[]): boolean {
    if (l.queue !== null && l.dc.readyState === 'connecting') {
      if (l.queue.length + messages.length > MAX_QUEUED) return false;
      l.queue.push(...messages);
      return true;
    }
    if (l.dc.readyState !== 'open') return false;
    for (const b of messages) l.dc.send(b as Uint8Array<ArrayBuffer>);
    return true;
  }

  private adopt(peer: string, link: number, dc: RTCDataChannel): void {
    this.unlink(peer);
    const l: Link = { dc, link, queue: [] };
    const current = () => this.channels.get(peer) === l;
    dc.binaryType = 'arraybuffer';
    dc.onopen = () => {
      const queued = l.queue ?? [];
      l.queue = null;
      if (current()) for (const b of queued) dc.send(b as Uint8Array<ArrayBuffer>);
    };
    dc.onmessage = (ev: MessageEvent<unknown>) => {
      if (!current()) return;
      if (!(ev.data instanceof ArrayBuffer)) {
        this.reject(notBinary(ev.data));
        return;
      }
      const bytes = new Uint8Array(ev.data);
      this.trace?.markFrame(bytes, 'recv');
      this.core?.frame(peer, bytes);
    };
    dc.onclose = () => {
      if (!current()) return;
      this.channels.delete(peer);
      this.post({ kind: 'closed', peer, link });
    };
    this.channels.set(peer, l);
  }

  private unlink(peer: string): void {
    const l = this.channels.get(peer);
    if (l === undefined) return;
    this.channels.delete(peer);
    l.dc.onopen = null;
    l.dc.onmessage = null;
    l.dc.onclose = null;
  }

  /** Counts a refused frame; the counts go to the main thread REJECTED_FLUSH_MS later, one event per code. */
  private reject(reason: string, count = 1): void {
    const code = rejectionCode(reason);
    const r = this.refused.get(code);
    if (r === undefined) this.refused.set(code, { reason, count });
    else {
      r.reason = reason;
      r.count += count;
    }
    this.refusedTimer ??= setTimeout(() => {
      this.refusedTimer = null;
      for (const x of this.refused.values()) this.post({ kind: 'rejected', reason: x.reason, count: x.count });
      this.refused.clear();
    }, REJECTED_FLUSH_MS);
  }

  private traceTimer: ReturnType<typeof setTimeout> | null = null;

  /** Hands the trace's new stamps to the main thread (window.webswarmTrace) a little later, in one batch: off the step's path. */
  private scheduleTrace(): void {
    if (this.trace === null || this.traceTimer !== null) return;
    this.traceTimer = setTimeout(() => {
      this.traceTimer = null;
      const t = this.trace;
      if (t === null || t.entries.length === this.traced) return;
      this.post({ kind: 'trace', entries: t.entries.slice(this.traced) });
      this.traced = t.entries.length;
    }, TRACE_FLUSH_MS);
  }
}
