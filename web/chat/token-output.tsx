import type { TokenEvent } from '../../shared/protocol/messages.js';
import { isVerified, legendText, serverStages, stageVoteText, verdictText } from './votes.js';

/**
 * A run's prompt and its tokens. Each token is focusable and opens its votes
 * on a tap, a click, Enter or Space; verified tokens are green, the others carry
 * the unverified style and say "not verified" in their title.
 */
export function TokenOutput(props: {
  readonly prompt: string;
  readonly tokens: readonly TokenEvent[];
  readonly selected: number | null;
  readonly onSelect: (index: number) => void;
}) {
  const redundancy = props.tokens[0]?.redundancy ?? null;
  const legend = legendText(redundancy);
  const anyServer = props.tokens.some((t) => serverStages(t).length > 0);
  return (
    <>
      <p className="output" data-testid="output">
        <span className="prompt">{props.prompt}</span>
        {props.tokens.map((t) => {
          const ok = isVerified(t);
          const server = serverStages(t);
          return (
            // A span, not a <button>: a button is an atomic inline box, so the text would break lines between
            // tokens (inside words) and begin lines with a token's space. Focusable, and Enter or Space opens it.
            // biome-ignore lint/a11y/useSemanticElements: see above; it has the button role, a tab stop and key handling.
            <span
              role="button"
              tabIndex={0}
              key={t.index}
              className={ok ? 'token verified' : server.length > 0 ? 'token unverified server' : 'token unverified'}
              data-token={t.token}
              data-server-stages={server.length > 0 ? server.join(',') : undefined}
              aria-expanded={props.selected === t.index}
              aria-controls={props.selected === t.index ? 'vote-panel' : undefined}
              title={[verdictText(t), ...t.votes.map(stageVoteText)].join('\n')}
              onClick={() => props.onSelect(t.index)}
              onKeyDown={(e) => {
                if (e.key !== 'Enter' && e.key !== ' ') return;
                e.preventDefault();
                props.onSelect(t.index);
              }}
            >
              {t.text}
            </span>
          );
        })}
      </p>
      <p className="legend small" data-testid="legend">
        <span className="swatch verified">green</span>: {legend.green}. <span className="swatch unverified">dashed</span>:{' '}
        {legend.unverified}.
        {anyServer && (
          <>
            {' '}
            <span className="swatch server">dotted blue</span>: computed by the server itself at some stage (the fallback: too few
            volunteers), not by volunteers.
          </>
        )}{' '}
        Click or tap a token to see its votes.
      </p>
    </>
  );
}
