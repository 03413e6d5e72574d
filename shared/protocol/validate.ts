/**
 * Parsers for every inbound message: unknown in, a typed value or a reason out.
 * Socket handlers call these and drop what fails, with a logged reason.
 */

import type { HandshakeAuth, SignalOut, StageReady, VolunteerHello } from './messages.js';
import { PROTOCOL_VERSION } from './version.js';

export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: string };

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const bad = <T>(reason: string): Parsed<T> => ({ ok: false, reason });

/** Longest string field accepted from a peer (ids, adapter names, model ids). */
export const MAX_STRING = 256;
/** Largest signalling payload (an SDP with many candidates stays far below). */
export const MAX_SIGNAL_BYTES = 16 * 1024;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function shortString(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && v.length <= MAX_STRING;
}

export function parseHandshake(raw: unknown): Parsed<HandshakeAuth> {
  if (!isObject(raw)) return bad('handshake auth must be an object');
  if (raw.protocol !== PROTOCOL_VERSION) return bad(`protocol ${JSON.stringify(raw.protocol)} is not ${PROTOCOL_VERSION}`);
  if (raw.role !== 'volunteer' && raw.role !== 'requester') return bad('role must be volunteer or requester');
  return ok({ protocol: PROTOCOL_VERSION, role: raw.role });
}

export function parseHello(raw: unknown): Parsed<VolunteerHello> {
  if (!isObject(raw)) return bad('hello must be an object');
  if (raw.backend !== 'wasm' && raw.backend !== 'webgpu') return bad('backend must be wasm or webgpu');
  if (raw.adapter !== null && !shortString(raw.adapter)) return bad(`adapter must be null or a string of at most ${MAX_STRING} characters`);
  return ok({ backend: raw.backend, adapter: raw.adapter });
}

export function parseReady(raw: unknown): Parsed<StageReady> {
  if (!isObject(raw)) return bad('ready must be an object');
  if (!shortString(raw.modelId)) return bad('modelId must be a short string');
  if (typeof raw.stage !== 'number' || !Number.isInteger(raw.stage) || raw.stage < 0 || raw.stage > 4096)
    return bad('stage must be an integer in [0, 4096]');
  if (typeof raw.stepMs !== 'number' || !Number.isFinite(raw.stepMs) || raw.stepMs < 0 || raw.stepMs > 600_000)
    return bad('stepMs must be a number of ms in [0, 600000]');
  return ok({ modelId: raw.modelId, stage: raw.stage, stepMs: raw.stepMs });
}

export function parseSignal(raw: unknown): Parsed<SignalOut> {
  if (!isObject(raw)) return bad('signal must be an object');
  if (!shortString(raw.to)) return bad('signal.to must be a peer id');
  if (raw.data === undefined) return bad('signal.data is missing');
  let size: number;
  try {
    size = JSON.stringify(raw.data).length;
  } catch {
    return bad('signal.data is not serialisable');
  }
  if (size > MAX_SIGNAL_BYTES) return bad(`signal.data is ${size} bytes, over ${MAX_SIGNAL_BYTES}`);
  return ok({ to: raw.to, data: raw.data });
}
