/**
 * The Socket.IO events between the coordinator and volunteers, typed once and
 * used by both ends (Server<ClientToServerEvents, ServerToClientEvents> and
 * io() as Socket<ServerToClientEvents, ClientToServerEvents>).
 * README.md beside this file is the prose specification.
 */
import type { WireError } from './errors.js';

export type Backend = 'wasm' | 'webgpu';
export type Role = 'volunteer' | 'requester';

/** Sent in the handshake's `auth`. */
export interface HandshakeAuth {
  readonly protocol: number;
  readonly role: Role;
}

/** A volunteer introduces itself. */
export interface VolunteerHello {
  readonly backend: Backend;
  /** The GPU adapter's description, or null on WASM. */
  readonly adapter: string | null;
}

/** A volunteer has loaded (and verified) the stage it was assigned. */
export interface StageReady {
  readonly modelId: string;
  readonly stage: number;
  /** Measured time of one decode step of this stage on this volunteer, in ms. */
  readonly stepMs: number;
}

/** WebRTC signalling data (SDP or ICE), relayed unread between linked peers. */
export interface SignalOut {
  readonly to: string;
  readonly data: unknown;
}
export interface SignalIn {
  readonly from: string;
  readonly data: unknown;
}

export interface StageAssignment {
  readonly modelId: string;
  readonly stage: number;
  /** Where manifest.json and the stage files are served. */
  readonly baseUrl: string;
}

export interface ClientToServerEvents {
  'volunteer:hello': (m: VolunteerHello) => void;
  'volunteer:ready': (m: StageReady) => void;
  signal: (m: SignalOut) => void;
}

export interface ServerToClientEvents {
  'volunteer:welcome': (m: { readonly volunteerId: string }) => void;
  'volunteer:assign': (m: StageAssignment) => void;
  signal: (m: SignalIn) => void;
  'server:error': (e: WireError) => void;
}
