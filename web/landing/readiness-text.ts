import type { SwarmReadiness } from '../../shared/swarm/readiness.js';

/** The landing page's readiness sentence: how many volunteers are ready, per stage, and whether the swarm can answer. */
export function readinessText(r: SwarmReadiness): string {
  if (r.stages.length === 0) return 'No model is served here, so the swarm cannot answer.';
  // A route needs r ready replicas in every stage (README: "A majority of r, never of the route").
  const needed = `the ${r.redundancy} ready volunteer${r.redundancy === 1 ? '' : 's'} a route needs`;
  const rule = `the swarm answers once every stage has ${needed}`;
  // With the fallback on, a request is answered meanwhile, by the server: say so, and that volunteers did not verify it.
  const meanwhile =
    r.fallback === 'off'
      ? ''
      : `; meanwhile the server computes ${r.fallback === 'whole' ? 'whole requests' : 'the stages short of them'} itself (answers labelled, not verified by volunteers)`;
  if (r.volunteers === 0) return `No volunteers yet: ${rule}${meanwhile}.`;
  const counts = `${r.ready} of ${r.volunteers} volunteer${r.volunteers === 1 ? '' : 's'} ready (per stage: ${r.stages.map((s) => s.ready).join(' / ')})`;
  if (r.canAnswer) return `${counts}: every stage has ${needed}, the swarm answers now.`;
  const waiting = r.stages.flatMap((s, i) => (s.ready < r.redundancy ? [i] : []));
  return `${counts}: ${rule} (waiting for stage${waiting.length === 1 ? '' : 's'} ${waiting.join(', ')})${meanwhile}.`;
}
