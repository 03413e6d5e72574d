import { useCallback, useEffect, useRef, useState } from 'react';
import { parseShare } from '../../shared/swarm/duty-cycle.js';
import { useBackendPlan } from '../volunteer/backend-plan.js';
import { ConsentBox } from '../volunteer/consent-box.js';
import { volunteerPageUrl } from '../volunteer/page-params.js';
import { PauseToggle } from '../volunteer/pause-toggle.js';
import { useIdleReason } from '../volunteer/use-idle-reason.js';
import { useVolunteer } from '../volunteer/use-volunteer.js';
import { hardwareText, shareText, shortStateText } from '../volunteer/wording.js';
import { consentWindowUrl, framingSite, isConsentGiven, MIN_SHOWN_SCALE } from './consent-window.js';
import { HiddenClock, useFrameShown } from './frame-shown.js';
import { EMBED_DEFAULT_SHARE, EMBED_SOURCE, type FrameStatus, isHostToFrame } from './messages.js';

const params = new URLSearchParams(location.search);
const framed = window.parent !== window;
const SETTINGS = {
  backend: params.get('backend'),
  model: params.get('model'),
  fault: null,
  share: parseShare(params.get('share'), EMBED_DEFAULT_SHARE),
  autoPause: params.get('autopause') !== '0',
};
/** The swarm's own volunteer page with the share and pause the visitor was shown here. */
const OWN_PAGE = volunteerPageUrl(location.origin, SETTINGS);

/**
 * The widget card's theme (data-theme: light, dark, auto): the frame is transparent over the card, so its text takes
 * the card's colours. `auto` follows the visitor's colour scheme, as the card does.
 */
function followTheme(theme: string | null): void {
  const scheme = window.matchMedia('(prefers-color-scheme: dark)');
  const apply = () => document.body.classList.toggle('dark', theme === 'dark' || (theme === 'auto' && scheme.matches));
  apply();
  if (theme === 'auto') scheme.addEventListener('change', apply);
}
followTheme(params.get('theme'));

/** How long the frame may be hidden by its host page before it pauses (a page's own layout may cover it a moment). */
export const HIDDEN_PAUSE_MS = 3_000;
/** How often the frame adds up how long it was hidden and shown. */
const HIDDEN_TICK_MS = 250;

/** How often the frame looks whether the consent window it opened is still open. */
const WINDOW_POLL_MS = 500;

/** Where the frame stands with the consent window (consent-window.ts). */
type Asking =
  | { readonly kind: 'idle' }
  | { readonly kind: 'open'; readonly window: Window; readonly nonce: string }
  | { readonly kind: 'blocked' }
  | { readonly kind: 'closed' };

/**
 * The volunteer inside the embed widget's frame: its own button, which opens
 * the consent window (consent-window.ts), then compact status with pause and
 * resume. Being framed is not consent: the host page's card is only a first
 * step, and nothing the host page does (a message, a synthesised click, an
 * invisible, masked or zoomed frame, keys steered into it) gives it: the
 * visitor's click in a window of the swarm's own does. Opened as a page of its
 * own (not framed), its button is the consent, as the volunteer page's is.
 */
export function EmbedApp() {
  const [consented, setConsented] = useState(false);
  /** The consent window's scale (ConsentGiven.scale): the frame must be drawn at MIN_SHOWN_SCALE of it or more. */
  const [consentScale, setConsentScale] = useState(1);
  const [asking, setAsking] = useState<Asking>({ kind: 'idle' });
  const plan = useBackendPlan(SETTINGS.backend, SETTINGS.model);
  const { status, failure, pause, resume } = useVolunteer(consented, SETTINGS);
  // Ready and idle: why it gets no work (the volunteer page's reason, shortened).
  const idle = useIdleReason(status);
  /** The visitor paused in this frame: the host page's resume does not undo the visitor's own pause. */
  const visitorPaused = useRef(false);
  /** Paused because the host page hid the frame: undone when it shows again, and by nothing else. */
  const hiddenPaused = useRef(false);
  const [box, setBox] = useState<HTMLDivElement | null>(null);
  const shown = useFrameShown(consented && framed ? box : null, MIN_SHOWN_SCALE * consentScale);

  // After consent the frame computes only while its visitor can see it, and its Pause: hidden for HIDDEN_PAUSE_MS in
  // all by the host page (display none, opacity 0, covered, off screen, zoomed to a speck; shows shorter than that
  // between do not count), it pauses; shown again for HIDDEN_PAUSE_MS on end, it resumes (HiddenClock).
  const shownNow = useRef(shown);
  shownNow.current = shown;
  useEffect(() => {
    if (!consented || !framed) return;
    const clock = new HiddenClock(HIDDEN_PAUSE_MS);
    let last = performance.now();
    const t = setInterval(() => {
      const now = performance.now();
      const dt = now - last;
      last = now;
      if (shownNow.current === null) return;
      const act = clock.tick(shownNow.current, dt, hiddenPaused.current);
      if (act === 'pause' && window.webswarmVolunteer?.state !== 'paused') {
        hiddenPaused.current = true;
        pause();
      } else if (act === 'resume') {
        hiddenPaused.current = false;
        if (!visitorPaused.current) resume();
      }
    }, HIDDEN_TICK_MS);
    return () => clearInterval(t);
  }, [consented, pause, resume]);

  // Pause and resume from the host page's widget: only from the window that framed this one, and only after consent here.
  useEffect(() => {
    const onMessage = (ev: MessageEvent) => {
      if (ev.source !== window.parent || !isHostToFrame(ev.data)) return;
      if (ev.data.type === 'pause') pause();
      else if (!visitorPaused.current && !hiddenPaused.current) resume();
    };
    window.addEventListener('message', onMessage);
    return () => window.removeEventListener('message', onMessage);
  }, [pause, resume]);

  // The consent window's answer: from the window this frame opened, of the swarm's origin, with its nonce.
  useEffect(() => {
    if (asking.kind !== 'open') return;
    const onMessage = (ev: MessageEvent) => {
      if (ev.source !== asking.window || ev.origin !== location.origin || !isConsentGiven(ev.data, asking.nonce)) return;
      setAsking({ kind: 'idle' });
      setConsentScale(ev.data.scale);
      setConsented(true);
    };
    window.addEventListener('message', onMessage);
    // Closed without an answer (or cut from this frame by the host page's Cross-Origin-Opener-Policy, which shows
    // it closed here at once): ask again, or point to the swarm's own page.
    const poll = setInterval(() => {
      if (asking.window.closed) setAsking((a) => (a === asking ? { kind: 'closed' } : a));
    }, WINDOW_POLL_MS);
    return () => {
      window.removeEventListener('message', onMessage);
      clearInterval(poll);
    };
  }, [asking]);

  // Framed or not: /embed opened as a page of its own by another site (a pop-up under the cursor of a clicking game)
  // asks in the consent window too.
  const ask = useCallback(() => {
    const nonce = crypto.randomUUID();
    const w = window.open(consentWindowUrl(location, nonce, framed ? framingSite() : null), '_blank', 'popup,width=520,height=560');
    setAsking(w === null ? { kind: 'blocked' } : { kind: 'open', window: w, nonce });
  }, []);
  const pauseByVisitor = useCallback(() => {
    visitorPaused.current = true;
    pause();
  }, [pause]);
  const resumeByVisitor = useCallback(() => {
    visitorPaused.current = false;
    hiddenPaused.current = false;
    resume();
  }, [resume]);

  // The host page hears the state and step count (nothing else leaves this frame); `failed` where it cannot start,
  // before consent too (a model the swarm does not serve, WebGPU asked for and absent: the button stays disabled).
  const cannotStart = failure !== null || plan.kind === 'failed';
  useEffect(() => {
    if (!framed || (status === null && !cannotStart)) return;
    const m: FrameStatus = {
      source: EMBED_SOURCE,
      type: 'status',
      state: cannotStart ? 'failed' : (status?.state ?? 'starting'),
      steps: status?.stepsComputed ?? 0,
      stage: status?.stage ?? null,
      backend: status?.backend ?? SETTINGS.backend ?? 'unknown',
      reputation: status?.score?.reputation ?? null,
    };
    window.parent.postMessage(m, '*');
  }, [status, cannotStart]);

  if (!consented)
    return (
      <ConsentBox plan={plan} onConsent={ask} className="embed consent" compact ownPage={OWN_PAGE}>
        {asking.kind !== 'idle' && (
          <p className="small" role="status" data-testid="consent-window">
            {asking.kind === 'open'
              ? 'Confirm in the webswarm window that opened.'
              : asking.kind === 'blocked'
                ? 'The webswarm window cannot answer here (pop-ups blocked, or this site keeps its windows apart: Cross-Origin-Opener-Policy). Allow pop-ups, or '
                : 'The webswarm window closed without an answer. Ask again, or '}
            {asking.kind !== 'open' && (
              <a href={OWN_PAGE} target="_blank" rel="noopener" data-testid="embed-own-page">
                volunteer from the swarm's own page
              </a>
            )}
          </p>
        )}
      </ConsentBox>
    );
  const state = status?.state;
  return (
    <div className="embed" ref={setBox}>
      <div aria-live="polite">
        <p className="embed-line">
          <span className={`dot state-${state ?? 'connecting'}`} aria-hidden="true" />
          <span data-testid="embed-state" title={idle?.long ?? undefined}>
            {failure !== null
              ? `Cannot start: ${failure}`
              : status === null
                ? 'Starting…'
                : (idle?.short ?? shortStateText(status.state, status.openSessions))}
          </span>
        </p>
        <p className="small embed-line" title={status?.score == null ? undefined : `reputation ${status.score.reputation.toFixed(2)}`}>
          <span data-testid="embed-steps">{status?.stepsComputed ?? 0}</span> steps
          {status?.stage !== null && status?.stage !== undefined && ` · stage ${status.stage}`}
          {status != null && ` · ${hardwareText(status.backend)}`}
          {status != null && <span data-testid="embed-share">{` · ${shareText(status.share)}`}</span>}
        </p>
      </div>
      {failure === null && <PauseToggle state={state} pause={pauseByVisitor} resume={resumeByVisitor} />}
    </div>
  );
}
