/**
 * The rules of consent: nothing computes until the visitor clicks the swarm's
 * own button, in the swarm's own document, while that document is on screen
 * and big enough to read. Another site that frames /embed can neither click it
 * for the visitor (a synthesised event is not trusted, a postMessage is not a
 * click) nor trick the visitor into clicking it unseen (a tiny, transparent,
 * covered or off-screen frame is refused; in a browser that cannot tell
 * whether a frame is covered or transparent, a framed button is refused and
 * the visitor sent to the swarm's own page).
 *
 * Pure: the browser facts come in (use-consent.ts gathers them), a refusal
 * with a code comes out, so every rule is unit-tested.
 */

/** The smallest viewport that can show what it asks: a frame below this is a hiding place, not a widget. */
export const MIN_VIEWPORT_PX = { width: 100, height: 60 } as const;
/** How long the button must have been on screen, unobscured, before a click counts (a frame shown just under the cursor does not). */
export const MIN_SHOWN_MS = 500;
/** How long a touch or a pen must be held on the button for its press to count (a tap in a game under the finger is shorter). */
export const MIN_HOLD_MS = 600;
/** The share of the button that must be inside the viewport. */
export const MIN_SHOWN_RATIO = 0.95;

export type ConsentRefusalCode =
  | 'ERR_PAGE_HIDDEN'
  | 'ERR_FRAME_TOO_SMALL'
  | 'ERR_NOT_SHOWN'
  | 'ERR_SHOWN_TOO_BRIEFLY'
  | 'ERR_UNTRUSTED_CLICK'
  | 'ERR_NO_USER_ACTIVATION'
  | 'ERR_KEYBOARD_CLICK'
  | 'ERR_MOUSE_NOT_MOVED'
  | 'ERR_PRESS_TOO_SHORT'
  | 'ERR_NOT_IN_FRONT'
  | 'ERR_IN_FRONT_TOO_BRIEFLY'
  | 'ERR_VISIBILITY_UNKNOWN';

export interface ConsentRefusal {
  readonly code: ConsentRefusalCode;
  /** For the visitor: why the button does not start anything yet. */
  readonly message: string;
}

/** What the page knows about itself, before any click. */
export interface ConsentFacts {
  /** document.visibilityState === 'visible'. */
  readonly pageVisible: boolean;
  /** This document's viewport (the frame's size, when framed). */
  readonly viewportPx: { readonly width: number; readonly height: number };
  /**
   * Since when (performance.now() clock) the button has been fully in the
   * viewport and, where the browser can tell (IntersectionObserver v2),
   * neither covered, transparent nor filtered; null while it is not.
   */
  readonly shownSinceMs: number | null;
  readonly nowMs: number;
  /** This document is in a frame (another page holds it: the widget). */
  readonly framed: boolean;
  /**
   * Whether the browser reports a frame's occlusion, opacity and filters
   * (IntersectionObserver v2: Chromium). Where it does not, a frame made
   * transparent or covered by the page around it looks shown by its geometry.
   */
  readonly visibilityKnown: boolean;
  /**
   * Only a pointer's click counts (the widget's consent window): keys the visitor types on another page, once its
   * window takes the focus, would reach the button (Tab, then Space), so a click the keyboard made is refused there.
   */
  readonly pointerOnly?: boolean;
  /**
   * Where it counts (the widget's consent window, a window of its own): since when (performance.now() clock) the
   * window has had the focus, null while it has not. A window the host page opens over it takes the focus; one it
   * closes from under the visitor's cursor gives it back with the click meant for it, which lands on this button.
   */
  readonly inFrontSinceMs?: number | null;
  /**
   * When (performance.now() clock) a mouse last moved over the consent box, null if it has not; undefined where not
   * tracked. A page opened under the cursor of a visitor clicking fast on another (a game) gets their next clicks
   * where they land, without a move onto its button.
   */
  readonly mouseMovedAtMs?: number | null;
  /**
   * The touch or pen press that made this click, where it began and ended on the button: when it began
   * (performance.now() clock) and how long it was held; null if it did not begin and end there; undefined where not
   * tracked. A page opened under the finger of a visitor tapping fast on another (a game) gets their next taps where
   * they land; a tap is short, a deliberate press held.
   */
  readonly press?: { readonly beganAtMs: number; readonly heldMs: number } | null;
}

/** The click itself. */
export interface ConsentClick {
  /** event.isTrusted: the browser made it from real input, not a script. */
  readonly isTrusted: boolean;
  /** navigator.userActivation.isActive, or null where the browser does not say. */
  readonly userActivation: boolean | null;
  /** Made by a key (Enter, Space: a click event's `detail` is 0), not by a pointer. */
  readonly keyboard?: boolean;
  /** The pointer that made it (PointerEvent.pointerType: 'mouse', 'pen', 'touch'), where the browser says. */
  readonly pointerType?: string;
}

/** Why the page may not start now, or null when it may; with a click, whether that click is consent. */
export function consentRefusal(facts: ConsentFacts, click?: ConsentClick): ConsentRefusal | null {
  if (click !== undefined && !click.isTrusted)
    return { code: 'ERR_UNTRUSTED_CLICK', message: 'that click came from a script, not from you' };
  if (click !== undefined && click.userActivation === false)
    return { code: 'ERR_NO_USER_ACTIVATION', message: 'the browser did not see you click this page' };
  if (click !== undefined && click.keyboard === true && facts.pointerOnly === true)
    return {
      code: 'ERR_KEYBOARD_CLICK',
      message: 'in this window, click the button with the mouse or a touch (keys typed on another page could press it)',
    };
  if (!facts.pageVisible) return { code: 'ERR_PAGE_HIDDEN', message: 'this page is not on screen' };
  const { width, height } = facts.viewportPx;
  if (width < MIN_VIEWPORT_PX.width || height < MIN_VIEWPORT_PX.height)
    return {
      code: 'ERR_FRAME_TOO_SMALL',
      message: `this frame is ${Math.round(width)}×${Math.round(height)} px, too small to show what it asks (at least ${MIN_VIEWPORT_PX.width}×${MIN_VIEWPORT_PX.height})`,
    };
  // A frame's page can hide it from the visitor (opacity 0, a cover that lets clicks through) where the browser
  // cannot tell: consent is then given on the swarm's own page, in a tab of its own, which no other page can cover.
  if (facts.framed && !facts.visibilityKnown)
    return {
      code: 'ERR_VISIBILITY_UNKNOWN',
      message: 'this browser cannot tell whether the page around this frame hides it: volunteer from the swarm’s own page',
    };
  if (facts.shownSinceMs === null) return { code: 'ERR_NOT_SHOWN', message: 'this button is covered, transparent or off screen' };
  if (facts.nowMs - facts.shownSinceMs < MIN_SHOWN_MS) return { code: 'ERR_SHOWN_TOO_BRIEFLY', message: 'take a moment to read it first' };
  // A mouse click counts once the mouse has moved onto the button since it was shown; a touch or a pen, which has
  // no hover to move, once pressed there and held (a key's click is judged above).
  if (
    click?.pointerType === 'mouse' &&
    facts.mouseMovedAtMs !== undefined &&
    (facts.mouseMovedAtMs === null || facts.mouseMovedAtMs < facts.shownSinceMs)
  )
    return {
      code: 'ERR_MOUSE_NOT_MOVED',
      message: 'move the mouse onto the button, then click (a click where this page appeared under the mouse does not count)',
    };
  if (
    (click?.pointerType === 'touch' || click?.pointerType === 'pen') &&
    facts.press !== undefined &&
    (facts.press === null || facts.press.beganAtMs < facts.shownSinceMs + MIN_SHOWN_MS || facts.press.heldMs < MIN_HOLD_MS)
  )
    return {
      code: 'ERR_PRESS_TOO_SHORT',
      message: 'press the button and hold it for a moment (a tap where this page appeared under your finger does not count)',
    };
  if (facts.inFrontSinceMs === null)
    return { code: 'ERR_NOT_IN_FRONT', message: 'another window is in front of this one: click here once, then read it' };
  if (facts.inFrontSinceMs !== undefined && facts.nowMs - facts.inFrontSinceMs < MIN_SHOWN_MS)
    return { code: 'ERR_IN_FRONT_TOO_BRIEFLY', message: 'this window came to the front just now: take a moment to read it first' };
  return null;
}

/**
 * One IntersectionObserver entry, as much as the rules need: whether the
 * button counts as shown. `isVisible` is undefined where the browser has no
 * IntersectionObserver v2; then only the geometry can be checked.
 */
export function entryShown(e: {
  readonly isIntersecting: boolean;
  readonly intersectionRatio: number;
  readonly isVisible?: boolean;
}): boolean {
  return e.isIntersecting && e.intersectionRatio >= MIN_SHOWN_RATIO && e.isVisible !== false;
}
