/**
 * Binary frames for activations on WebRTC data channels: a fixed header
 * (session, step, stage, replica, dtype, shape, byte length, checksum) and raw
 * little-endian float32 bytes, chunked below the data channel's 256 KiB message
 * limit. Every inbound chunk is checked before it is kept.
 */

export const FRAME_MAGIC = 0x46575357; // "WSWF" read as little-endian u32
export const FRAME_VERSION = 1;
/** A data-channel message is at most 256 KiB (pc.sctp.maxMessageSize in Chromium). */
export const MAX_MESSAGE_BYTES = 256 * 1024;
const FIXED_HEADER_BYTES = 32;
const MAX_RANK = 4;

export interface ActivationFrame {
  readonly sessionId: number;
  readonly step: number;
  readonly stage: number;
  readonly replica: number;
  readonly dims: readonly number[];
  readonly data: Float32Array;
  /**
   * The session's era (mod 256) the sender computed this in: the coordinator
   * bumps it when it rolls the whole pipeline back, so a frame still in flight
   * from the undone path is told from a new one. Absent = 0.
   */
  readonly era?: number;
}

export type FrameRejection =
  | 'ERR_FRAME_TOO_SHORT'
  | 'ERR_FRAME_MAGIC'
  | 'ERR_FRAME_VERSION'
  | 'ERR_FRAME_DTYPE'
  | 'ERR_FRAME_SHAPE'
  | 'ERR_FRAME_TOO_LARGE'
  | 'ERR_FRAME_CHUNK'
  | 'ERR_FRAME_CHECKSUM'
  /** A frame no live session of this replica wants (the `accept` predicate said no): refused before anything is kept. */
  | 'ERR_FRAME_UNWANTED'
  /** The peer's reassembly budget (frames or bytes pending) is spent: the frame, or the oldest pending one, is dropped. */
  | 'ERR_FRAME_BUDGET'
  /** A data-channel message that is not binary (a string): frames are bytes, so it is refused before it is read. */
  | 'ERR_FRAME_NOT_BINARY';

/** A refusal's code: the first word of its reason ("ERR_FRAME_MAGIC …"), the key its count goes under. */
export function rejectionCode(reason: string): string {
  return reason.split(' ', 1)[0] ?? reason;
}

/** Why a data-channel message that is not an ArrayBuffer (a string: the channel carries text too) is refused, for the counters. */
export function notBinary(data: unknown): string {
  const what = typeof data === 'string' ? `a string of ${data.length} characters` : `a ${typeof data}`;
  return `ERR_FRAME_NOT_BINARY ${what}: frames are binary`;
}

/** FNV-1a over bytes: detects a broken reassembly, not tampering (the vote does that). */
export function checksum(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i] as number;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

function headerBytes(rank: number): number {
  return FIXED_HEADER_BYTES + 4 * rank;
}

/** Splits a frame into data-channel messages of at most `maxMessageBytes`. */
export function encodeFrame(f: ActivationFrame, maxMessageBytes = MAX_MESSAGE_BYTES): Uint8Array[] {
  const rank = f.dims.length;
  if (rank < 1 || rank > MAX_RANK) throw new RangeError(`rank ${rank} is outside 1..${MAX_RANK}`);
  const elements = f.dims.reduce((a, b) => a * b, 1);
  if (elements !== f.data.length) throw new RangeError(`shape [${f.dims.join(', ')}] holds ${elements} values, data has ${f.data.length}`);
  const payload = new Uint8Array(f.data.buffer, f.data.byteOffset, f.data.byteLength);
  const head = headerBytes(rank);
  const per = Math.floor((maxMessageBytes - head) / 4) * 4;
  if (per <= 0) throw new RangeError(`messages of ${maxMessageBytes} bytes cannot carry a header of ${head}`);
  const count = Math.max(1, Math.ceil(payload.byteLength / per));
  if (count > 0xffff) throw new RangeError('frame needs too many chunks');
  const sum = checksum(payload);
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const part = payload.subarray(i * per, Math.min(payload.byteLength, (i + 1) * per));
    const msg = new Uint8Array(head + part.byteLength);
    const v = new DataView(msg.buffer);
    v.setUint32(0, FRAME_MAGIC, true);
    v.setUint8(4, FRAME_VERSION);
    v.setUint8(5, 1); // dtype: float32
    v.setUint8(6, rank);
    v.setUint8(7, (f.era ?? 0) & 0xff);
    v.setUint32(8, f.sessionId, true);
    v.setUint32(12, f.step, true);
    v.setUint16(16, f.stage, true);
    v.setUint16(18, f.replica, true);
    v.setUint16(20, i, true);
    v.setUint16(22, count, true);
    v.setUint32(24, payload.byteLength, true);
    v.setUint32(28, sum, true);
    for (const [j, d] of f.dims.entries()) v.setUint32(FIXED_HEADER_BYTES + 4 * j, d, true);
    msg.set(part, head);
    out.push(msg);
  }
  return out;
}

interface ChunkHeader {
  era: number;
  sessionId: number;
  step: number;
  stage: number;
  replica: number;
  index: number;
  count: number;
  totalBytes: number;
  sum: number;
  dims: number[];
  body: Uint8Array;
}

function parseChunk(msg: Uint8Array, maxPayloadBytes: number): ChunkHeader | FrameRejection {
  if (msg.byteLength < FIXED_HEADER_BYTES) return 'ERR_FRAME_TOO_SHORT';
  const v = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
  if (v.getUint32(0, true) !== FRAME_MAGIC) return 'ERR_FRAME_MAGIC';
  if (v.getUint8(4) !== FRAME_VERSION) return 'ERR_FRAME_VERSION';
  if (v.getUint8(5) !== 1) return 'ERR_FRAME_DTYPE';
  const rank = v.getUint8(6);
  if (rank < 1 || rank > MAX_RANK) return 'ERR_FRAME_SHAPE';
  const head = headerBytes(rank);
  if (msg.byteLength < head) return 'ERR_FRAME_TOO_SHORT';
  const dims: number[] = [];
  for (let j = 0; j < rank; j++) dims.push(v.getUint32(FIXED_HEADER_BYTES + 4 * j, true));
  const totalBytes = v.getUint32(24, true);
  if (totalBytes > maxPayloadBytes) return 'ERR_FRAME_TOO_LARGE';
  const elements = dims.reduce((a, b) => a * b, 1);
  if (dims.some((d) => d === 0) || elements * 4 !== totalBytes) return 'ERR_FRAME_SHAPE';
  const index = v.getUint16(20, true);
  const count = v.getUint16(22, true);
  // More chunks than 4-byte values would make empty chunks: a sparse table of 65 535 slots for a tiny frame.
  if (count === 0 || index >= count || count > totalBytes / 4) return 'ERR_FRAME_CHUNK';
  const body = msg.subarray(head);
  if (body.byteLength > totalBytes || body.byteLength % 4 !== 0) return 'ERR_FRAME_CHUNK';
  return {
    era: v.getUint8(7),
    sessionId: v.getUint32(8, true),
    step: v.getUint32(12, true),
    stage: v.getUint16(16, true),
    replica: v.getUint16(18, true),
    index,
    count,
    totalBytes,
    sum: v.getUint32(28, true),
    dims,
    body,
  };
}

export type PushResult =
  | { readonly kind: 'complete'; readonly frame: ActivationFrame }
  | { readonly kind: 'partial' }
  | { readonly kind: 'rejected'; readonly reason: FrameRejection };

interface Pending {
  readonly first: ChunkHeader;
  readonly parts: (Uint8Array | undefined)[];
  received: number;
  bytes: number;
}

/** What the chunks of a frame claim, for `accept` and for reports of dropped frames. */
export interface FrameKey {
  readonly sessionId: number;
  readonly step: number;
  readonly stage: number;
  readonly replica: number;
}

/** How much one peer may have pending; every bound is on what a chunk's header declares, checked before bytes are kept. */
export interface FrameLimits {
  /** Frames being reassembled at once (a peer sends its frames one after another, so one is the honest case). */
  readonly maxPendingFrames: number;
  /** Largest frame: hiddenSize × maxPositions × 4 for hidden states, the largest a real frame can be. */
  readonly maxFrameBytes: number;
  /** Declared bytes of all pending frames together (at least maxFrameBytes; default 2 × maxFrameBytes). */
  readonly maxPendingBytes: number;
}

export interface FrameAssemblerOptions extends Partial<FrameLimits> {
  /**
   * Asked on the first chunk of a frame, before anything is buffered: does a
   * live session here want this (session, step, stage)? Default: every frame.
   */
  readonly accept?: (sessionId: number, step: number, stage: number) => boolean;
  /** A pending frame was dropped to make room (ERR_FRAME_BUDGET): for the logs and counters. */
  readonly onDrop?: (frame: FrameKey, reason: FrameRejection) => void;
}

/** The defaults until a caller passes the model's own bound (hiddenSize × maxPositions × 4). */
export const DEFAULT_FRAME_LIMITS: FrameLimits = {
  maxPendingFrames: 4,
  maxFrameBytes: 16 * 1024 * 1024,
  maxPendingBytes: 32 * 1024 * 1024,
};

/**
 * Reassembles chunked frames from one peer. Memory is bounded by `FrameLimits`:
 * a frame is admitted on its first chunk only if the `accept` predicate wants
 * it and its declared size fits the peer's budget after dropping the oldest
 * pending frames (each drop reported as ERR_FRAME_BUDGET); so what one peer
 * can make this side hold is at most `maxPendingBytes`, whatever it sends.
 * Chunks are copied out of the transport's buffers (simple-peer hands over
 * views into a shared pool).
 */
export class FrameAssembler {
  private readonly pending = new Map<string, Pending>();
  private readonly limits: FrameLimits;
  private readonly accept: (sessionId: number, step: number, stage: number) => boolean;
  private readonly onDrop: (frame: FrameKey, reason: FrameRejection) => void;
  /** Sum of the declared sizes of the pending frames. */
  private reservedBytes = 0;
  private heldBytes = 0;

  constructor(options: FrameAssemblerOptions = {}) {
    const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_FRAME_LIMITS.maxFrameBytes;
    this.limits = {
      maxFrameBytes,
      maxPendingFrames: options.maxPendingFrames ?? DEFAULT_FRAME_LIMITS.maxPendingFrames,
      maxPendingBytes: options.maxPendingBytes ?? 2 * maxFrameBytes,
    };
    if (
      !(this.limits.maxPendingFrames >= 1 && this.limits.maxFrameBytes >= 4 && this.limits.maxPendingBytes >= this.limits.maxFrameBytes)
    ) {
      throw new RangeError(
        `frame limits need maxPendingFrames ≥ 1, maxFrameBytes ≥ 4 and maxPendingBytes ≥ maxFrameBytes (got ${JSON.stringify(this.limits)})`,
      );
    }
    this.accept = options.accept ?? (() => true);
    this.onDrop = options.onDrop ?? (() => {});
  }

  push(msg: Uint8Array): PushResult {
    const c = parseChunk(msg, this.limits.maxFrameBytes);
    if (typeof c === 'string') return { kind: 'rejected', reason: c };
    const key = `${c.sessionId}/${c.step}/${c.stage}/${c.replica}/${c.era}`;
    let p = this.pending.get(key);
    if (p === undefined) {
      // The first chunk seen of this frame: decide before keeping a byte of it.
      if (!this.accept(c.sessionId, c.step, c.stage)) return { kind: 'rejected', reason: 'ERR_FRAME_UNWANTED' };
      while (
        this.pending.size > 0 &&
        (this.pending.size >= this.limits.maxPendingFrames || this.reservedBytes + c.totalBytes > this.limits.maxPendingBytes)
      ) {
        const [oldestKey, oldest] = this.pending.entries().next().value as [string, Pending];
        this.remove(oldestKey, oldest);
        this.onDrop(keyOf(oldest.first), 'ERR_FRAME_BUDGET');
      }
      p = { first: c, parts: new Array(c.count), received: 0, bytes: 0 };
      this.pending.set(key, p);
      this.reservedBytes += c.totalBytes;
    }
    const f = p.first;
    const same =
      c.count === f.count &&
      c.totalBytes === f.totalBytes &&
      c.sum === f.sum &&
      c.dims.length === f.dims.length &&
      c.dims.every((d, i) => d === f.dims[i]);
    if (!same || p.parts[c.index] !== undefined || p.bytes + c.body.byteLength > f.totalBytes) {
      this.remove(key, p);
      return { kind: 'rejected', reason: 'ERR_FRAME_CHUNK' };
    }
    p.parts[c.index] = c.body.slice();
    p.received += 1;
    p.bytes += c.body.byteLength;
    this.heldBytes += c.body.byteLength;
    if (p.received < f.count) return { kind: 'partial' };
    this.remove(key, p);
    if (p.bytes !== f.totalBytes) return { kind: 'rejected', reason: 'ERR_FRAME_CHUNK' };
    const whole = new Uint8Array(f.totalBytes);
    let at = 0;
    for (const part of p.parts) {
      whole.set(part as Uint8Array, at);
      at += (part as Uint8Array).byteLength;
    }
    if (checksum(whole) !== f.sum) return { kind: 'rejected', reason: 'ERR_FRAME_CHECKSUM' };
    return {
      kind: 'complete',
      frame: {
        sessionId: f.sessionId,
        step: f.step,
        stage: f.stage,
        replica: f.replica,
        dims: f.dims,
        data: new Float32Array(whole.buffer),
        ...(f.era === 0 ? {} : { era: f.era }),
      },
    };
  }

  /** Drops what is pending for a session that ended; returns how many frames went. */
  forgetSession(sessionId: number): number {
    let n = 0;
    for (const [key, p] of [...this.pending]) {
      if (p.first.sessionId !== sessionId) continue;
      this.remove(key, p);
      n += 1;
    }
    return n;
  }

  private remove(key: string, p: Pending): void {
    if (!this.pending.delete(key)) return;
    this.reservedBytes -= p.first.totalBytes;
    this.heldBytes -= p.bytes;
  }

  get pendingFrames(): number {
    return this.pending.size;
  }

  /** Bytes of chunks held for frames not yet complete: what this peer costs in memory now. */
  get pendingBytes(): number {
    return this.heldBytes;
  }
}

function keyOf(c: ChunkHeader): FrameKey {
  return { sessionId: c.sessionId, step: c.step, stage: c.stage, replica: c.replica };
}
