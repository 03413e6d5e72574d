/**
 * Whether a webswarm server answers at a URL, asked before tabs are opened for it (`npm run swarm`): without it a
 * dead or wrong address came back as Playwright's navigation error, escape codes and a call log included.
 */

import { fetchFailure } from '../signal-server/http/fetch-failure.js';

/** How long the server has to answer GET /healthz. */
export const SERVER_CHECK_TIMEOUT_MS = 5_000;

export type ServerCheck = { readonly ok: true; readonly url: string } | { readonly ok: false; readonly message: string };

/** GET `<url>/healthz`: a webswarm server answers 200 with `{ status: "ok" }`. `url` comes back without a trailing slash. */
export async function checkServer(raw: string, timeoutMs = SERVER_CHECK_TIMEOUT_MS): Promise<ServerCheck> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, message: `--server must be a URL such as http://127.0.0.1:8080, got "${raw}"` };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return { ok: false, message: `--server must be an http:// or https:// URL, got "${raw}"` };
  }
  const base = url.href.replace(/\/+$/, '');
  let res: Response;
  try {
    res = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(timeoutMs), redirect: 'error' });
  } catch (e) {
    const why = fetchFailure(e, timeoutMs);
    return { ok: false, message: `no webswarm server answers at ${base} (${why}): start one with npm start, or name it with --server` };
  }
  const body: unknown = await res.json().catch(() => null);
  const status = typeof body === 'object' && body !== null ? (body as { status?: unknown }).status : undefined;
  if (res.status !== 200 || status !== 'ok') {
    return {
      ok: false,
      message: `${base} answers, but not as a webswarm server (GET /healthz answered ${res.status}, not {"status":"ok"})`,
    };
  }
  return { ok: true, url: base };
}
