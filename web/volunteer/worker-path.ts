// The main thread's side of the data path in the compute worker
// (?datapath=worker): ReplicaCore's methods, forwarded to the worker's
// replica (web/compute/worker-replica.ts) by postMessage, and the worker's
// events handed to the tab's outputs (the socket, and the mesh for channels
// the worker does not hold). Data channels are transferred to the worker as
// they open (PeerMesh's hand-off); one the browser will not transfer stays
// here and its frames are relayed.
import type { SessionOpen, SessionUpdate, StepInput } from '../../shared/protocol/messages.js';
import type { ParsedChallenge } from '../../shared/protocol/validate.js';
import type { FaultKind } from '../../shared/swarm/faults.js';
import type { ReplicaCore, ReplicaOutputs } from '../../shared/swarm/replica-core.js';
import type { ComputeClient } from '../compute/compute-client.js';
import type { ReplicaEvent } from '../compute/datapath-messages.js';
import type { StepTrace } from './step-trace.js';

/** What the volunteer uses of a replica: ReplicaCore on the main thread, or this proxy of the worker's. */
export type ReplicaLike = Pick<ReplicaCore, 'open' | 'update' | 'close' | 'input' | 'frame' | 'challenge' | 'openSessions' | 'unreached'>;

/** How long a challenge may take in the worker before it is answered as failed. */
const CHALLENGE_TIMEOUT_MS = 120_000;

/** Where this page runs a step's data path: ?datapath=main|worker. */
export type DataPath = 'main' | 'worker';

/** Where a page runs it unless it asks (?datapath=): the volunteer page and the widget alike. */
export const DEFAULT_DATA_PATH: DataPath = 'worker';

/** The data path a page asks for, else the default; the worker path needs data channels in workers (feature-detected). */
export function chooseDataPath(asked: string | null, fallback: DataPath): DataPath {
  const wanted = asked === 'main' || asked === 'worker' ? asked : fallback;
  return wanted === 'worker' && !channelsTransfer() ? 'main' : wanted;
}

/**
 * Whether this browser may hand a data channel to a worker: it needs data
 * channels and workers at all. Transferring is tried per channel (Chromium
 * allows it; a browser that refuses throws DataCloneError): a channel that
 * stays here is read on this thread and its frames relayed to the worker, and
 * the worker's frames for that peer come back here to be sent.
 */
function channelsTransfer(): boolean {
  return typeof RTCDataChannel !== 'undefined' && typeof Worker !== 'undefined';
}

export interface WorkerPathOptions {
  readonly stage: number;
  readonly stages: number;
  readonly fault: FaultKind | null;
  readonly share: number;
  readonly trace: StepTrace | null;
  /** Sessions it keeps open at once. */
  readonly maxSessions: number;
}

export class WorkerDataPath implements ReplicaLike {
  private readonly sessions = new Map<number, SessionOpen>();
  private readonly proofs = new Map<number, { resolve: (d: number[]) => void; reject: (e: Error) => void }>();
  private nextProof = 1;
  /** Channels handed to the worker, and ones that refused the transfer (kept here). */
  moved = 0;
  kept = 0;
  /** Each peer's channel in the worker: a close reported for an older one (replaced meanwhile) is ignored. */
  private readonly links = new Map<string, number>();
  private nextLink = 1;

  constructor(
    private readonly compute: ComputeClient,
    private readonly out: ReplicaOutputs & { closed(peer: string): void },
    private readonly o: WorkerPathOptions,
  ) {
    compute.onReplica = (e) => this.event(e);
    compute.post({
      type: 'replica:start',
      stage: o.stage,
      // A random seed: two faulty tabs must not tell the same lie by accident (that would be collusion).
      fault: o.fault === null ? null : { kind: o.fault, seed: Math.floor(Math.random() * 2 ** 31) },
      share: o.share,
      trace: o.trace !== null,
      maxSessions: o.maxSessions,
    });
  }

  /** Hands a channel to the worker (in the task that created it); false when the browser refuses (it stays on this thread). */
  adopt(peer: string, channel: RTCDataChannel): boolean {
    try {
      const link = this.nextLink++;
      this.compute.post({ type: 'replica:channel', peer, link, channel }, [channel as unknown as Transferable]);
      this.links.set(peer, link);
      this.moved += 1;
      return true;
    } catch {
      this.kept += 1;
      return false;
    }
  }

  /** Frames for a peer whose channel went to the worker (handed to this thread before it knew). */
  sendVia(peer: string, messages: readonly Uint8Array[]): void {
    this.compute.post({ type: 'replica:send', peer, messages });
  }

  unlink(peer: string): void {
    this.links.delete(peer);
    this.compute.post({ type: 'replica:unlink', peer });
  }

  setNetDelay(delayMs: number): void {
    this.compute.post({ type: 'replica:net', delayMs });
  }

  open(m: SessionOpen): boolean {
    // The checks ReplicaCore.open makes, here too: the caller joins the session only on true.
    const fail = (code: 'ERR_NOT_ASSIGNED' | 'ERR_REPLICA_FULL', message: string) => {
      this.out.failed({ sessionId: m.sessionId, step: 0, code, message });
      return false;
    };
    if (m.stage !== this.o.stage || m.stage >= this.o.stages)
      return fail('ERR_NOT_ASSIGNED', `stage ${m.stage} is not loaded here (stage ${this.o.stage} is)`);
    if (this.sessions.size >= this.o.maxSessions && !this.sessions.has(m.sessionId))
      return fail('ERR_REPLICA_FULL', `this replica keeps ${this.o.maxSessions} sessions open already`);
    this.sessions.set(m.sessionId, m);
    this.compute.post({ type: 'replica:open', open: m });
    return true;
  }

  update(m: SessionUpdate): void {
    const s = this.sessions.get(m.sessionId);
    if (s === undefined) return;
    const loop = m.loop === undefined || s.loop === undefined ? s.loop : { ...s.loop, peers: m.loop };
    this.sessions.set(m.sessionId, { ...s, prev: m.prev, next: m.next, ...(loop === undefined ? {} : { loop }) });
    this.compute.post({ type: 'replica:update', update: m });
  }

  unreached(sessionId: number, peers: readonly string[]): void {
    if (this.sessions.has(sessionId)) this.compute.post({ type: 'replica:unreached', sessionId, peers });
  }

  close(sessionId: number): void {
    this.sessions.delete(sessionId);
    this.compute.post({ type: 'replica:close', sessionId });
  }

  input(m: StepInput): void {
    if (this.sessions.has(m.sessionId)) this.compute.post({ type: 'replica:input', input: m });
  }

  frame(from: string, bytes: Uint8Array): void {
    this.compute.post({ type: 'replica:frame', peer: from, bytes });
  }

  challenge(m: ParsedChallenge): Promise<number[]> {
    const id = this.nextProof++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.proofs.delete(id);
        reject(new Error(`the worker gave no answer to a challenge in ${CHALLENGE_TIMEOUT_MS} ms`));
      }, CHALLENGE_TIMEOUT_MS);
      this.proofs.set(id, {
        resolve: (d) => {
          clearTimeout(timer);
          resolve(d);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.compute.post({ type: 'replica:challenge', id, challenge: m });
    });
  }

  get openSessions(): readonly SessionOpen[] {
    return [...this.sessions.values()];
  }

  private event(e: ReplicaEvent): void {
    switch (e.kind) {
      case 'frames':
        this.out.frames(e.to, e.messages);
        return;
      case 'digest':
        this.out.digest(e.m);
        return;
      case 'logits':
        this.out.logits(e.m);
        return;
      case 'failed':
        this.out.failed(e.m);
        return;
      case 'computed':
        this.out.computed();
        return;
      case 'rejected':
        this.out.rejected(e.reason, e.count);
        return;
      case 'closed':
        if (this.links.get(e.peer) !== e.link) return;
        this.links.delete(e.peer);
        this.out.closed(e.peer);
        return;
      case 'trace':
        this.o.trace?.entries.push(...e.entries);
        return;
      case 'proof': {
        const p = this.proofs.get(e.id);
        if (p === undefined) return;
        this.proofs.delete(e.id);
        if (e.digest !== null) p.resolve([...e.digest]);
        else p.reject(new Error(e.error ?? 'the challenge failed in the worker'));
        return;
      }
      default: {
        const never: never = e;
        this.out.rejected(`ERR_BAD_MESSAGE unknown event from the worker ${JSON.stringify(never)}`);
      }
    }
  }
}
