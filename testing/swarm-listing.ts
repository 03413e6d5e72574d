// Test helper: GET /api/swarm of a running server, read through the parser the pages use.
import { parseSwarmListing, type SwarmListing } from '../shared/protocol/http.js';

export async function fetchSwarmListing(serverUrl: string): Promise<SwarmListing> {
  const res = await fetch(`${serverUrl}/api/swarm`);
  if (!res.ok) throw new Error(`/api/swarm: HTTP ${res.status}`);
  const parsed = parseSwarmListing(await res.json());
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.value;
}
