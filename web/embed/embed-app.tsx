import { useEffect, useState } from 'react';
import { parseShare } from '../../shared/swarm/duty-cycle.js';
import { useBackendPlan } from '../volunteer/backend-plan.js';
import { ConsentBox } from '../volunteer/consent-box.js';
import { PauseToggle } from '../volunteer/pause-toggle.js';
import { useVolunteer } from '../volunteer/use-volunteer.js';
import { hardwareText, shortStateText } from '../volunteer/wording.js';
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

/**
 * The volunteer inside the embed widget's frame: its own consent button, then
 * compact status with pause and resume. Being framed is not consent: the host
 * page's card is only a first step, and nothing the host page does (a message,
 * a synthesised click, an invisible frame) can press this frame's button.
 */
export function EmbedApp() {
  const [consented, setConsented] = useState(false);
  const plan = useBackendPlan(SETTINGS.backend);
  const { status, failure, pause, resume } = useVolunteer(consented, SETTINGS);

  // Pause and resume from the host page's widget: only from the window that framed this one, and only after consent here.
  useEffect(() => {
    const onMessage = (ev: MessageEvent) => {
      if (ev.source !== window.parent || !isHostToFrame(ev.data)) return;
      if (ev.data.type === 'pause') pause();
      else resume();
    };
    window.addEventListener('message', onMessage);
    return () => window.removeEventListener('message', onMessage);
  }, [pause, resume]);

  // The host page hears the state and step count (nothing else leaves this frame).
  useEffect(() => {
    if (!framed || status === null) return;
    const m: FrameStatus = {
      source: EMBED_SOURCE,
      type: 'status',
      state: status.state,
      steps: status.stepsComputed,
      stage: status.stage,
      backend: status.backend,
      reputation: status.score?.reputation ?? null,
    };
    window.parent.postMessage(m, '*');
  }, [status]);

  if (!consented) return <ConsentBox plan={plan} onConsent={() => setConsented(true)} className="embed consent" compact />;
  const state = status?.state;
  return (
    <div className="embed">
      <div aria-live="polite">
        <p className="embed-line">
          <span className={`dot state-${state ?? 'connecting'}`} aria-hidden="true" />
          <span data-testid="embed-state">
            {failure !== null
              ? `Cannot start: ${failure}`
              : status === null
                ? 'Starting…'
                : shortStateText(status.state, status.openSessions)}
          </span>
        </p>
        <p className="small embed-line" title={status?.score == null ? undefined : `reputation ${status.score.reputation.toFixed(2)}`}>
          <span data-testid="embed-steps">{status?.stepsComputed ?? 0}</span> steps
          {status?.stage !== null && status?.stage !== undefined && ` · stage ${status.stage}`}
          {status != null && ` · ${hardwareText(status.backend)}`}
        </p>
      </div>
      <PauseToggle state={state} pause={pause} resume={resume} />
    </div>
  );
}
