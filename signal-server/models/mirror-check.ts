/**
 * WEIGHTS_URL asked once at start, as a volunteer's page would ask it: a range request for the first bytes of the
 * model folder's weights file, from the swarm's origin. A mirror that is down, lacks the file, ignores ranges or
 * hides Content-Range from scripts fails every volunteer's load; before this check the server's log showed only
 * volunteers joining and leaving.
 */

import { fetchFailure } from '../http/fetch-failure.js';

/** How long the mirror has to answer. */
export const MIRROR_CHECK_TIMEOUT_MS = 10_000;

/** What a volunteer's page would refuse in `folderUrl`'s answer for `file`, or null when it would load from it. */
export async function mirrorProblem(folderUrl: string, file: string, origin: string, timeoutMs = MIRROR_CHECK_TIMEOUT_MS): Promise<string | null> {
  const url = new URL(file, folderUrl).href;
  const json = file.endsWith('.json');
  let res: Response;
  try {
    res = await fetch(url, {
      headers: { origin, ...(json ? {} : { range: 'bytes=0-7' }) },
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (e) {
    const why = fetchFailure(e, timeoutMs);
    return `${url} cannot be reached (${why})`;
  }
  await res.body?.cancel().catch(() => {});
  const allowed = res.headers.get('access-control-allow-origin');
  if (json ? res.status !== 200 : res.status !== 206) {
    if (!res.ok) return `${url} answered HTTP ${res.status}`;
    return `${url} answered a range request with HTTP ${res.status}: the server must support range requests`;
  }
  if (allowed === null) return `${url} sends no Access-Control-Allow-Origin: the swarm's pages cannot read it`;
  if (allowed !== '*' && allowed !== origin) return `${url} lets only pages of ${allowed} read it (this server is ${origin})`;
  if (!json) {
    const exposed = (res.headers.get('access-control-expose-headers') ?? '').split(',').map((h) => h.trim().toLowerCase());
    if (!exposed.includes('content-range') && !exposed.includes('*')) {
      return `${url} hides Content-Range from scripts: a cross-origin server must list it in Access-Control-Expose-Headers`;
    }
  }
  return null;
}
