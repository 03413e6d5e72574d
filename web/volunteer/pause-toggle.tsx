import type { ReplicaState } from './replica.js';

/** Pause, or Resume while paused: the one button the volunteer page and the widget's frame share. */
export function PauseToggle({
  state,
  pause,
  resume,
}: {
  readonly state: ReplicaState | undefined;
  readonly pause: () => void;
  readonly resume: () => void;
}) {
  if (state === 'paused')
    return (
      <button type="button" className="primary" data-testid="resume" onClick={resume}>
        Resume
      </button>
    );
  return (
    <button type="button" data-testid="pause" onClick={pause} disabled={state === undefined || state === 'left' || state === 'evicted'}>
      Pause
    </button>
  );
}
