/** Why a fetch threw, in a few words: its timeout, the system's error code (ECONNREFUSED, ENOTFOUND, …), or its message. */
export function fetchFailure(e: unknown, timeoutMs: number): string {
  if ((e as Error).name === 'TimeoutError') return `no answer in ${timeoutMs / 1000} s`;
  const code = (e as { cause?: { code?: unknown } }).cause?.code;
  return typeof code === 'string' ? code : (e as Error).message;
}
