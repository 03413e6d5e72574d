import type { ReplicaStatus } from './replica.js';
import { agreementRate } from './use-volunteer.js';
import { captureText, deviceLossText, refusedText, shareText, stageHeldText, stateText, usesText, weightsText } from './wording.js';

/** The volunteer's state as cards: backend, stage, download, steps, agreement and reputation. */
export function StatusView({ status, idleReason = null }: { status: ReplicaStatus; idleReason?: string | null }) {
  const rate = agreementRate(status);
  const p = status.progress;
  return (
    <>
      <p className={`badge state-${status.state}`} data-testid="state" data-state={status.state}>
        {stateText(status.state, status.openSessions)}
      </p>
      {idleReason !== null && (
        <p className="small" role="status" data-testid="idle-reason">
          {idleReason}
        </p>
      )}
      <div className="cards" data-testid="volunteer-status">
        <section className="card">
          <h2>Computes on</h2>
          <p className="big" data-testid="backend">
            {usesText(status.backend)}
          </p>
          <p className="small">{status.adapter ?? 'no GPU adapter used'}</p>
          {status.capture !== null && (
            <p className="small" data-testid="capture">
              {captureText(status.capture)}
            </p>
          )}
        </section>
        <section className="card">
          <h2>Stage held</h2>
          <p className="big" data-testid="stage-held">
            {status.stage === null || status.state === 'left' || status.state === 'evicted' ? '—' : `stage ${status.stage}`}
          </p>
          <p className="small" data-testid="stage-model">
            {stageHeldText(status.state, status.stage, status.modelId)}
          </p>
        </section>
        <section className="card">
          <h2>Weights</h2>
          {p === null ? (
            <p className="big">—</p>
          ) : (
            <>
              <progress max={p.totalBytes} value={p.loadedBytes} aria-label="download progress" />
              <p className="small" data-testid="download">
                {weightsText(p, status.state)}
              </p>
            </>
          )}
        </section>
        <section className="card">
          <h2>Steps computed</h2>
          <p className="big" data-testid="steps">
            {status.stepsComputed}
          </p>
          <p className="small">{shareText(status.share)}</p>
        </section>
        <section className="card">
          <h2>Agreement</h2>
          <p className="big" data-testid="agreement">
            {rate === null ? '—' : `${(rate * 100).toFixed(1)} %`}
          </p>
          <p className="small" data-testid="score">
            {status.score === null
              ? 'no votes yet'
              : `${status.score.agreed} agreed, ${status.score.disagreed} disagreed with the majority`}
          </p>
        </section>
        <section className="card">
          <h2>Reputation</h2>
          <p className="big" data-testid="reputation">
            {status.score === null ? '—' : status.score.reputation.toFixed(2)}
          </p>
          <p
            className="small"
            data-testid="refused"
            title="Late frames are copies that came after their step was taken, or for a session this tab no longer holds: an honest swarm sends some. Bad frames are malformed, over budget or refused signals."
          >
            {refusedText(status.framesRejectedBy)}
          </p>
        </section>
      </div>
      {status.deviceLoss !== null && (
        <p className="small" role="status" data-testid="device-loss">
          {deviceLossText(status.deviceLoss)}
        </p>
      )}
      {status.lastError !== null && (
        <p className="small" role="status" data-testid="last-error">
          Last error: {status.lastError}
        </p>
      )}
    </>
  );
}
