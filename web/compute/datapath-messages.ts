// The per-token data path in the compute worker (?datapath=worker): what the
// main thread tells the worker's replica (session control from the socket,
// data channels transferred to it, frames that came another way) and what
// the worker hands back (only what goes to the socket, and status).
import type { SessionOpen, SessionUpdate, StepDigest, StepFailure, StepInput, StepLogits } from '../../shared/protocol/messages.js';
import type { ParsedChallenge } from '../../shared/protocol/validate.js';
import type { FaultKind } from '../../shared/swarm/faults.js';
import type { TraceEntry } from '../volunteer/step-trace.js';

/** Main thread → the worker's replica. */
export type ToReplica =
  /** After the stage loaded: the replica of `stage`, with the page's fault (its seed drawn on the main thread), share and trace flag. */
  | {
      readonly type: 'replica:start';
      readonly stage: number;
      readonly fault: { readonly kind: FaultKind; readonly seed: number } | null;
      readonly share: number;
      readonly trace: boolean;
      /** Sessions it keeps open at once (ReplicaCore.maxSessions; the ready says the same). */
      readonly maxSessions: number;
    }
  /** The frames channel to `peer`, transferred to the worker at its creation (`link` numbers it): its frames are read and sent there. */
  | { readonly type: 'replica:channel'; readonly peer: string; readonly link: number; readonly channel: RTCDataChannel }
  /** The channel to `peer` is gone (released or failed on the main thread). */
  | { readonly type: 'replica:unlink'; readonly peer: string }
  /** A frame that reached the main thread (the server's replicas over the socket, or a channel not transferred). */
  | { readonly type: 'replica:frame'; readonly peer: string; readonly bytes: Uint8Array }
  /** Frames for a peer whose channel the worker holds, handed back by the main thread (they crossed its transfer). */
  | { readonly type: 'replica:send'; readonly peer: string; readonly messages: readonly Uint8Array[] }
  | { readonly type: 'replica:open'; readonly open: SessionOpen }
  | { readonly type: 'replica:update'; readonly update: SessionUpdate }
  | { readonly type: 'replica:close'; readonly sessionId: number }
  /** Neighbours the session was joined without (ReplicaCore.unreached: the fan-out asks around them at once). */
  | { readonly type: 'replica:unreached'; readonly sessionId: number; readonly peers: readonly string[] }
  | { readonly type: 'replica:input'; readonly input: StepInput }
  | { readonly type: 'replica:challenge'; readonly id: number; readonly challenge: ParsedChallenge }
  /** The bench's one-way delay on the data channels the worker sends on (volunteer:net). */
  | { readonly type: 'replica:net'; readonly delayMs: number };

/** What the worker's replica reports (ReplicaOutputs, less what it sent on its own channels). */
export type ReplicaEvent =
  /** Frames for a peer whose channel the worker does not hold: the main thread sends them (mesh or socket). */
  | { readonly kind: 'frames'; readonly to: string; readonly messages: readonly Uint8Array[] }
  | { readonly kind: 'digest'; readonly m: StepDigest }
  | { readonly kind: 'logits'; readonly m: StepLogits }
  | { readonly kind: 'failed'; readonly m: StepFailure }
  | { readonly kind: 'computed' }
  /** Frames refused in the last interval with one reason code: the latest reason, and how many. */
  | { readonly kind: 'rejected'; readonly reason: string; readonly count: number }
  | { readonly kind: 'trace'; readonly entries: readonly TraceEntry[] }
  /** A channel the worker held closed: the main thread's mesh opens it again where a session needs it. */
  | { readonly kind: 'closed'; readonly peer: string; readonly link: number }
  | { readonly kind: 'proof'; readonly id: number; readonly digest: readonly number[] | null; readonly error: string | null };

/** Compute worker → main thread: one replica event. */
export interface FromReplica {
  readonly type: 'replica';
  readonly event: ReplicaEvent;
}
