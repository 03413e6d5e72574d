import type { SwarmReadiness } from '../../shared/swarm/readiness.js';

/** The landing page's readiness sentence: how many volunteers are ready, per stage, and whether the swarm can answer. */
export function readinessText(r: SwarmReadiness): string {
  if (r.stages.length === 0) return 'No model is served here, so the swarm cannot answer.';
  const needed = neededText(r);
  const rule = `the swarm answers once every stage has ${needed}`;
  // With the fallback on, a request is answered meanwhile, by the server: say so, and that volunteers did not verify it.
  const meanwhile =
    r.fallback === 'off'
      ? ''
      : `; meanwhile the server computes ${r.fallback === 'whole' ? 'whole requests' : 'the stages short of them'} itself (answers labelled, not verified by volunteers)`;
  if (r.volunteers === 0) return `No volunteers yet: ${rule}${meanwhile}.`;
  const counts = `${r.ready} of ${r.volunteers} volunteer${r.volunteers === 1 ? '' : 's'} ready (per stage: ${r.stages.map((s) => s.ready).join(' / ')})`;
  if (r.canAnswer) return `${counts}: every stage has ${needed}, the swarm answers now.`;
  const waiting = shortStages(r);
  // Ready enough, but some of them one client's (tabs of one browser, one address): a route takes one a client.
  const oneClient = r.stages.some((s) => s.ready >= r.redundancy && s.routable < r.redundancy)
    ? '; a route takes one volunteer a client, and some of those ready are one client’s'
    : '';
  return `${counts}: ${rule} (waiting for stage${waiting.length === 1 ? '' : 's'} ${waiting.join(', ')}${oneClient})${meanwhile}.`;
}

// A route needs r ready replicas in every stage (README: "A majority of r, never of the route").
const neededText = (r: SwarmReadiness) => `the ${r.redundancy} ready volunteer${r.redundancy === 1 ? '' : 's'} a route needs`;
const shortStages = (r: SwarmReadiness) => r.stages.flatMap((s, i) => (s.routable < r.redundancy ? [i] : []));

/**
 * Why a ready volunteer of `stage` gets no work while stages are short of r ready volunteers, or null when none is
 * (then it waits for requests): its own stage short is computed by the server (FALLBACK=stage) or by nobody; another
 * stage short stops every route of volunteers unless the server computes that stage beside them.
 */
export function idleReasonText(r: SwarmReadiness, stage: number): string | null {
  const why = idleReason(r, stage);
  if (why === null) return null;
  const own = why.own;
  const until = 'until more volunteers join';
  if (why.kind === 'own') {
    const fallback =
      r.fallback === 'off'
        ? 'requests wait for them'
        : `the server computes ${r.fallback === 'whole' ? 'whole requests' : 'this stage'} itself (answers labelled, not verified by volunteers)`;
    return `This tab's stage ${stage} has ${own.routable} of ${neededText(r)}${own.ready > own.routable ? ` (of different clients: ${own.ready} ready)` : ''}: ${until}, ${fallback}, and this tab gets no work.`;
  }
  const short = why.short;
  const others = `Stage${short.length === 1 ? '' : 's'} ${short.join(', ')} ${short.length === 1 ? 'has' : 'have'} fewer than ${neededText(r)}`;
  const meanwhile = r.fallback === 'whole' ? 'the server computes whole requests itself' : 'requests wait for them';
  return `${others}: ${until}, ${meanwhile}, and this tab gets no work.`;
}

/** Why a ready volunteer of `stage` gets no work: its own stage short of r, or others short with no stand-in; null when none. */
function idleReason(
  r: SwarmReadiness,
  stage: number,
): { readonly kind: 'own' | 'others'; readonly own: SwarmReadiness['stages'][number]; readonly short: number[] } | null {
  const own = r.stages[stage];
  const short = shortStages(r);
  if (own === undefined || short.length === 0) return null;
  if (own.routable < r.redundancy) return { kind: 'own', own, short };
  // With FALLBACK=stage, this stage's volunteers compute beside the server's stand-in for the short one.
  return r.fallback === 'stage' ? null : { kind: 'others', own, short };
}

/** idleReasonText for the widget's one line (the whole sentence is its title). */
export function idleShortText(r: SwarmReadiness, stage: number): string | null {
  const why = idleReason(r, stage);
  if (why === null) return null;
  if (why.kind === 'own') return `No work yet: stage ${stage} has ${why.own.routable} of ${r.redundancy} volunteers`;
  return `No work yet: stage${why.short.length === 1 ? '' : 's'} ${why.short.join(', ')} short of volunteers`;
}

/**
 * Why a ready volunteer of `stage` may wait while its stage is not short: it holds more ready volunteers than clients,
 * and a route takes one volunteer a client (tabs of one browser, or of one address, count once), so some wait while
 * others of their client compute. Null where every ready volunteer of the stage is a client of its own, or where
 * idleReasonText has a reason.
 */
export function sharedClientText(r: SwarmReadiness, stage: number): string | null {
  const own = r.stages[stage];
  if (own === undefined || own.ready <= own.routable || idleReason(r, stage) !== null) return null;
  const clients = `${own.routable} client${own.routable === 1 ? '' : 's'}`;
  return `Stage ${stage} has ${own.ready} ready volunteers of ${clients}: a route takes one volunteer of each client (tabs of one browser, or of one network address, count as one), so this tab may wait while another of its client computes.`;
}

/** sharedClientText for the widget's one line. */
export function sharedClientShortText(r: SwarmReadiness, stage: number): string | null {
  const own = r.stages[stage];
  return sharedClientText(r, stage) === null || own === undefined
    ? null
    : `Waiting: ${own.ready} tabs of ${own.routable} client${own.routable === 1 ? '' : 's'} here`;
}

/**
 * What a ready volunteer of `stage` that gets no work says of why, the volunteer page's sentence (`long`) and the
 * widget's line (`short`): a stage short of volunteers, else its stage's ready volunteers of fewer clients; null when
 * neither is so (it waits for requests).
 */
export function idleTexts(r: SwarmReadiness, stage: number): { readonly long: string; readonly short: string } | null {
  const long = idleReasonText(r, stage) ?? sharedClientText(r, stage);
  const short = idleShortText(r, stage) ?? sharedClientShortText(r, stage);
  return long === null || short === null ? null : { long, short };
}
