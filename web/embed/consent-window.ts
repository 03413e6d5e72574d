/**
 * Consent for the widget's frame is given in a window of the swarm's own
 * (/consent), opened by the frame's button: a page that frames /embed can make
 * the frame invisible in ways the frame cannot see (a CSS mask, a zoom that
 * shrinks it to a speck) or steer keys into it (Tab and Space while the
 * visitor types in its form), but it cannot hide, shrink, cover or type into a
 * window of another origin. That window's own button, clicked while it is on
 * screen, is the consent; it tells the frame that opened it by postMessage,
 * to that frame's origin (the swarm's) only, and the frame takes it only from
 * the window it opened, with the nonce it gave it.
 */
import { EMBED_SOURCE } from './messages.js';

/** The message the consent window sends its opener once the visitor clicked its button. */
export interface ConsentGiven {
  readonly source: typeof EMBED_SOURCE;
  readonly type: 'consent';
  readonly nonce: string;
}

/** A nonce is a UUID: the frame makes one for each window it opens. */
const NONCE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isNonce(v: unknown): v is string {
  return typeof v === 'string' && NONCE.test(v);
}

export function isConsentGiven(v: unknown, nonce: string): v is ConsentGiven {
  if (typeof v !== 'object' || v === null) return false;
  const m = v as Record<string, unknown>;
  return m.source === EMBED_SOURCE && m.type === 'consent' && m.nonce === nonce;
}

/** The most characters of the asking site's origin shown (an origin is short; a longer one is cut, never trusted). */
const MAX_SITE_CHARS = 200;

/** What the consent window says and sends, from its URL (set by the frame that opened it). */
export interface ConsentWindowParams {
  readonly nonce: string;
  /** The origin of the site whose page frames the widget, as the frame's browser reported it; null when unknown. */
  readonly site: string | null;
  readonly share: string | null;
  readonly model: string | null;
  readonly backend: string | null;
}

/** The consent window's parameters, or why its URL is not one a frame made. */
export function consentWindowParams(search: string): ConsentWindowParams | string {
  const q = new URLSearchParams(search);
  const nonce = q.get('nonce');
  if (!isNonce(nonce)) return 'this window was not opened by a webswarm widget (its link has no valid nonce)';
  const site = q.get('site');
  let origin: string | null = null;
  if (site !== null && site.length <= MAX_SITE_CHARS) {
    try {
      const u = new URL(site);
      if (u.protocol === 'https:' || u.protocol === 'http:') origin = u.origin;
    } catch {
      origin = null;
    }
  }
  return { nonce, site: origin, share: q.get('share'), model: q.get('model'), backend: q.get('backend') };
}

/** The consent window's URL, for a frame at `here` (its own location) framed by `site`. */
export function consentWindowUrl(here: Location | URL, nonce: string, site: string | null): string {
  const from = new URLSearchParams(here.search);
  const q = new URLSearchParams({ nonce });
  if (site !== null) q.set('site', site);
  for (const k of ['share', 'model', 'backend']) {
    const v = from.get(k);
    if (v !== null) q.set(k, v);
  }
  return new URL(`/consent/?${q}`, here.href).toString();
}

/** The origin of the site framing this document (the top one), as far as the browser tells, or null. */
export function framingSite(): string | null {
  const ancestors = location.ancestorOrigins;
  if (ancestors !== undefined && ancestors.length > 0) return ancestors[ancestors.length - 1] ?? null;
  try {
    return document.referrer === '' ? null : new URL(document.referrer).origin;
  } catch {
    return null;
  }
}
