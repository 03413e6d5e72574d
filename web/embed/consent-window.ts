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
import { isModelIdParam } from '../volunteer/page-params.js';
import { EMBED_SOURCE } from './messages.js';

/** The message the consent window sends its opener once the visitor clicked its button. */
export interface ConsentGiven {
  readonly source: typeof EMBED_SOURCE;
  readonly type: 'consent';
  readonly nonce: string;
  /**
   * The consent window's devicePixelRatio: the screen's scale, as a window the host page cannot zoom sees it. The
   * frame's own is that times every CSS zoom the host page puts on it (Chromium carries it into the frame), so a
   * frame far smaller than this is one the host shrank to a speck (MIN_SHOWN_SCALE).
   */
  readonly scale: number;
}

/**
 * After consent, a frame drawn at less than this share of the consent window's scale (its devicePixelRatio against
 * ConsentGiven.scale) is not shown: a host page that zooms the widget to a few pixels pauses it, as one that hides
 * it. A quarter: the browser keeps a zoom per site, so the visitor's own zoom of the host page against the swarm's
 * (a host page at 50 % and the swarm's at 150 %), or a window moved from a screen of density 2 to one of 1, still
 * shows it (at a half, a review helper found honest widgets paused so).
 */
export const MIN_SHOWN_SCALE = 0.25;

/** A scale a window can have (devicePixelRatio): finite, above 0, at most 64. */
function isScale(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v) && v > 0 && v <= 64;
}

/** A nonce is a UUID: the frame makes one for each window it opens. */
const NONCE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isNonce(v: unknown): v is string {
  return typeof v === 'string' && NONCE.test(v);
}

export function isConsentGiven(v: unknown, nonce: string): v is ConsentGiven {
  if (typeof v !== 'object' || v === null) return false;
  const m = v as Record<string, unknown>;
  return m.source === EMBED_SOURCE && m.type === 'consent' && m.nonce === nonce && isScale(m.scale);
}

/** The most characters of the asking site's origin shown (an origin is short; a longer one is cut, never trusted). */
const MAX_SITE_CHARS = 200;

/** What the consent window says and sends, from its URL (set by the frame that opened it). */
export interface ConsentWindowParams {
  readonly nonce: string;
  /** The origin of the site whose page frames the widget (the top page's), as the frame's browser reported it; null when unknown. */
  readonly site: string | null;
  /** Where the widget's page is itself a frame in the site's page, that page's origin (the one that placed the widget); else null. */
  readonly via: string | null;
  /** A frame on the way whose origin the browser hides (FramingSites.hidden). */
  readonly hidden: boolean;
  readonly share: string | null;
  /** The frame pauses while hidden (its `autopause`, on unless `0`). */
  readonly autoPause: boolean;
  readonly model: string | null;
  readonly backend: string | null;
}

/** The consent window's parameters, or why its URL is not one a frame made. */
export function consentWindowParams(search: string): ConsentWindowParams | string {
  const q = new URLSearchParams(search);
  const nonce = q.get('nonce');
  if (!isNonce(nonce)) return 'this window was not opened by a webswarm widget (its link has no valid nonce)';
  const site = originOf(q.get('site'));
  const via = originOf(q.get('via'));
  // The host page chose the model (data-model): shown only when it is a plain model id, never as text of its choosing
  // (another name is left out; the frame checks it against the swarm's models before anything loads).
  const named = q.get('model');
  const model = named !== null && isModelIdParam(named) ? named : null;
  return {
    nonce,
    site,
    via: via === site ? null : via,
    hidden: q.get('hidden') === '1',
    share: q.get('share'),
    autoPause: q.get('autopause') !== '0',
    model,
    backend: q.get('backend'),
  };
}

/** An http(s) origin from a parameter, or null: never a script URL or a long text. */
function originOf(v: string | null): string | null {
  if (v === null || v.length > MAX_SITE_CHARS) return null;
  try {
    const u = new URL(v);
    return u.protocol === 'https:' || u.protocol === 'http:' ? u.origin : null;
  } catch {
    return null;
  }
}

/** The consent window's URL, for a frame at `here` (its own location) framed by `framing`'s pages. */
export function consentWindowUrl(here: Location | URL, nonce: string, framing: FramingSites | null): string {
  const from = new URLSearchParams(here.search);
  const q = new URLSearchParams({ nonce });
  if (framing?.site != null) q.set('site', framing.site);
  if (framing?.via != null) q.set('via', framing.via);
  if (framing?.hidden === true) q.set('hidden', '1');
  for (const k of ['share', 'autopause', 'model', 'backend']) {
    const v = from.get(k);
    if (v !== null) q.set(k, v);
  }
  return new URL(`/consent/?${q}`, here.href).toString();
}

/** The pages framing this document, as far as the browser tells: the top one's origin, and its parent's where that differs. */
export interface FramingSites {
  readonly site: string | null;
  readonly via: string | null;
  /**
   * A frame between the top page and this one whose origin the browser hides (it says "null": an embedder that
   * asks for no referrer, under the HTML standard's rules since 2025). The window says so rather than name only the
   * sites it knows (before, such a frame was left out, and the window named the top page as the one asking).
   */
  readonly hidden?: boolean;
}

/** FramingSites from the frame's ancestors (nearest first, as location.ancestorOrigins), else its referrer. */
export function framingSites(ancestors: readonly string[] | null, referrer: string): FramingSites {
  if (ancestors !== null && ancestors.length > 0) {
    const known = ancestors.map(originOf);
    const site = known[known.length - 1] ?? null;
    const parent = known[0] ?? null;
    const hidden = known.some((o) => o === null);
    return { site, via: parent === site ? null : parent, ...(hidden ? { hidden } : {}) };
  }
  try {
    return { site: referrer === '' ? null : new URL(referrer).origin, via: null };
  } catch {
    return { site: null, via: null };
  }
}

/** This frame's FramingSites (location.ancestorOrigins where the browser has it: Chromium, Safari). */
export function framingSite(): FramingSites {
  const a = location.ancestorOrigins;
  return framingSites(a === undefined ? null : Array.from(a), document.referrer);
}
