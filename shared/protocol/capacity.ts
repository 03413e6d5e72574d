/**
 * A volunteer's capacity report: parsed at the boundary (malformed: a named
 * reason; absurd: clamped), and turned into the memory the planner counts on.
 * The report is a claim, never trusted for more than where to put the
 * volunteer: one that claims more than it holds fails to load or to answer
 * its challenge, and is evicted as any other.
 */
import type { Backend, VolunteerCapacity } from './messages.js';

export const GIB = 2 ** 30;
/** navigator.deviceMemory where the browser does not say (Firefox, Safari). */
export const DEFAULT_DEVICE_MEMORY_GIB = 4;
/** Part of a machine's memory a tab's stage may take: the browser, the page and the rest of the machine need the remainder. */
export const TAB_SHARE = 0.5;
/** A WASM (wasm32) instance addresses at most 4 GiB. */
export const WASM_MAX_BYTES = 4 * GIB;
/** The most any volunteer is counted on for, whatever it reports: a claim can never buy it more than this. */
export const MAX_OFFER_BYTES = 64 * GIB;
/** Largest deviceMemory accepted in a report (browsers say at most 8; native clients may say more). */
export const MAX_DEVICE_MEMORY_GIB = 4096;

/** Sessions a replica keeps open at once; the coordinator never routes more to one replica (a further open is refused, not another dropped). */
export const MAX_SESSIONS_PER_REPLICA = 16;

/** A replica's session limit, as its ready may say it (StageReady.sessions): an integer in 1..MAX_SESSIONS_PER_REPLICA. */
export function isSessionLimit(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= MAX_SESSIONS_PER_REPLICA;
}

type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: string };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function bytesField(raw: Record<string, unknown>, name: string): number | null | string {
  const v = raw[name] ?? null;
  if (v === null) return null;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) return `capacity.${name} must be null or a whole number of bytes`;
  return v;
}

/** Parses the `capacity` of a hello: absent or null is unknown; anything else malformed is refused with a reason. */
export function parseCapacity(raw: unknown): Parsed<VolunteerCapacity | null> {
  if (raw === undefined || raw === null) return { ok: true, value: null };
  if (!isObject(raw)) return { ok: false, reason: 'capacity must be null or an object' };
  const gib = raw.deviceMemoryGiB ?? null;
  if (gib !== null && (typeof gib !== 'number' || !Number.isFinite(gib) || gib <= 0 || gib > MAX_DEVICE_MEMORY_GIB))
    return { ok: false, reason: `capacity.deviceMemoryGiB must be null or a number in (0, ${MAX_DEVICE_MEMORY_GIB}]` };
  const maxBufferBytes = bytesField(raw, 'maxBufferBytes');
  if (typeof maxBufferBytes === 'string') return { ok: false, reason: maxBufferBytes };
  const maxStorageBindingBytes = bytesField(raw, 'maxStorageBindingBytes');
  if (typeof maxStorageBindingBytes === 'string') return { ok: false, reason: maxStorageBindingBytes };
  return { ok: true, value: { deviceMemoryGiB: gib, maxBufferBytes, maxStorageBindingBytes } };
}

/**
 * The memory the planner counts on for a volunteer's stage: a share of its
 * machine's memory, no more than a WASM instance addresses on WASM, never more
 * than MAX_OFFER_BYTES. (WebGPU does not tell a page its GPU memory; the
 * adapter's buffer limits bound single buffers: bufferLimitBytes.)
 */
export function offeredBytes(backend: Backend, capacity: VolunteerCapacity | null | undefined): number {
  const gib = capacity?.deviceMemoryGiB ?? DEFAULT_DEVICE_MEMORY_GIB;
  let bytes = Math.floor(gib * GIB * TAB_SHARE);
  if (backend === 'wasm') bytes = Math.min(bytes, WASM_MAX_BYTES);
  return Math.min(bytes, MAX_OFFER_BYTES);
}

/** WebGPU's guaranteed maxStorageBufferBindingSize: what every adapter binds, assumed when a WebGPU volunteer does not say. */
export const WEBGPU_DEFAULT_MAX_BINDING_BYTES = 128 * 2 ** 20;
/** WebGPU's guaranteed maxBufferSize, assumed likewise. */
export const WEBGPU_DEFAULT_MAX_BUFFER_BYTES = 256 * 2 ** 20;

/**
 * The largest single buffer (a tensor as the stage graph holds it) a volunteer
 * can hold, or null when nothing but its memory bounds one. On WebGPU a tensor
 * a shader reads is one buffer bound whole as storage, so it must fit both the
 * adapter's maxBufferSize and its maxStorageBufferBindingSize (onnxruntime-web
 * asks the device for the adapter's own limits); a limit not reported is
 * WebGPU's guaranteed default. On WASM a tensor is bytes of the instance's
 * memory, which offeredBytes already bounds (4 GiB at most).
 */
export function bufferLimitBytes(backend: Backend, capacity: VolunteerCapacity | null | undefined): number | null {
  if (backend === 'wasm') return null;
  return Math.min(
    capacity?.maxBufferBytes ?? WEBGPU_DEFAULT_MAX_BUFFER_BYTES,
    capacity?.maxStorageBindingBytes ?? WEBGPU_DEFAULT_MAX_BINDING_BYTES,
    MAX_OFFER_BYTES,
  );
}
