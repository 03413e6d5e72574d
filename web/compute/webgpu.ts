/** The GPU adapter's description, or null when this browser gives none. */
export async function webgpuAdapter(): Promise<string | null> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (gpu === undefined) return null;
  const adapter = await gpu.requestAdapter();
  if (adapter === null) return null;
  const i = adapter.info;
  return [i.vendor, i.architecture, i.device, i.description].filter((s) => s !== '').join(' ') || 'unknown adapter';
}
