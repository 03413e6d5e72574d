import { useEffect, useRef, useState } from 'react';
import { isFaultKind } from '../../shared/swarm/faults.js';
import type { Backend } from '../compute/messages.js';
import { webgpuAdapter } from '../compute/webgpu.js';
import { connectSwarm } from '../net/socket.js';
import { type ReplicaStatus, VolunteerReplica } from './replica.js';

declare global {
  interface Window {
    /** The replica's latest status: lets scripts (and tests) watch this page. */
    webswarmVolunteer?: ReplicaStatus;
  }
}

async function chooseBackend(asked: string | null): Promise<{ backend: Backend; adapter: string | null }> {
  const adapter = asked === 'wasm' ? null : await webgpuAdapter();
  if (asked === 'webgpu' && adapter === null) throw new Error('WebGPU was asked for (?backend=webgpu), but this browser gives no adapter');
  return adapter === null ? { backend: 'wasm', adapter: null } : { backend: 'webgpu', adapter };
}

const params = new URLSearchParams(location.search);

export function VolunteerApp() {
  // The local swarm launcher consents for the headless tabs it starts itself.
  const [consented, setConsented] = useState(params.get('autostart') === '1');
  const [status, setStatus] = useState<ReplicaStatus | null>(null);
  const [failure, setFailure] = useState<string | null>(null);
  const replica = useRef<VolunteerReplica | null>(null);

  useEffect(() => {
    if (!consented) return;
    let live = true;
    chooseBackend(params.get('backend'))
      .then(({ backend, adapter }) => {
        if (!live) return;
        const fault = params.get('fault');
        replica.current = new VolunteerReplica(
          connectSwarm('volunteer'),
          backend,
          adapter,
          (s) => {
            window.webswarmVolunteer = s;
            setStatus(s);
          },
          isFaultKind(fault) ? fault : null,
        );
      })
      .catch((e: unknown) => setFailure((e as Error).message));
    return () => {
      live = false;
      replica.current?.leave();
      replica.current = null;
    };
  }, [consented]);

  if (!consented) {
    return (
      <main>
        <h1>Volunteer this tab</h1>
        <p>
          webswarm runs one block of a language model's layers in this tab, on your GPU (WebGPU) or CPU (WebAssembly), for other people's
          prompts. It downloads a few megabytes of model weights once, keeps them in the browser's cache, and stops when you close the tab.
        </p>
        <button type="button" onClick={() => setConsented(true)}>
          Donate this tab's GPU to webswarm
        </button>
      </main>
    );
  }
  return (
    <main>
      <h1>Volunteering</h1>
      {failure !== null && <p role="alert">Cannot start: {failure}</p>}
      {status !== null && (
        <dl data-testid="volunteer-status">
          <dt>State</dt>
          <dd data-testid="state">{status.state}</dd>
          <dt>Backend</dt>
          <dd>
            {status.backend}
            {status.adapter !== null && ` (${status.adapter})`}
          </dd>
          <dt>Stage held</dt>
          <dd>{status.stage === null ? '—' : `${status.modelId} stage ${status.stage}`}</dd>
          <dt>Download</dt>
          <dd>
            {status.progress === null ? (
              '—'
            ) : (
              <>
                <progress max={status.progress.totalBytes} value={status.progress.loadedBytes} /> {status.progress.file}{' '}
                {(status.progress.totalBytes / 1e6).toFixed(1)} MB{status.progress.fromCache ? ' (from the browser cache)' : ''}
              </>
            )}
          </dd>
          <dt>Steps computed</dt>
          <dd data-testid="steps">{status.stepsComputed}</dd>
          <dt>Agreement</dt>
          <dd data-testid="score">
            {status.score === null
              ? '—'
              : `${status.score.agreed} agreed, ${status.score.disagreed} disagreed with the majority; reputation ${status.score.reputation.toFixed(2)}`}
          </dd>
          <dt>Frames refused</dt>
          <dd>{status.framesRejected}</dd>
          {status.lastError !== null && (
            <>
              <dt>Last error</dt>
              <dd>{status.lastError}</dd>
            </>
          )}
        </dl>
      )}
      <button type="button" onClick={() => location.assign('/')}>
        Leave
      </button>
    </main>
  );
}
