import { useEffect, useState } from 'react';
import { entryShown } from '../volunteer/consent.js';
import { observeShown } from '../volunteer/use-consent.js';

/**
 * How long without an animation frame counts as not drawn: the browser stops drawing a frame its page does not
 * show (display none; Chromium throttles a hidden cross-origin frame's animation frames), and then reports no
 * intersection change either.
 */
export const NOT_DRAWN_MS = 2_000;
const CHECK_MS = 500;

/**
 * Whether `el` (the widget frame's content) is on screen, uncovered and opaque as far as the browser tells
 * (consent.ts entryShown), being drawn at all, and drawn at `minScale` or more (the frame's devicePixelRatio, which
 * a CSS zoom on it lowers); null before the first measurement or without an element. The widget computes only while
 * its visitor can see it and its Pause and Stop: a host page that hides the frame after consent (display none,
 * opacity 0, a cover, off screen, a zoom to a speck) pauses it.
 */
export function useFrameShown(el: HTMLElement | null, minScale: number): boolean | null {
  const [seen, setSeen] = useState<boolean | null>(null);
  const [drawn, setDrawn] = useState(true);
  const [scaled, setScaled] = useState(true);
  useEffect(() => {
    if (el === null || typeof IntersectionObserver === 'undefined') {
      setSeen(null);
      return;
    }
    const unobserve = observeShown(el, (e) => setSeen(entryShown(e)));
    let last = performance.now();
    let raf = requestAnimationFrame(function tick() {
      last = performance.now();
      raf = requestAnimationFrame(tick);
    });
    // A page the visitor does not show at all (a background tab) draws nothing either: that is auto-pause's to judge
    // (data-auto-pause), not this.
    const check = setInterval(() => {
      setDrawn(document.visibilityState === 'hidden' || performance.now() - last < NOT_DRAWN_MS);
      // Found by a red-team helper (2026-12-07): zoomed to 0.03 (a 6 × 4 px frame) after consent, it computed on;
      // the browser reports such a frame visible and its viewport unchanged, but not its devicePixelRatio.
      setScaled(window.devicePixelRatio >= minScale);
    }, CHECK_MS);
    return () => {
      unobserve();
      cancelAnimationFrame(raf);
      clearInterval(check);
    };
  }, [el, minScale]);
  return seen === null ? null : seen && drawn && scaled;
}

/**
 * When a frame the host page hides and shows pauses and resumes: it pauses once hidden for `limitMs` in all, a
 * show shorter than `limitMs` not resetting that count, and resumes once shown for `limitMs` on end. Before, each
 * show reset it: a host page that showed the widget half a second in every three kept it computing, hidden five
 * sixths of the time (a review helper's find, 2026-12-07); now it must show it at least as long as it hides it.
 */
export class HiddenClock {
  private hiddenMs = 0;
  private shownMs = 0;

  constructor(private readonly limitMs: number) {}

  /** `dtMs` passed, the frame `shown` (or not) all along; `pausedHidden`: paused by this clock. What to do now. */
  tick(shown: boolean, dtMs: number, pausedHidden: boolean): 'pause' | 'resume' | null {
    if (shown) {
      this.shownMs += dtMs;
      if (this.shownMs < this.limitMs) return null;
      this.hiddenMs = 0;
      return pausedHidden ? 'resume' : null;
    }
    this.shownMs = 0;
    this.hiddenMs += dtMs;
    return !pausedHidden && this.hiddenMs >= this.limitMs ? 'pause' : null;
  }
}
