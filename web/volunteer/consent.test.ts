import { describe, expect, it } from 'vitest';
import { type ConsentClick, type ConsentFacts, consentRefusal, entryShown, MIN_HOLD_MS, MIN_SHOWN_MS } from './consent.js';

const SHOWN_AT = 1_000;
/** A visible, full-size page whose consent box has been on screen long enough. */
const OK: ConsentFacts = {
  pageVisible: true,
  viewportPx: { width: 300, height: 80 },
  shownSinceMs: SHOWN_AT,
  nowMs: SHOWN_AT + MIN_SHOWN_MS,
  framed: true,
  visibilityKnown: true,
};
const REAL_CLICK = { isTrusted: true, userActivation: true };

const code = (facts: Partial<ConsentFacts>, click?: ConsentClick) => consentRefusal({ ...OK, ...facts }, click)?.code ?? null;

describe('consentRefusal', () => {
  it('accepts a trusted click with user activation on a visible, big enough box shown long enough', () => {
    expect(code({}, REAL_CLICK)).toBeNull();
    expect(code({})).toBeNull();
  });

  it('refuses a click a script made (dispatchEvent, element.click())', () => {
    expect(code({}, { isTrusted: false, userActivation: true })).toBe('ERR_UNTRUSTED_CLICK');
    expect(code({}, { isTrusted: false, userActivation: null })).toBe('ERR_UNTRUSTED_CLICK');
  });

  it('refuses a click without user activation, and trusts the click alone where the browser does not say', () => {
    expect(code({}, { isTrusted: true, userActivation: false })).toBe('ERR_NO_USER_ACTIVATION');
    expect(code({}, { isTrusted: true, userActivation: null })).toBeNull();
  });

  it('refuses a click made by a key where only a pointer counts (the widget’s consent window), and only there', () => {
    expect(code({ pointerOnly: true }, { ...REAL_CLICK, keyboard: true })).toBe('ERR_KEYBOARD_CLICK');
    expect(code({ pointerOnly: true }, { ...REAL_CLICK, keyboard: false })).toBeNull();
    expect(code({}, { ...REAL_CLICK, keyboard: true })).toBeNull();
  });

  it('in the consent window, refuses while another window is in front, and for half a second after it comes to the front', () => {
    // A window of the host's own opened over it takes the focus; closed from under the visitor's cursor, it gives the
    // focus back with the click that was meant for it.
    expect(code({ pointerOnly: true, inFrontSinceMs: null }, REAL_CLICK)).toBe('ERR_NOT_IN_FRONT');
    expect(code({ pointerOnly: true, inFrontSinceMs: SHOWN_AT + MIN_SHOWN_MS }, REAL_CLICK)).toBe('ERR_IN_FRONT_TOO_BRIEFLY');
    expect(code({ pointerOnly: true, inFrontSinceMs: SHOWN_AT + 1 }, REAL_CLICK)).toBe('ERR_IN_FRONT_TOO_BRIEFLY');
    expect(code({ pointerOnly: true, inFrontSinceMs: SHOWN_AT }, REAL_CLICK)).toBeNull();
    // Elsewhere (a page or frame with no window of its own) focus is not judged.
    expect(code({}, REAL_CLICK)).toBeNull();
  });

  it('counts a mouse click only once the mouse moved onto the button after it was shown (a page opened under a cursor clicking fast)', () => {
    const mouse = { ...REAL_CLICK, pointerType: 'mouse' };
    expect(code({ mouseMovedAtMs: null }, mouse)).toBe('ERR_MOUSE_NOT_MOVED');
    expect(code({ mouseMovedAtMs: SHOWN_AT - 1 }, mouse)).toBe('ERR_MOUSE_NOT_MOVED');
    expect(code({ mouseMovedAtMs: SHOWN_AT }, mouse)).toBeNull();
    expect(code({ mouseMovedAtMs: SHOWN_AT + 200 }, mouse)).toBeNull();
    // A touch or a pen has no hover to move; where moves are not tracked, nothing is judged.
    expect(code({ mouseMovedAtMs: null }, { ...REAL_CLICK, pointerType: 'touch' })).toBeNull();
    expect(code({ mouseMovedAtMs: null }, { ...REAL_CLICK, pointerType: 'pen' })).toBeNull();
    expect(code({}, mouse)).toBeNull();
    expect(consentRefusal({ ...OK, mouseMovedAtMs: null }, mouse)?.message).toContain('move the mouse onto the button');
  });

  it('counts a touch or a pen only when pressed on the button once it was enabled, and held there (a page opened under a finger tapping fast)', () => {
    const enabledAt = SHOWN_AT + MIN_SHOWN_MS;
    for (const pointerType of ['touch', 'pen']) {
      const tap = { ...REAL_CLICK, pointerType };
      const press = (beganAtMs: number, heldMs: number) => ({ nowMs: beganAtMs + heldMs, press: { beganAtMs, heldMs } });
      expect(code({ press: null }, tap)).toBe('ERR_PRESS_TOO_SHORT');
      expect(code(press(enabledAt + 300, 80), tap)).toBe('ERR_PRESS_TOO_SHORT');
      expect(code(press(enabledAt, MIN_HOLD_MS - 1), tap)).toBe('ERR_PRESS_TOO_SHORT');
      // Begun before the button was enabled (while the page appeared under the finger), however long it is held.
      expect(code(press(enabledAt - 1, 2 * MIN_HOLD_MS), tap)).toBe('ERR_PRESS_TOO_SHORT');
      expect(code(press(enabledAt, MIN_HOLD_MS), tap)).toBeNull();
      // Where presses are not tracked, nothing is judged.
      expect(code({}, tap)).toBeNull();
    }
    // A mouse's click is judged by its move, never by how long it was held.
    expect(code({ press: null, mouseMovedAtMs: SHOWN_AT }, { ...REAL_CLICK, pointerType: 'mouse' })).toBeNull();
    expect(consentRefusal({ ...OK, press: null }, { ...REAL_CLICK, pointerType: 'touch' })?.message).toContain('hold it');
  });

  it('refuses while the page is hidden (a background tab)', () => {
    expect(code({ pageVisible: false }, REAL_CLICK)).toBe('ERR_PAGE_HIDDEN');
  });

  it('refuses a frame under 100×60 px, and names its size', () => {
    expect(code({ viewportPx: { width: 1, height: 1 } }, REAL_CLICK)).toBe('ERR_FRAME_TOO_SMALL');
    expect(code({ viewportPx: { width: 99, height: 80 } })).toBe('ERR_FRAME_TOO_SMALL');
    expect(code({ viewportPx: { width: 300, height: 59 } })).toBe('ERR_FRAME_TOO_SMALL');
    expect(code({ viewportPx: { width: 100, height: 60 } })).toBeNull();
    expect(consentRefusal({ ...OK, viewportPx: { width: 1, height: 1 } })?.message).toContain('1×1 px');
  });

  it('refuses a box that is not shown, or was shown only just now', () => {
    expect(code({ shownSinceMs: null }, REAL_CLICK)).toBe('ERR_NOT_SHOWN');
    expect(code({ nowMs: SHOWN_AT + MIN_SHOWN_MS - 1 }, REAL_CLICK)).toBe('ERR_SHOWN_TOO_BRIEFLY');
    expect(code({ nowMs: SHOWN_AT }, REAL_CLICK)).toBe('ERR_SHOWN_TOO_BRIEFLY');
  });

  it('refuses a framed button where the browser cannot tell whether the page around the frame hides it (no IntersectionObserver v2: a transparent or covered frame looks shown), and only then', () => {
    // A host page's frame at opacity 0 under its own button, as Firefox or Safari would measure it: geometry only.
    expect(code({ framed: true, visibilityKnown: false }, REAL_CLICK)).toBe('ERR_VISIBILITY_UNKNOWN');
    expect(code({ framed: true, visibilityKnown: false })).toBe('ERR_VISIBILITY_UNKNOWN');
    // The swarm's own page in a tab of its own: no other page can cover it.
    expect(code({ framed: false, visibilityKnown: false }, REAL_CLICK)).toBeNull();
    // Chromium in a frame: IntersectionObserver v2 says what it sees.
    expect(code({ framed: true, visibilityKnown: true }, REAL_CLICK)).toBeNull();
    // A script's click is still named as such first.
    expect(code({ framed: true, visibilityKnown: false }, { isTrusted: false, userActivation: true })).toBe('ERR_UNTRUSTED_CLICK');
  });
});

describe('entryShown', () => {
  it('needs the box (almost) wholly in view', () => {
    expect(entryShown({ isIntersecting: true, intersectionRatio: 1 })).toBe(true);
    expect(entryShown({ isIntersecting: true, intersectionRatio: 0.96 })).toBe(true);
    expect(entryShown({ isIntersecting: true, intersectionRatio: 0.5 })).toBe(false);
    expect(entryShown({ isIntersecting: false, intersectionRatio: 0 })).toBe(false);
  });

  it("takes IntersectionObserver v2's word on occlusion, opacity and filters where the browser gives it", () => {
    expect(entryShown({ isIntersecting: true, intersectionRatio: 1, isVisible: false })).toBe(false);
    expect(entryShown({ isIntersecting: true, intersectionRatio: 1, isVisible: true })).toBe(true);
    expect(entryShown({ isIntersecting: true, intersectionRatio: 0.2, isVisible: true })).toBe(false);
  });
});
