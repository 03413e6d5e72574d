import { useState } from 'react';
import { parseShare } from '../../shared/swarm/duty-cycle.js';
import { isFaultKind } from '../../shared/swarm/faults.js';
import { useBackendPlan } from './backend-plan.js';
import { ConsentBox } from './consent-box.js';
import { pageParamProblems, volunteerPageUrl } from './page-params.js';
import { PauseToggle } from './pause-toggle.js';
import { StatusView } from './status-view.js';
import { useIdleReason } from './use-idle-reason.js';
import { useVolunteer } from './use-volunteer.js';
import { downloadText } from './wording.js';
import { chooseDataPath, DEFAULT_DATA_PATH } from './worker-path.js';

const params = new URLSearchParams(location.search);
const fault = params.get('fault');
const SETTINGS = {
  backend: params.get('backend'),
  model: params.get('model'),
  fault: isFaultKind(fault) ? fault : null,
  share: parseShare(params.get('share'), 1),
  autoPause: params.get('autopause') === '1',
  trace: params.get('trace') === '1',
  batching: params.get('batch') !== 'off',
  // Graph capture on WebGPU (?capture=on, or a number of sessions): parsed when the volunteer starts, its error shown.
  capture: params.get('capture'),
  // The per-token data path on the main thread or in the compute worker (where channels transfer).
  dataPath: chooseDataPath(params.get('datapath'), DEFAULT_DATA_PATH),
};
/** What this link asks that cannot run: said before the visitor is asked, and nothing is asked. */
const PROBLEMS = pageParamProblems(params);
/** What this link's ?share= and ?autopause= promise, said beside the button. */
const LINK_LIMITS = `This link ${[
  SETTINGS.share < 1 ? `keeps the tab to at most ${Math.round(SETTINGS.share * 100)} % of its time` : null,
  SETTINGS.autoPause ? (SETTINGS.share < 1 ? 'pauses it while the tab is hidden' : 'pauses the tab while it is hidden') : null,
]
  .filter((p) => p !== null)
  .join(', and ')}.`;
/** This page with its own settings (the consent box offers it where a frame cannot be judged). */
const OWN_PAGE = volunteerPageUrl(location.origin, SETTINGS);

export function VolunteerApp() {
  // Consent is the visitor's click on ConsentBox, nothing else: no URL parameter skips it.
  const [consented, setConsented] = useState(false);
  const plan = useBackendPlan(SETTINGS.backend, SETTINGS.model);
  const { status, failure, pause, resume, leave } = useVolunteer(consented, SETTINGS);
  const idleReason = useIdleReason(status)?.long ?? null;

  if (!consented && PROBLEMS.length > 0)
    return (
      <main>
        <h1>Volunteer this tab</h1>
        <div role="alert" data-testid="param-problems">
          <p>This link's settings cannot run:</p>
          <ul>
            {PROBLEMS.map((p) => (
              <li key={p}>{p}</li>
            ))}
          </ul>
        </div>
        <p>
          <a className="button" href="/volunteer/">
            Volunteer with the default settings
          </a>
        </p>
      </main>
    );
  if (!consented) {
    return (
      <main>
        <h1>Volunteer this tab</h1>
        <p>
          webswarm runs one block of a language model's layers in this tab, for other people's prompts. The first time, it downloads{' '}
          <span data-testid="download-plan">{downloadText(plan.kind === 'gpu' || plan.kind === 'cpu' ? plan.download : null)}</span>, and
          keeps them in the browser's cache; it stops when you close the tab. Several volunteers compute every block, and only what a
          majority agrees on is used. Nothing runs until you click the button below.
        </p>
        {(SETTINGS.share < 1 || SETTINGS.autoPause) && <p data-testid="link-limits">{LINK_LIMITS}</p>}
        {SETTINGS.fault !== null && (
          <p role="alert" data-testid="fault-warning">
            This link makes the tab a deliberately faulty volunteer (<code>?fault={SETTINGS.fault}</code>): it sends wrong results on
            purpose, to test a swarm's defences, and only a swarm run for demos or tests accepts it.{' '}
            <a href={OWN_PAGE}>Volunteer without it</a>.
          </p>
        )}
        <ConsentBox plan={plan} onConsent={() => setConsented(true)} className="consent" ownPage={OWN_PAGE} />
      </main>
    );
  }
  const state = status?.state;
  return (
    <main>
      <h1>Volunteering</h1>
      {failure !== null && <p role="alert">Cannot start: {failure}</p>}
      {status !== null && <StatusView status={status} idleReason={idleReason} />}
      <p className="row">
        <PauseToggle state={state} pause={pause} resume={resume} />
        {state === 'left' || (failure !== null && status === null) ? (
          <a className="button" href="/">
            Back to webswarm
          </a>
        ) : (
          <button type="button" onClick={leave} disabled={state === undefined}>
            Leave
          </button>
        )}
      </p>
    </main>
  );
}
