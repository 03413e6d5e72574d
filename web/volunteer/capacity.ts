import type { Backend, VolunteerCapacity } from '../../shared/protocol/messages.js';

/** navigator.deviceMemory and the adapter's limits as far as this browser tells them (the server clamps and decides). */
interface MemoryNavigator {
  readonly deviceMemory?: number;
  readonly gpu?: {
    requestAdapter(): Promise<{ readonly limits: { readonly maxBufferSize: number; readonly maxStorageBufferBindingSize: number } } | null>;
  };
}

/**
 * What this tab reports it can hold, in its hello: the machine's memory
 * (deviceMemory, which Chromium rounds and caps at 8 GiB; absent in Firefox
 * and Safari) and, on WebGPU, the adapter's buffer limits. Its speed is never
 * reported: the server measures it at the challenge.
 */
export async function browserCapacity(backend: Backend): Promise<VolunteerCapacity> {
  const nav = globalThis.navigator as MemoryNavigator | undefined;
  const gib = nav?.deviceMemory;
  const deviceMemoryGiB = typeof gib === 'number' && Number.isFinite(gib) && gib > 0 ? gib : null;
  let limits: { maxBufferSize: number; maxStorageBufferBindingSize: number } | null = null;
  if (backend === 'webgpu') limits = (await nav?.gpu?.requestAdapter().catch(() => null))?.limits ?? null;
  const whole = (n: number | undefined) => (typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : null);
  return {
    deviceMemoryGiB,
    maxBufferBytes: whole(limits?.maxBufferSize),
    maxStorageBindingBytes: whole(limits?.maxStorageBufferBindingSize),
  };
}
