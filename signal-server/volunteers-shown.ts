import { DASHBOARD_REPLICAS_SHOWN, type StageCount, type VolunteerView } from '../shared/protocol/messages.js';

/**
 * The volunteers a listing shows, per stage at most `max`: those ready or
 * computing first (in the order they joined), then those loading; and every
 * stage's counts. The dashboard's grid and `GET /api/swarm` list these, so
 * that what one request or update costs does not grow with the swarm.
 */
export function volunteersShown(
  all: Iterable<VolunteerView>,
  stages: number,
  max = DASHBOARD_REPLICAS_SHOWN,
): { readonly shown: VolunteerView[]; readonly counts: StageCount[] } {
  const counts: { volunteers: number; ready: number }[] = Array.from({ length: stages }, () => ({ volunteers: 0, ready: 0 }));
  const working: VolunteerView[][] = Array.from({ length: stages }, () => []);
  const loading: VolunteerView[][] = Array.from({ length: stages }, () => []);
  for (const v of all) {
    const c = counts[v.stage];
    if (c === undefined) continue;
    c.volunteers += 1;
    if (v.state !== 'loading') c.ready += 1;
    (v.state === 'loading' ? loading : working)[v.stage]?.push(v);
  }
  const shown = working.flatMap((w, s) => [...w, ...(loading[s] ?? [])].slice(0, max));
  return { shown, counts: counts satisfies StageCount[] };
}
