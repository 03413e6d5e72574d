/**
 * Optimistic quorum fan-out (issue #11): a receiver needs only a majority of
 * identical copies of its input, so in the common case each receiver gets
 * copies from only m = ⌊r/2⌋+1 of the previous stage's r replicas, by a fixed
 * rotation both sides read off the route (receiver j counts on senders j, j+1,
 * …, j+m−1 mod r), and asks the others for theirs (a `want`) only when the
 * copies it counts on give it no majority at once. Who sends when changes,
 * never what counts: the vote still counts every copy of the route's senders.
 */
import { majority } from '../vote/quorum.js';

/**
 * The senders (indices in the previous stage) receiver `receiver` counts on,
 * or null where every sender sends it every step (all-to-all): a hop whose two
 * stages differ in size (the server took one over) or of fewer than three
 * replicas (a majority of one or two is all of them).
 */
export function countsOn(receiver: number, senders: number, receivers: number): number[] | null {
  if (senders !== receivers || senders < 3 || receiver < 0 || receiver >= receivers) return null;
  const m = majority(senders);
  return Array.from({ length: m }, (_, t) => (receiver + t) % senders);
}

/** Whether sender `sender` sends receiver `receiver` every step unasked (the rotation, or all-to-all where it does not apply). */
export function sendsTo(sender: number, receiver: number, senders: number, receivers: number): boolean {
  const assigned = countsOn(receiver, senders, receivers);
  return assigned === null || assigned.includes(sender);
}

/** The hop a want is about: the activations of the stage before, or (mesh loop) the last stage's tokens to stage 0. */
export type WantKind = 'frames' | 'tokens';

/**
 * "Send me every copy of this session from `fromStep` on": a receiver's ask to
 * a sender of the previous stage that the rotation does not assign it.
 */
export interface Want {
  readonly kind: WantKind;
  readonly sessionId: number;
  readonly fromStep: number;
  /** The asking replica's stage and index in it: the sender checks the route names it there. */
  readonly stage: number;
  readonly replica: number;
  /** The asker's era of the session (mod 256), as frames carry it. */
  readonly era: number;
}

/** "WSWQ" read as little-endian u32: told from a frame ("WSWF") by its first four bytes. */
export const WANT_MAGIC = 0x51575357;
const WANT_VERSION = 1;
export const WANT_BYTES = 20;
const KINDS: readonly WantKind[] = ['frames', 'tokens'];

export function encodeWant(w: Want): Uint8Array {
  const msg = new Uint8Array(WANT_BYTES);
  const v = new DataView(msg.buffer);
  v.setUint32(0, WANT_MAGIC, true);
  v.setUint8(4, WANT_VERSION);
  v.setUint8(5, KINDS.indexOf(w.kind) + 1);
  v.setUint8(6, w.era & 0xff);
  v.setUint32(8, w.sessionId, true);
  v.setUint32(12, w.fromStep, true);
  v.setUint16(16, w.stage, true);
  v.setUint16(18, w.replica, true);
  return msg;
}

/** Whether a data-channel message is a want (and not a frame chunk): its magic. */
export function isWant(msg: Uint8Array): boolean {
  return msg.byteLength >= 4 && new DataView(msg.buffer, msg.byteOffset, 4).getUint32(0, true) === WANT_MAGIC;
}

/** A want, or a named reason it is none (the frames' codes: a want is a frame-protocol message). */
export function decodeWant(msg: Uint8Array): Want | string {
  if (msg.byteLength !== WANT_BYTES) return `ERR_FRAME_SHAPE a want of ${msg.byteLength} bytes, not ${WANT_BYTES}`;
  const v = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
  if (v.getUint32(0, true) !== WANT_MAGIC) return 'ERR_FRAME_MAGIC';
  if (v.getUint8(4) !== WANT_VERSION) return `ERR_FRAME_VERSION want version ${v.getUint8(4)}`;
  const kind = KINDS[v.getUint8(5) - 1];
  if (kind === undefined || v.getUint8(7) !== 0) return `ERR_FRAME_SHAPE want kind ${v.getUint8(5)}`;
  return {
    kind,
    era: v.getUint8(6),
    sessionId: v.getUint32(8, true),
    fromStep: v.getUint32(12, true),
    stage: v.getUint16(16, true),
    replica: v.getUint16(18, true),
  };
}

/** The shortest wait for a copy the rotation promised, once another came (ms): below it, jitter alone would ask. */
export const WANT_FLOOR_MS = 25;
/** The longest: a silent sender costs at most this once a session (then the others send every step). */
export const WANT_CAP_MS = 250;

/**
 * How long a receiver waits for the rest of its assigned copies once one came
 * before it asks the others: twice the stage's observed time between inputs
 * taken, within [WANT_FLOOR_MS, WANT_CAP_MS]; the cap before any was observed.
 */
export class WantDeadline {
  private lastTaken = -1;
  private interval = 0;

  /** An input was taken at `now` (ms). */
  taken(now: number): void {
    if (this.lastTaken >= 0) {
      const dt = now - this.lastTaken;
      this.interval = this.interval === 0 ? dt : 0.8 * this.interval + 0.2 * dt;
    }
    this.lastTaken = now;
  }

  get ms(): number {
    if (this.interval === 0) return WANT_CAP_MS;
    return Math.min(WANT_CAP_MS, Math.max(WANT_FLOOR_MS, 2 * this.interval));
  }
}

/** Per session, one replica's fan-out state on both sides of its hops. */
export class FanoutState {
  /** Receivers (by hop) that asked: they get every step, like all-to-all. */
  readonly subscribers = { frames: new Set<string>(), tokens: new Set<string>() };
  /** Receivers (by hop) whose want was honoured with a resend: once a session each. */
  readonly honoured = { frames: new Set<string>(), tokens: new Set<string>() };
  /** Senders (by hop) this replica asked: at most once a session each. */
  readonly asked = { frames: new Set<string>(), tokens: new Set<string>() };
  /** Per step (by hop): the timer that asks once an assigned copy is overdue. */
  readonly overdue = { frames: new Map<number, ReturnType<typeof setTimeout>>(), tokens: new Map<number, ReturnType<typeof setTimeout>>() };
  readonly deadline = new WantDeadline();
  /** The last stage's tokens sent lately, by step: resent to a receiver that asks (MESH_AHEAD and a few more). */
  readonly sentTokens = new Map<number, number>();

  /** `size`: the replica count of this replica's own stage (from the route), 0 where the session is all-to-all. */
  constructor(readonly size: number) {}

  clearTimers(from = 0): void {
    for (const m of [this.overdue.frames, this.overdue.tokens])
      for (const [step, t] of [...m])
        if (step >= from) {
          clearTimeout(t);
          m.delete(step);
        }
  }
}
