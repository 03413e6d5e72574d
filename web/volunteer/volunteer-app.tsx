import { useState } from 'react';
import { parseShare } from '../../shared/swarm/duty-cycle.js';
import { isFaultKind } from '../../shared/swarm/faults.js';
import { PauseToggle } from './pause-toggle.js';
import { StatusView } from './status-view.js';
import { useVolunteer } from './use-volunteer.js';

const params = new URLSearchParams(location.search);
const fault = params.get('fault');
const SETTINGS = {
  backend: params.get('backend'),
  model: params.get('model'),
  fault: isFaultKind(fault) ? fault : null,
  share: parseShare(params.get('share'), 1),
  autoPause: params.get('autopause') === '1',
};

export function VolunteerApp() {
  // The local swarm launcher consents for the headless tabs it starts itself.
  const [consented, setConsented] = useState(params.get('autostart') === '1');
  const { status, failure, pause, resume, leave } = useVolunteer(consented, SETTINGS);

  if (!consented) {
    return (
      <main>
        <h1>Volunteer this tab</h1>
        <p>
          webswarm runs one block of a language model's layers in this tab, on your GPU (WebGPU) or CPU (WebAssembly), for other people's
          prompts. It downloads a few megabytes of model weights once, keeps them in the browser's cache, and stops when you close the tab.
          Several volunteers compute every block, and only what a majority agrees on is used.
        </p>
        <button type="button" className="primary" onClick={() => setConsented(true)}>
          Donate this tab's GPU to webswarm
        </button>
      </main>
    );
  }
  const state = status?.state;
  return (
    <main>
      <h1>Volunteering</h1>
      {failure !== null && <p role="alert">Cannot start: {failure}</p>}
      {status !== null && <StatusView status={status} />}
      <p className="row">
        <PauseToggle state={state} pause={pause} resume={resume} />
        {state === 'left' ? (
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
