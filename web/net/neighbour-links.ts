// What a replica waits for before it joins a session (or applies an update):
// data channels to a majority of each neighbouring stage's replicas, not to
// all of them. A majority of a stage is what the vote needs (a replica takes
// its inputs once a majority of the previous stage's replicas agree, and its
// frames reach a majority of the next), so one neighbour that never connects,
// a hostile one that drops its signalling, say, cannot hold the replica out of
// the session until its connection times out (20 s, web/net/peers.ts): long
// enough for the coordinator to count the honest replica a no-show. The rest
// are waited for a little longer (LINK_GRACE_MS) and named when it joins, so
// the coordinator can weigh what a majority of their neighbours say of them.
import { isServerPeer } from '../../shared/protocol/messages.js';
import { majority } from '../../shared/vote/quorum.js';

/** After a majority of each neighbouring stage is connected, how long the others are waited for before joining without them. */
export const LINK_GRACE_MS = 3_000;

export interface NeighbourLinks {
  /** Neighbours not connected when the replica joined (it goes on trying); empty when all are. */
  readonly unreached: string[];
}

/**
 * Connects to every volunteer in `stages` (each a neighbouring stage's
 * replicas; server replicas need no channel) and resolves once each stage has
 * a majority connected and either every connection settled or `graceMs` passed
 * since the last majority was reached. Rejects, naming why, once some stage can
 * no longer reach a majority (a single neighbour, r = 1, must connect).
 */
export function linkNeighbours(
  stages: readonly (readonly string[])[],
  connect: (id: string) => Promise<void>,
  graceMs = LINK_GRACE_MS,
): Promise<NeighbourLinks> {
  const groups = stages.map((ids) => [...new Set(ids)]).filter((ids) => ids.length > 0);
  const connected = new Set(groups.flat().filter(isServerPeer));
  const failed = new Map<string, string>();
  return new Promise((resolve, reject) => {
    let grace: ReturnType<typeof setTimeout> | null = null;
    let settled = false;
    const finish = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      if (grace !== null) clearTimeout(grace);
      outcome();
    };
    const unreached = () => groups.flat().filter((id) => !connected.has(id));
    const check = () => {
      for (const ids of groups) {
        const lost = ids.filter((id) => failed.has(id));
        if (lost.length > ids.length - majority(ids.length)) {
          const why = lost.map((id) => `${id}: ${failed.get(id)}`).join('; ');
          return finish(() =>
            reject(new Error(`only ${ids.length - lost.length} of ${ids.length} neighbours of a stage reachable (${why})`)),
          );
        }
      }
      if (!groups.every((ids) => ids.filter((id) => connected.has(id)).length >= majority(ids.length))) return;
      if (unreached().every((id) => failed.has(id))) return finish(() => resolve({ unreached: unreached() }));
      grace ??= setTimeout(() => finish(() => resolve({ unreached: unreached() })), graceMs);
    };
    for (const id of new Set(groups.flat()))
      if (!connected.has(id))
        connect(id).then(
          () => {
            connected.add(id);
            check();
          },
          (e: unknown) => {
            failed.set(id, e instanceof Error ? e.message : String(e));
            check();
          },
        );
    check();
  });
}
