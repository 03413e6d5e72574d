/**
 * What the servers of a cluster tell each other through Redis: one union per
 * channel, a parser for each (another process's message is data to check, never
 * a shape to trust), and the codec (JSON; bytes raw after a JSON header).
 * Volunteers' own reports keep their
 * protocol parsers (shared/protocol/validate.ts): the server that coordinates a
 * session parses them again when they arrive from the volunteer's server.
 */

import { isSessionLimit } from '../../shared/protocol/capacity.js';
import { FRAME_MAGIC } from '../../shared/protocol/frames.js';
import { WANT_MAGIC } from '../../shared/swarm/fanout.js';
import type { MirroredVolunteer } from '../coordinator/coordinator.js';
import type { NoShow } from '../coordinator/session-types.js';

/** Longest message read from Redis (the largest is a forwarded step:logits). */
export const MAX_CLUSTER_MESSAGE_BYTES = 4 * 1024 * 1024;
/** Longest id, key or event name accepted. */
const MAX_STRING = 256;
/** Identity keys per volunteer (its client key and its address). */
const MAX_KEYS = 4;

/**
 * A volunteer as its own server publishes it (to the bus and to its hash in
 * Redis): what the others mirror, its record flattened, and its sessions.
 */
export type VolunteerState = Omit<MirroredVolunteer, 'counts'> & {
  readonly agreed: number;
  readonly disagreed: number;
  /** Sessions it is in, on every server its own server knows of (a replica holds 16). */
  readonly sessions: number;
  /** The partition its stage is of (rangesKey): another process's stage numbers mean nothing on another partition. */
  readonly partition: string;
  /** Passed a challenge on its server once (what the re-partition planner counts of a process's volunteers). */
  readonly vouched: boolean;
};

/** Stages of a planned partition, at most (a stage is one layer at least). */
const MAX_PLANNED_STAGES = 4096;
/** Volunteers placed by one plan, at most. */
const MAX_PLANNED_VOLUNTEERS = 200_000;

/**
 * A re-partition plan of the cluster's leader (LiveRepartition): the partition to serve, as layer ranges, and the
 * stage of each volunteer of the cluster on it; `n` orders plans (a later one replaces an earlier).
 */
export interface PartitionPlan {
  readonly n: number;
  readonly ranges: readonly (readonly [number, number])[];
  readonly stageOf: readonly (readonly [string, number])[];
}

/** Broadcast to every server (channel `<prefix>:bus`). */
export type BusMessage =
  | { readonly t: 'vol'; readonly proc: number; readonly v: VolunteerState }
  | { readonly t: 'gone'; readonly proc: number; readonly id: string }
  | { readonly t: 'ban'; readonly proc: number; readonly key: string; readonly untilMs: number }
  /** A server closing: its volunteers are gone, its sessions over. */
  | { readonly t: 'bye'; readonly proc: number }
  /** The leader's re-partition plan: every process serves it (and moves its own volunteers as it places them). */
  | ({ readonly t: 'plan'; readonly proc: number } & PartitionPlan);

/** Server → volunteer events one server asks another to emit to a volunteer of its own. */
export const RELAYED_EVENTS = ['session:open', 'session:update', 'session:close', 'step:input', 'signal', 'server:error'] as const;
export type RelayedEvent = (typeof RELAYED_EVENTS)[number];

/** Volunteer → coordinator reports forwarded to the server that coordinates the session. */
export const REPORT_EVENTS = ['session:joined', 'step:digest', 'step:logits', 'step:failed'] as const;
export type ReportEvent = (typeof REPORT_EVENTS)[number];

/** To one server (channel `<prefix>:proc:<n>`); `proc` is the sender's number. */
export type InboxMessage =
  /** Emit `event` with `m` to `to`, a volunteer of the receiving server. */
  | { readonly t: 'send'; readonly proc: number; readonly to: string; readonly event: RelayedEvent; readonly m: Record<string, unknown> }
  /** Disconnect `id` (evicted by the sender). */
  | { readonly t: 'disconnect'; readonly proc: number; readonly id: string }
  /** A session of the sender links (or unlinks) `a` and `b` for signalling. */
  | { readonly t: 'link' | 'unlink'; readonly proc: number; readonly a: string; readonly b: string }
  /** A report of `from`, a volunteer of the sender, about a session of the receiver (a step:logits' logits as `bytes`). */
  | {
      readonly t: 'report';
      readonly proc: number;
      readonly from: string;
      readonly event: ReportEvent;
      readonly m: Record<string, unknown>;
      readonly bytes?: Uint8Array;
    }
  /**
   * A vote of the sender classified `id`, a volunteer of the receiver; `sum`: its client's record in Redis after the
   * sender counted it there (absent: not counted, Redis failed).
   */
  | {
      readonly t: 'audit';
      readonly proc: number;
      readonly id: string;
      readonly agreed: boolean;
      readonly sum?: { readonly agreed: number; readonly disagreed: number };
    }
  /** Spot-check `id`, a volunteer of the receiver. */
  | { readonly t: 'challenge'; readonly proc: number; readonly id: string }
  /**
   * Data-channel messages between a server replica (the fallback) of a session
   * the sender or the receiver coordinates and a volunteer of the other: packed
   * as the `frame` event packs them.
   */
  | { readonly t: 'frame'; readonly proc: number; readonly from: string; readonly to: string; readonly data: Uint8Array }
  /** `id`, a volunteer of the receiver, did not show up in `sessionId`, a session of the sender: a strike on its record. */
  | { readonly t: 'noshow'; readonly proc: number; readonly id: string; readonly sessionId: number; readonly why: NoShow }
  /** `sessionId`, a session of the sender with members among the receiver's volunteers, began deciding `step`. */
  | { readonly t: 'progress'; readonly proc: number; readonly sessionId: number; readonly step: number }
  /**
   * Every session of the sender open on the receiver's volunteers now, each with those volunteers (told every resync):
   * the receiver ends those it holds open that are not among them, whose close was lost (Redis away).
   */
  | { readonly t: 'open'; readonly proc: number; readonly sessions: readonly OpenSession[] }
  /**
   * Every link the sender's sessions hold now with one of the receiver's volunteers, each with its count (told every
   * resync): the receiver makes what it holds of the sender's links these, where a link or unlink was lost.
   */
  | { readonly t: 'links'; readonly proc: number; readonly pairs: readonly LinkedPair[] };

/** A pair of volunteers linked for signalling, and by how many of the sender's sessions (no more than it tracks). */
export type LinkedPair = readonly [a: string, b: string, n: number];

/** Pairs a `links` message lists at most (a process with more tells none: a list cut short would unlink the rest). */
export const MAX_LINKS_LISTED = 20_000;

/** A session open on some of the receiver's volunteers: its id and theirs. */
export type OpenSession = readonly [sessionId: number, volunteers: readonly string[]];

/** Sessions an `open` message lists at most (as many as a process tracks of another's). */
export const MAX_OPEN_LISTED = 10_000;
/** Volunteers of one session an `open` message lists at most. */
const MAX_OPEN_MEMBERS = 256;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && v.length <= MAX_STRING;
}

function uint(v: unknown, max = Number.MAX_SAFE_INTEGER): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;
}

function oneOf<T extends string>(v: unknown, allowed: readonly T[]): v is T {
  return typeof v === 'string' && (allowed as readonly string[]).includes(v);
}

/** A server's number: 1 … MAX_PROC. */
export const MAX_PROC = 0xffff;

function proc(v: unknown): v is number {
  return uint(v, MAX_PROC) && v >= 1;
}

export function parseVolunteerState(raw: unknown): VolunteerState | null {
  if (!isObject(raw)) return null;
  const { id, keys, backend, adapter, stage, ready, stepMs, proven, joinedAt, agreed, disagreed, sessions, sessionLimit } = raw;
  const { memoryBytes, bufferLimitBytes, stale, partition, vouched } = raw;
  if (!str(id) || !Array.isArray(keys) || keys.length > MAX_KEYS || !keys.every(str)) return null;
  if (!oneOf(backend, ['wasm', 'webgpu'] as const) || !(adapter === null || str(adapter))) return null;
  if (!uint(stage, 4095) || typeof ready !== 'boolean' || typeof proven !== 'boolean' || !uint(joinedAt)) return null;
  if (!(stepMs === null || (typeof stepMs === 'number' && Number.isFinite(stepMs) && stepMs >= 0))) return null;
  if (!uint(agreed) || !uint(disagreed) || !uint(sessions, 1_000_000)) return null;
  if (sessionLimit !== undefined && !isSessionLimit(sessionLimit)) return null;
  if (
    !(memoryBytes === undefined || uint(memoryBytes)) ||
    !(bufferLimitBytes === undefined || bufferLimitBytes === null || uint(bufferLimitBytes))
  )
    return null;
  if (!(stale === undefined || stale === true) || !str(partition) || typeof vouched !== 'boolean') return null;
  return {
    id,
    keys,
    backend,
    adapter,
    stage,
    ready,
    stepMs,
    proven,
    joinedAt,
    agreed,
    disagreed,
    sessions,
    partition,
    vouched,
    ...(sessionLimit === undefined ? {} : { sessionLimit }),
    ...(memoryBytes === undefined ? {} : { memoryBytes }),
    ...(bufferLimitBytes === undefined ? {} : { bufferLimitBytes }),
    ...(stale === true ? { stale } : {}),
  };
}

export function parseBusMessage(raw: unknown): BusMessage | null {
  if (!isObject(raw) || !proc(raw.proc)) return null;
  const p = raw.proc;
  switch (raw.t) {
    case 'vol': {
      const v = parseVolunteerState(raw.v);
      return v === null ? null : { t: 'vol', proc: p, v };
    }
    case 'gone':
      return str(raw.id) ? { t: 'gone', proc: p, id: raw.id } : null;
    case 'ban':
      return str(raw.key) && uint(raw.untilMs) ? { t: 'ban', proc: p, key: raw.key, untilMs: raw.untilMs } : null;
    case 'bye':
      return { t: 'bye', proc: p };
    case 'plan': {
      const plan = parsePartitionPlan(raw);
      return plan === null ? null : { t: 'plan', proc: p, ...plan };
    }
    default:
      return null;
  }
}

/**
 * A partition plan (of a bus message, or the record in Redis): contiguous layer ranges from layer 0, each of one
 * layer at least, and each volunteer placed once on one of their stages.
 */
export function parsePartitionPlan(raw: unknown): PartitionPlan | null {
  if (!isObject(raw)) return null;
  const { n, ranges, stageOf } = raw;
  if (!uint(n) || !Array.isArray(ranges) || ranges.length === 0 || ranges.length > MAX_PLANNED_STAGES) return null;
  if (!Array.isArray(stageOf) || stageOf.length > MAX_PLANNED_VOLUNTEERS) return null;
  const parsedRanges: (readonly [number, number])[] = [];
  let next = 0;
  for (const r of ranges) {
    if (!Array.isArray(r) || r.length !== 2 || r[0] !== next || !uint(r[1], 1_000_000) || r[1] <= next) return null;
    parsedRanges.push([r[0], r[1]]);
    next = r[1];
  }
  const seen = new Set<string>();
  const parsedStages: (readonly [string, number])[] = [];
  for (const e of stageOf) {
    if (!Array.isArray(e) || e.length !== 2 || !str(e[0]) || !uint(e[1], parsedRanges.length - 1) || seen.has(e[0])) return null;
    seen.add(e[0]);
    parsedStages.push([e[0], e[1]]);
  }
  return { n, ranges: parsedRanges, stageOf: parsedStages };
}

/**
 * An inbox message, `bytes` being what followed its JSON header (see
 * encodeMessage): only a step:logits report and frames carry bytes, and they
 * must.
 */
export function parseInboxMessage(raw: unknown, bytes?: Uint8Array): InboxMessage | null {
  if (!isObject(raw) || !proc(raw.proc)) return null;
  const p = raw.proc;
  if ((bytes !== undefined) !== (raw.t === 'frame' || (raw.t === 'report' && raw.event === 'step:logits'))) return null;
  switch (raw.t) {
    case 'send':
      return str(raw.to) && oneOf(raw.event, RELAYED_EVENTS) && isObject(raw.m)
        ? { t: 'send', proc: p, to: raw.to, event: raw.event, m: raw.m }
        : null;
    case 'disconnect':
    case 'challenge':
      return str(raw.id) ? { t: raw.t, proc: p, id: raw.id } : null;
    case 'link':
    case 'unlink':
      return str(raw.a) && str(raw.b) && raw.a !== raw.b ? { t: raw.t, proc: p, a: raw.a, b: raw.b } : null;
    case 'report':
      return str(raw.from) && oneOf(raw.event, REPORT_EVENTS) && isObject(raw.m)
        ? { t: 'report', proc: p, from: raw.from, event: raw.event, m: raw.m, ...(bytes === undefined ? {} : { bytes }) }
        : null;
    case 'audit': {
      if (!str(raw.id) || typeof raw.agreed !== 'boolean') return null;
      const sum = raw.sum;
      if (sum === undefined) return { t: 'audit', proc: p, id: raw.id, agreed: raw.agreed };
      return isObject(sum) && uint(sum.agreed) && uint(sum.disagreed)
        ? { t: 'audit', proc: p, id: raw.id, agreed: raw.agreed, sum: { agreed: sum.agreed, disagreed: sum.disagreed } }
        : null;
    }
    case 'frame':
      return str(raw.from) && str(raw.to) && bytes !== undefined ? { t: 'frame', proc: p, from: raw.from, to: raw.to, data: bytes } : null;
    case 'noshow':
      return str(raw.id) && uint(raw.sessionId, 0xffffffff) && oneOf(raw.why, ['absent', 'unreached', 'full', 'silent'] as const)
        ? { t: 'noshow', proc: p, id: raw.id, sessionId: raw.sessionId, why: raw.why }
        : null;
    case 'progress':
      return uint(raw.sessionId, 0xffffffff) && uint(raw.step, 0xffffffff)
        ? { t: 'progress', proc: p, sessionId: raw.sessionId, step: raw.step }
        : null;
    case 'open': {
      const listed = raw.sessions;
      if (!Array.isArray(listed) || listed.length > MAX_OPEN_LISTED) return null;
      const sessions: OpenSession[] = [];
      for (const e of listed) {
        if (!Array.isArray(e) || e.length !== 2 || !uint(e[0], 0xffffffff)) return null;
        const ids: unknown = e[1];
        if (!Array.isArray(ids) || ids.length > MAX_OPEN_MEMBERS || !ids.every(str)) return null;
        sessions.push([e[0], ids]);
      }
      return { t: 'open', proc: p, sessions };
    }
    case 'links': {
      const listed = raw.pairs;
      if (!Array.isArray(listed) || listed.length > MAX_LINKS_LISTED) return null;
      const pairs: LinkedPair[] = [];
      for (const e of listed) {
        if (!Array.isArray(e) || e.length !== 3 || !str(e[0]) || !str(e[1]) || e[0] === e[1] || !uint(e[2], MAX_OPEN_LISTED) || e[2] < 1)
          return null;
        pairs.push([e[0], e[1], e[2]]);
      }
      return { t: 'links', proc: p, pairs };
    }
    default:
      return null;
  }
}

/** Parses one Redis message with `parse`; null for anything too long, not JSON, or not of the shape. */
export function decode<T>(message: string, parse: (raw: unknown) => T | null): T | null {
  if (message.length > MAX_CLUSTER_MESSAGE_BYTES) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(message);
  } catch {
    return null;
  }
  return parse(raw);
}

/**
 * The first byte of a message with bytes: a JSON text starts with "{". Then a
 * u32 (little-endian) length of the JSON header, the header, and the bytes,
 * raw: logits as base64 in JSON cost 3.7 × the CPU (both ends) for a
 * 49 152-token vocabulary and passed a quarter as many a second
 * (bench/cluster-bus.ts).
 */
const WITH_BYTES = 0;
const HEADER_AT = 5;

/** A message as published: JSON, or a JSON header and raw bytes (a forwarded step:logits, frames). */
export function encodeMessage(m: BusMessage | InboxMessage): string | Buffer {
  let bytes: Uint8Array | undefined;
  let head: unknown = m;
  if (m.t === 'frame') {
    const { data, ...rest } = m;
    bytes = data;
    head = rest;
  } else if (m.t === 'report' && m.bytes !== undefined) {
    const { bytes: b, ...rest } = m;
    bytes = b;
    head = rest;
  }
  if (bytes === undefined) return JSON.stringify(head);
  const json = Buffer.from(JSON.stringify(head));
  const out = Buffer.allocUnsafe(HEADER_AT + json.byteLength + bytes.byteLength);
  out[0] = WITH_BYTES;
  out.writeUInt32LE(json.byteLength, 1);
  json.copy(out, HEADER_AT);
  out.set(bytes, HEADER_AT + json.byteLength);
  return out;
}

/** Parses one inbox message as Redis delivered it (bytes); null for anything too long, cut short, or not of the shape. */
export function decodeInbox(message: Buffer): InboxMessage | null {
  if (message.byteLength > MAX_CLUSTER_MESSAGE_BYTES) return null;
  if (message[0] !== WITH_BYTES) return decode(message.toString('utf8'), (raw) => parseInboxMessage(raw));
  if (message.byteLength < HEADER_AT) return null;
  const length = message.readUInt32LE(1);
  if (length > message.byteLength - HEADER_AT) return null;
  const bytes = message.subarray(HEADER_AT + length);
  return decode(message.subarray(HEADER_AT, HEADER_AT + length).toString('utf8'), (raw) => parseInboxMessage(raw, bytes));
}

/** Float32 logits as bytes of their own (a forwarded step:logits). */
export function floatBytes(f: Float32Array): Uint8Array {
  return new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
}

/** Bytes as an ArrayBuffer of their own (what parseLogits takes; a Buffer may share a pool). */
export function ownArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

/** Session ids carry the number of the server that coordinates them: no lookup is needed to route a report. */
export const SESSIONS_PER_PROC = 0x10000;

export function procOfSession(sessionId: number): number {
  return Math.floor(sessionId / SESSIONS_PER_PROC);
}

/**
 * The session a data-channel message (a frame chunk or a fan-out want) names,
 * from its header (both keep it at byte 8), or null for anything else: routes
 * a volunteer's messages for a server replica to the server of that session.
 */
export function sessionOfMessage(msg: Uint8Array): number | null {
  if (msg.byteLength < 12) return null;
  const v = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
  const magic = v.getUint32(0, true);
  return magic === FRAME_MAGIC || magic === WANT_MAGIC ? v.getUint32(8, true) : null;
}
