import type { TokenEvent } from '../../shared/protocol/messages.js';
import { isVerified, legendText, stageVoteText, verdictText } from './votes.js';

/**
 * A run's prompt and its tokens. Each token is a button (tap, click or
 * keyboard) that opens its votes; verified tokens are green, the others carry
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
  return (
    <>
      <p className="output" data-testid="output">
        <span className="prompt">{props.prompt}</span>
        {props.tokens.map((t) => {
          const ok = isVerified(t);
          return (
            <button
              type="button"
              key={t.index}
              className={ok ? 'token verified' : 'token unverified'}
              data-token={t.token}
              aria-expanded={props.selected === t.index}
              aria-controls={props.selected === t.index ? 'vote-panel' : undefined}
              title={[verdictText(t), ...t.votes.map(stageVoteText)].join('\n')}
              onClick={() => props.onSelect(t.index)}
            >
              {t.text}
            </button>
          );
        })}
      </p>
      <p className="legend small" data-testid="legend">
        <span className="swatch verified">green</span>: {legend.green}. <span className="swatch unverified">dashed</span>:{' '}
        {legend.unverified}. Click or tap a token to see its votes.
      </p>
    </>
  );
}
