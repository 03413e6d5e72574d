import type { ReactNode } from 'react';
import type { BackendPlan } from './backend-plan.js';
import { useConsent } from './use-consent.js';
import { consentLabel, planShortText, planText } from './wording.js';

/**
 * The swarm's own consent button, with what the tab will compute on: the only
 * way to start a volunteer (the page and the widget's frame both use it). It
 * stays disabled, saying why, while consent.ts refuses.
 */
export function ConsentBox({
  plan,
  onConsent,
  className,
  compact = false,
  pointerOnly = false,
  ownPage,
  children,
}: {
  readonly plan: BackendPlan;
  /** The swarm's own volunteer page with this page's settings (volunteerPageUrl): offered where a frame cannot be judged. */
  readonly ownPage: string;
  readonly onConsent: () => void;
  readonly className?: string;
  /** The widget's small frame: the short wording. */
  readonly compact?: boolean;
  /** Only a pointer's click counts (the widget's consent window: consent.ts pointerOnly). */
  readonly pointerOnly?: boolean;
  readonly children?: ReactNode;
}) {
  const { ref, refusal, settling, clickRefusal, onClick, onPointerUp } = useConsent(onConsent, pointerOnly);
  const why = clickRefusal ?? (settling ? null : refusal);
  const ready = plan.kind === 'gpu' || plan.kind === 'cpu';
  return (
    <div ref={ref} className={className} data-testid="consent-box" data-refusal={refusal?.code ?? ''}>
      <div>
        {children}
        <p className="small" data-testid="plan" title={planText(plan)}>
          {compact ? planShortText(plan) : planText(plan)}
        </p>
        {why !== null && (
          <p className="small" role="status" data-testid="consent-refusal" title={why.message}>
            Not yet: {why.message}
            {why.code === 'ERR_VISIBILITY_UNKNOWN' && (
              <>
                {' '}
                <a href={ownPage} target="_blank" rel="noopener" data-testid="consent-own-page">
                  Open it in a tab of its own
                </a>
              </>
            )}
          </p>
        )}
      </div>
      <button
        type="button"
        className="primary"
        data-testid="consent"
        disabled={!ready || refusal !== null}
        onClick={onClick}
        onPointerUp={onPointerUp}
        // A touch held on it (the press that counts) opens no menu and selects no text.
        onContextMenu={(e) => e.preventDefault()}
        style={{ userSelect: 'none', WebkitUserSelect: 'none', WebkitTouchCallout: 'none' }}
      >
        {consentLabel(plan)}
      </button>
    </div>
  );
}
