import { useState } from 'react';
import { parseShare } from '../../shared/swarm/duty-cycle.js';
import { type ConsentGiven, consentWindowParams } from '../embed/consent-window.js';
import { EMBED_DEFAULT_SHARE, EMBED_SOURCE } from '../embed/messages.js';
import { useBackendPlan } from '../volunteer/backend-plan.js';
import { ConsentBox } from '../volunteer/consent-box.js';
import { volunteerPageUrl } from '../volunteer/page-params.js';
import { downloadText } from '../volunteer/wording.js';

const PARAMS = consentWindowParams(location.search);
/** How long the thanks stay before the window closes itself. */
const CLOSE_AFTER_MS = 1_500;

/**
 * The swarm's own page, where a visitor can volunteer when this window cannot reach the widget: with the share and
 * pause the widget promised, where this window's link is a widget's.
 */
const OWN_PAGE = (() => {
  // The share and pause from the link itself, also where it is no widget's (its nonce refused).
  const q = new URLSearchParams(location.search);
  return volunteerPageUrl(location.origin, {
    model: typeof PARAMS === 'string' ? null : PARAMS.model,
    backend: typeof PARAMS === 'string' ? null : PARAMS.backend,
    share: parseShare(q.get('share'), EMBED_DEFAULT_SHARE),
    autoPause: q.get('autopause') !== '0',
  });
})();

/** Whether `opener` is a document of the swarm's origin (the widget's frame): another origin's cannot be read. */
function openedBySwarm(opener: Window | null): boolean {
  try {
    return opener !== null && opener.location.origin === location.origin;
  } catch {
    return false;
  }
}

/**
 * The consent window (/consent): opened by the widget's frame (web/embed/consent-window.ts), it asks in a window of
 * the swarm's own, which no other page can hide or type into, and tells the frame that opened it once the visitor
 * clicks its button. Opened any other way, it has nobody to tell, and says so.
 */
export function ConsentWindowApp() {
  const [done, setDone] = useState(false);
  const plan = useBackendPlan(typeof PARAMS === 'string' ? null : PARAMS.backend, typeof PARAMS === 'string' ? null : PARAMS.model);
  const opener = window.opener as Window | null;
  const ours = openedBySwarm(opener);
  if (typeof PARAMS === 'string' || opener === null || !ours) {
    const why =
      typeof PARAMS === 'string'
        ? PARAMS
        : opener === null
          ? 'the page that opened this window is gone, or keeps its windows apart from it (Cross-Origin-Opener-Policy), so the widget cannot hear your answer'
          : 'this window was not opened by a webswarm widget, but by another page';
    return (
      <main>
        <h1>Donate a tab to webswarm</h1>
        <p data-testid="consent-window-refusal">Nothing to confirm here: {why}.</p>
        <p>
          You can volunteer from <a href={OWN_PAGE}>the swarm's own page</a> instead.
        </p>
      </main>
    );
  }
  const site = PARAMS.site ?? 'A site you have open';
  const share = Math.round(parseShare(PARAMS.share, EMBED_DEFAULT_SHARE) * 100);
  const give = () => {
    const m: ConsentGiven = { source: EMBED_SOURCE, type: 'consent', nonce: PARAMS.nonce, scale: window.devicePixelRatio };
    // To the swarm's origin only: a page of another origin that opened this window hears nothing.
    opener.postMessage(m, location.origin);
    setDone(true);
    setTimeout(() => window.close(), CLOSE_AFTER_MS);
  };
  if (done)
    return (
      <main>
        <h1>Thank you</h1>
        <p data-testid="consent-window-done">
          The widget on {site} starts now. You can pause or stop it there, or close that tab. This window closes by itself.
        </p>
      </main>
    );
  return (
    <main>
      <h1>Donate that tab to webswarm?</h1>
      <p>
        <strong data-testid="consent-window-site">{site}</strong> shows the webswarm widget
        {PARAMS.via !== null && (
          <>
            , placed by <strong data-testid="consent-window-via">{PARAMS.via}</strong> in a frame on its page
          </>
        )}
        {PARAMS.hidden && <span data-testid="consent-window-hidden"> through a frame whose site your browser does not tell</span>}. If you
        donate, the tab with that page (not this window) runs part of a language model for other people's prompts while it stays open, using
        at most {share} % of its time
        {PARAMS.model === null ? '' : ` (model ${PARAMS.model})`}. The first time, it downloads{' '}
        <span data-testid="download-plan">{downloadText(plan.kind === 'gpu' || plan.kind === 'cpu' ? plan.download : null)}</span>, and
        keeps them in the browser's cache. Several volunteers compute every block, and only what a majority agrees on is used. You can pause
        or stop it in the widget, or close the tab.
      </p>
      <ConsentBox plan={plan} onConsent={give} className="consent" pointerOnly ownPage={OWN_PAGE}>
        <p className="small">Nothing runs unless you click this window's button.</p>
      </ConsentBox>
      <p>
        <button type="button" onClick={() => window.close()}>
          No thanks
        </button>
      </p>
    </main>
  );
}
