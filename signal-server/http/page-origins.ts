/**
 * Which web pages may connect as volunteers. A browser names the page that
 * opens a WebSocket in its Origin header, and no page can change it; a web
 * page of another site could otherwise run the volunteer's code (it is open
 * source, and the model files answer any origin) and make its visitors
 * volunteer without the swarm's consent (the consent box, the widget's
 * consent window and the pause when hidden all live in the swarm's own
 * pages), each visitor a client of its own address.
 *
 * Allowed: the origins ORIGINS lists (the server's public ones), any with
 * `*`, a page whose host is an IP address or `localhost` and is the host the
 * browser asked for (the Host header, or a trusted proxy's
 * X-Forwarded-Host), and connections without an Origin (not a browser page:
 * Node volunteers, scripts). A page reached by a name is let in only when
 * ORIGINS lists it: the Host header names whatever name the browser used,
 * and any name can be pointed at the server (DNS rebinding: a hostile page's
 * own name re-pointed at the swarm's address passed a Host comparison, as a
 * red-team pass showed), while no hostile page can be served from the
 * swarm's own IP address or from the visitor's localhost.
 */
import { isIP } from 'node:net';

/** ORIGINS's value meaning any origin. */
export const ANY_ORIGIN = '*';

export class PageOrigins {
  private readonly listed: ReadonlySet<string>;
  private readonly any: boolean;

  /**
   * @param entries origins (`https://swarm.example`, `http://localhost:5173`) or `*`
   * @throws RangeError naming an entry that is not an http(s) origin
   */
  constructor(entries: readonly string[]) {
    const listed = new Set<string>();
    let any = false;
    for (const raw of entries) {
      const entry = raw.trim();
      if (entry === ANY_ORIGIN) {
        any = true;
        continue;
      }
      let u: URL | null = null;
      try {
        u = new URL(entry);
      } catch {
        u = null;
      }
      // An origin is a scheme, a host and a port: a path, query or credentials mean something else was meant.
      if (
        u === null ||
        (u.protocol !== 'http:' && u.protocol !== 'https:') ||
        u.pathname !== '/' ||
        u.search !== '' ||
        u.hash !== '' ||
        u.username !== '' ||
        u.password !== '' ||
        /[?#*]/.test(entry)
      )
        throw new RangeError(
          `"${entry}" is not an origin (scheme://host[:port], http or https, nothing after it; no wildcards: list each origin, or * alone for any)`,
        );
      listed.add(withoutTrailingDot(u).origin);
    }
    this.listed = listed;
    this.any = any;
  }

  /**
   * Why a page of `origin` may not connect as a volunteer to a server the
   * browser asked for as `host` (the Host header, or a trusted proxy's
   * X-Forwarded-Host), or null when it may. `origin` undefined: not a browser.
   */
  refusal(origin: string | undefined, host: string | undefined): string | null {
    if (origin === undefined || this.any) return null;
    let page: URL;
    try {
      page = new URL(origin);
    } catch {
      return `the page's origin ${JSON.stringify(origin.slice(0, 100))} is not a URL`;
    }
    if (page.protocol !== 'http:' && page.protocol !== 'https:')
      return `a page of ${JSON.stringify(origin.slice(0, 100))} cannot volunteer`;
    if (this.listed.has(withoutTrailingDot(page).origin)) return null;
    if (isAddressOrLocalhost(page.hostname)) {
      if (host !== undefined && sameHost(page, host)) return null;
      const seen = host === undefined ? 'no host' : JSON.stringify(host.slice(0, 100));
      return `a page of ${page.origin} may not volunteer here: the browser asked for ${seen} (Host, or a trusted proxy's X-Forwarded-Host), not for that address; list the origin in ORIGINS`;
    }
    if (this.listed.size === 0)
      return `a page of ${page.origin} may not volunteer here: name this server's public origin in ORIGINS (a server reached by a name cannot tell its own from the name in the browser's Host header: any name can be pointed at it)`;
    return `a page of ${page.origin} may not volunteer here: only ${[...this.listed].join(', ')} (ORIGINS) and pages reached by this server's address may`;
  }
}

/** The URL with one trailing dot of its host name dropped (`swarm.example.` is `swarm.example`). */
function withoutTrailingDot(u: URL): URL {
  if (!u.hostname.endsWith('.')) return u;
  const v = new URL(u.href);
  v.hostname = u.hostname.slice(0, -1);
  return v;
}

/**
 * An IP address (IPv6 in brackets, as URLs write it), `localhost` or a name under it (browsers resolve `*.localhost`
 * to loopback themselves): no hostile page can be served from one, as no name of the attacker's can become one.
 */
function isAddressOrLocalhost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').replace(/\.$/, '');
  return isIP(h) !== 0 || h === 'localhost' || h.endsWith('.localhost');
}

/** Whether `host` (a Host header: name or address, maybe a port) names the page's host and port. */
function sameHost(page: URL, host: string): boolean {
  // One value only (a proxy's list of hosts: the first is the client's), without spaces.
  const first = host.split(',')[0]?.trim() ?? '';
  if (first === '' || /[/\s@?#]/.test(first)) return false;
  try {
    // Read with the page's scheme, so that a default port written or left out compares equal.
    return new URL(`${page.protocol}//${first}`).host === page.host;
  } catch {
    return false;
  }
}
