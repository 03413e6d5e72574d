import type { TokenEvent } from '../../shared/protocol/messages.js';
import { isVerified, verdictText } from './votes.js';

/** One token's votes, stage by stage, shown when the token is clicked, tapped or chosen with the keyboard. */
export function VotePanel(props: { readonly token: TokenEvent; readonly onClose: () => void }) {
  const t = props.token;
  const ok = isVerified(t);
  return (
    <section
      id="vote-panel"
      className={`vote-panel ${ok ? 'verified' : 'unverified'}`}
      data-testid="vote-panel"
      data-index={t.index}
      aria-live="polite"
    >
      <h2>
        Token {t.index + 1}: <q className="token-text">{t.text}</q>
      </h2>
      <p className={ok ? 'verdict verified' : 'verdict unverified'}>{verdictText(t)}</p>
      <table>
        <thead>
          <tr>
            <th>stage</th>
            <th title="replicas whose output matched the accepted one">agreed</th>
            <th title="replicas whose output arrived and differed, or failed">disagreed</th>
            <th title="replicas that had not answered when the token was accepted: not a dissent">late</th>
            <th title="replicas of the stage that vote (the redundancy r)">of r</th>
            <th title="who computed the stage: volunteers, or the server itself (the fallback)">by</th>
          </tr>
        </thead>
        <tbody>
          {t.votes.map((v) => (
            <tr key={v.stage} data-stage={v.stage}>
              <th>{v.stage}</th>
              <td data-field="agreed">{v.agreed}</td>
              <td data-field="disagreed">{v.disagreed}</td>
              <td data-field="late">{v.missing}</td>
              <td data-field="replicas">{v.replicas}</td>
              <td data-field="by">{v.server ? 'server (fallback)' : 'volunteers'}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <p className="small">
        Late replicas had not answered when a majority had already agreed: they are not a dissent. Step {Math.round(t.stepMs)} ms.
      </p>
      <button type="button" onClick={props.onClose}>
        Close
      </button>
    </section>
  );
}
