/**
 * The volunteer page's URL parameters, checked before the visitor is asked: a
 * link whose settings cannot run says so at once, by name, rather than after
 * the consent click (before, ?capture=foo showed its error only then, on a
 * page with no way back) or not at all (?backend=nonsense was ignored).
 */
import { parseCaptureParam } from '../compute/capture-plan.js';

/** The most characters of a parameter's value a message repeats. */
const SHOWN_CHARS = 32;

/** A parameter's value as a message shows it: quoted, and cut when long (a link may carry anything). */
export function shownValue(v: string): string {
  return JSON.stringify(v.length > SHOWN_CHARS ? `${v.slice(0, SHOWN_CHARS)}…` : v);
}

/** What is wrong with the page's parameters, one message each (none: they can run). */
export function pageParamProblems(q: URLSearchParams): string[] {
  const problems: string[] = [];
  const oneOf = (name: string, allowed: readonly string[]) => {
    const v = q.get(name);
    if (v !== null && !allowed.includes(v)) problems.push(`?${name}= must be ${allowed.join(' or ')}, not ${shownValue(v)}`);
  };
  oneOf('backend', ['wasm', 'webgpu']);
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
