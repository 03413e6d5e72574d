import { type MouseEvent, type PointerEvent as ReactPointerEvent, useCallback, useEffect, useRef, useState } from 'react';
import {
  type ConsentClick,
  type ConsentFacts,
  type ConsentRefusal,
  consentRefusal,
  entryShown,
  MIN_SHOWN_MS,
  MIN_SHOWN_RATIO,
} from './consent.js';

/** IntersectionObserver v2 (Chromium): reports occlusion, opacity and filters as `isVisible`. Not in TypeScript's DOM types yet. */
interface VisibilityObserverInit extends IntersectionObserverInit {
  readonly trackVisibility: boolean;
  /** At least 100 ms when trackVisibility is on (the browser throws otherwise). */
  readonly delay: number;
}
const VISIBILITY_DELAY_MS = 100;

/**
 * Observes `el` with IntersectionObserver v2 (occlusion, opacity and filters where the browser tells), calling `on`
 * with the latest entry; the consent button's box and the widget frame's content after consent both use it.
 */
export function observeShown(el: Element, on: (e: IntersectionObserverEntry) => void): () => void {
  const options: VisibilityObserverInit = { threshold: [0, MIN_SHOWN_RATIO, 1], trackVisibility: true, delay: VISIBILITY_DELAY_MS };
  const io = new IntersectionObserver((entries) => {
    const e = entries[entries.length - 1];
    if (e !== undefined) on(e);
  }, options);
  io.observe(el);
  return () => io.disconnect();
}

/** Whether a pointer event happened over the element's box. */
function over(el: Element, e: { readonly clientX: number; readonly clientY: number }): boolean {
  const r = el.getBoundingClientRect();
  return e.clientX >= r.left && e.clientX <= r.right && e.clientY >= r.top && e.clientY <= r.bottom;
}

/** How long after a touch or pen press ended on the button a click is the one the browser makes of it. */
const PRESS_CLICK_MS = 1_000;

/**
 * Gathers the facts consent.ts judges, for the element that holds the
 * consent button and what it says: whether it has been on screen long enough,
 * the page's visibility and the viewport's size; and judges the click.
 * `ref` goes on that element (not on the button: a disabled button is drawn
 * half-transparent, which IntersectionObserver v2 would count as not visible).
 */
export function useConsent(onConsent: () => void, pointerOnly = false) {
  const [box, setBox] = useState<HTMLElement | null>(null);
  const [shownSinceMs, setShownSince] = useState<number | null>(null);
  /** Whether the observer has reported at all: until then "not shown" only means "not measured yet". */
  const [observed, setObserved] = useState(false);
  const [clickRefusal, setClickRefusal] = useState<ConsentRefusal | null>(null);
  /** Whether the observer's entries carry IntersectionObserver v2's isVisible (occlusion, opacity, filters). */
  const [visibilityKnown, setVisibilityKnown] = useState(false);
  const [, rerender] = useState(0);
  /** When a mouse last moved over the consent box (a ref: read at the click, no render for each move). */
  const mouseMovedAt = useRef<number | null>(null);
  /** The touch or pen press begun on the consent box: its pointer and when (a ref, read when it ends). */
  const press = useRef<{ readonly id: number; readonly at: number } | null>(null);
  /** When a touch or pen press last ended on the button, judged there: the click the browser makes of it is not judged again. */
  const pressEndedAt = useRef<number | null>(null);
  /** pointerOnly (the consent window): since when it has had the focus, null while it has not. */
  const [inFrontSinceMs, setInFrontSince] = useState<number | null>(() => (document.hasFocus() ? performance.now() : null));

  useEffect(() => {
    if (box === null) return;
    // No observer at all (very old browsers): the geometry cannot be checked, only the rest.
    if (typeof IntersectionObserver === 'undefined') {
      setShownSince(performance.now());
      setObserved(true);
      return;
    }
    return observeShown(box, (e) => {
      const shown = entryShown(e);
      setVisibilityKnown(typeof (e as { isVisible?: unknown }).isVisible === 'boolean');
      setShownSince((since) => (shown ? (since ?? e.time) : null));
      setObserved(true);
    });
  }, [box]);

  useEffect(() => {
    if (!pointerOnly) return;
    const front = () => setInFrontSince(performance.now());
    const behind = () => setInFrontSince(null);
    window.addEventListener('focus', front);
    window.addEventListener('blur', behind);
    return () => {
      window.removeEventListener('focus', front);
      window.removeEventListener('blur', behind);
    };
  }, [pointerOnly]);

  // A mouse's move over the box, and a touch or pen press begun on it. On the document: a disabled button gets no
  // mouse events of its own.
  useEffect(() => {
    if (box === null) return;
    const moved = (e: PointerEvent) => {
      if (e.pointerType === 'mouse' && over(box, e)) mouseMovedAt.current = e.timeStamp;
    };
    const down = (e: PointerEvent) => {
      if (e.pointerType !== 'mouse') press.current = over(box, e) ? { id: e.pointerId, at: e.timeStamp } : null;
    };
    const cancelled = (e: PointerEvent) => {
      if (press.current?.id === e.pointerId) press.current = null;
    };
    const options = { capture: true, passive: true } as const;
    document.addEventListener('pointermove', moved, options);
    document.addEventListener('pointerdown', down, options);
    document.addEventListener('pointercancel', cancelled, options);
    return () => {
      document.removeEventListener('pointermove', moved, options);
      document.removeEventListener('pointerdown', down, options);
      document.removeEventListener('pointercancel', cancelled, options);
    };
  }, [box]);

  // The other facts change without a render: the page hidden or shown, the frame resized.
  useEffect(() => {
    const onChange = () => rerender((n) => n + 1);
    document.addEventListener('visibilitychange', onChange);
    window.addEventListener('resize', onChange);
    return () => {
      document.removeEventListener('visibilitychange', onChange);
      window.removeEventListener('resize', onChange);
    };
  }, []);

  const facts = (): ConsentFacts => ({
    pageVisible: document.visibilityState === 'visible',
    viewportPx: { width: window.innerWidth, height: window.innerHeight },
    shownSinceMs,
    nowMs: performance.now(),
    framed: window.self !== window.top,
    visibilityKnown,
    pointerOnly,
    ...(pointerOnly ? { inFrontSinceMs } : {}),
  });
  const refusal = consentRefusal(facts());

  // Enable the button once it has been shown (and, in the consent window, in front) for MIN_SHOWN_MS.
  const since =
    refusal?.code === 'ERR_SHOWN_TOO_BRIEFLY' ? shownSinceMs : refusal?.code === 'ERR_IN_FRONT_TOO_BRIEFLY' ? inFrontSinceMs : null;
  const waitMs = since !== null ? MIN_SHOWN_MS - (performance.now() - since) : null;
  useEffect(() => {
    if (waitMs === null) return;
    const t = setTimeout(() => rerender((n) => n + 1), Math.max(0, waitMs) + 10);
    return () => clearTimeout(t);
  }, [waitMs]);

  const judge = (f: ConsentFacts, click: ConsentClick) => {
    const r = consentRefusal(f, click);
    setClickRefusal(r);
    if (r === null) onConsent();
  };
  const onClick = (e: MouseEvent<HTMLElement>) => {
    const pointerType = (e.nativeEvent as Partial<PointerEvent>).pointerType;
    // A touch's or a pen's click was judged when its press ended (onPointerUp), where how long it was held is known.
    const ended = pressEndedAt.current;
    if (pointerType === 'touch' || pointerType === 'pen' || (ended !== null && e.timeStamp - ended < PRESS_CLICK_MS)) return;
    judge(
      { ...facts(), mouseMovedAtMs: mouseMovedAt.current },
      {
        isTrusted: e.nativeEvent.isTrusted,
        userActivation: navigator.userActivation?.isActive ?? null,
        keyboard: e.detail === 0,
        ...(typeof pointerType === 'string' ? { pointerType } : {}),
      },
    );
  };
  // A touch or pen press is judged as it ends: a long press makes no click in some browsers (a context menu instead).
  const onPointerUp = (e: ReactPointerEvent<HTMLElement>) => {
    if (e.pointerType === 'mouse' || box === null) return;
    const began = press.current;
    press.current = null;
    pressEndedAt.current = e.timeStamp;
    const onButton = began !== null && began.id === e.pointerId && over(box, e);
    judge(
      { ...facts(), press: onButton ? { beganAtMs: began.at, heldMs: e.timeStamp - began.at } : null },
      { isTrusted: e.nativeEvent.isTrusted, userActivation: navigator.userActivation?.isActive ?? null, pointerType: e.pointerType },
    );
  };
  const ref = useCallback((el: HTMLElement | null) => setBox(el), []);
  // Nothing to tell the visitor in the first half second (or before the first measurement).
  const settling =
    refusal?.code === 'ERR_SHOWN_TOO_BRIEFLY' ||
    refusal?.code === 'ERR_IN_FRONT_TOO_BRIEFLY' ||
    ((refusal?.code === 'ERR_NOT_SHOWN' || refusal?.code === 'ERR_VISIBILITY_UNKNOWN') && !observed);
  return { ref, refusal, settling, clickRefusal, onClick, onPointerUp };
}
