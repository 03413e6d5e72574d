/**
 * The volunteer page's URL parameters, checked before the visitor is asked: a
 * link whose settings cannot run says so at once, by name, rather than after
 * the consent click (before, ?capture=foo showed its error only then, on a
 * page with no way back) or not at all (?backend=nonsense was ignored).
 */
import { FAULT_KINDS, isFaultKind } from '../../shared/swarm/faults.js';
import { parseCaptureParam } from '../compute/capture-plan.js';

/** The most characters of a parameter's value a message repeats. */
const SHOWN_CHARS = 32;

/** A parameter's value as a message shows it: quoted, and cut when long (a link may carry anything). */
export function shownValue(v: string): string {
  return JSON.stringify(v.length > SHOWN_CHARS ? `${v.slice(0, SHOWN_CHARS)}…` : v);
}

/**
 * A model id plain enough to show as one: letters, digits, `_`, `.` and `-`, at most 100 characters (every model
 * README names). The consent window leaves any other name out rather than show a host page's text as a model (a host
 * page wrote its own sentences into "(model …)"); the frame still checks the name against the swarm's models.
 */
export function isModelIdParam(v: string): boolean {
  return /^[\w.-]{1,100}$/.test(v);
}

/** What is wrong with the page's parameters, one message each (none: they can run). */
export function pageParamProblems(q: URLSearchParams): string[] {
  const problems: string[] = [];
  const oneOf = (name: string, allowed: readonly string[]) => {
    const v = q.get(name);
    if (v !== null && !allowed.includes(v)) problems.push(`?${name}= must be ${allowed.join(' or ')}, not ${shownValue(v)}`);
  };
  oneOf('backend', ['wasm', 'webgpu']);
  const fault = q.get('fault');
  if (fault !== null && !isFaultKind(fault)) problems.push(`?fault= must be one of ${FAULT_KINDS.join(', ')}, not ${shownValue(fault)}`);
  oneOf('datapath', ['main', 'worker']);
  const share = q.get('share');
  if (share !== null && !(share.trim() !== '' && Number.isFinite(Number(share))))
    problems.push(`?share= must be a number (the most of the time to compute, 0.05–1), not ${shownValue(share)}`);
  const capture = q.get('capture');
  try {
    parseCaptureParam(capture);
  } catch {
    problems.push(`?capture= must be on, off or a number of sessions in 1..16, not ${shownValue(capture ?? '')}`);
  }
  return problems;
}

/** What a link to the swarm's own volunteer page carries over from a page that sends the visitor there. */
export interface OwnPageSettings {
  readonly model: string | null;
  readonly backend: string | null;
  /** The most of the time the tab may compute (0.05–1), as the visitor was told. */
  readonly share: number;
  /** Pause while the tab is hidden. */
  readonly autoPause: boolean;
}

/**
 * The swarm's own volunteer page (`/volunteer/` at `origin`) with the settings the visitor was shown: where the
 * widget sends a visitor whose browser cannot give consent in a frame. Before, its links carried the model and
 * backend only, so a visitor told "at most 50 %" computed at full speed there, never paused when hidden.
 */
export function volunteerPageUrl(origin: string, s: OwnPageSettings): string {
  const q = new URLSearchParams();
  if (s.model !== null) q.set('model', s.model);
  if (s.backend !== null) q.set('backend', s.backend);
  if (s.share < 1) q.set('share', String(s.share));
  if (s.autoPause) q.set('autopause', '1');
  const query = q.toString();
  return new URL(`/volunteer/${query === '' ? '' : `?${query}`}`, origin).toString();
}
