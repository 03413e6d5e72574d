/**
 * Handing a stage the server computes for a running session (the fallback) back to volunteers: once every such
 * stage has r ready volunteers of distinct clients that a new route could take, the request goes on on a route of
 * volunteers, as a replay does (its prompt and the tokens so far prefilled, the seeded sampler going on from where
 * they left it), so that the tokens after it are verified. Before, a session kept the server on a stage for the rest
 * of the request, however many volunteers became ready a moment later.
 */
import { isServerPeer } from '../../shared/protocol/messages.js';

/**
 * Hand-backs of one request, at most. Each costs a prefill of the prompt and the tokens so far on a new route of
 * volunteers: volunteers that become ready and leave again, over and over, buy no more than these (after them the
 * server keeps a stage it takes back for the rest of the request).
 */
export const MAX_HAND_BACKS = 2;

/** The stages of `route` the server computes (a server replica in them), in order. */
export function servedStages(route: readonly (readonly string[])[]): number[] {
  return route.flatMap((ids, stage) => (ids.some((id) => isServerPeer(id)) ? [stage] : []));
}
