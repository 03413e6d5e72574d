// A one-stage swarm and Node volunteers that may run a stage file of their own
// instead of the one they downloaded (and say nothing): how the tests show that
// a volunteer running anything but the swarm's graph fails its challenge step.
import type { StageManifest } from '../../shared/model/manifest.js';
import { seededRandom } from '../../shared/model/sampling.js';
import { partitionKey } from '../models/model-folder.js';
import { createSignalServer, type SignalServer } from '../server.js';
import { NodeVolunteer } from './node-volunteer.js';

/** A one-stage swarm of a built stage set (r = 1, no spot checks, seeded); the server goes into `servers` for the caller to close. */
export async function oneStageSwarm(set: { dir: string; manifest: StageManifest }, servers: SignalServer[]): Promise<string> {
  const { dir, manifest } = set;
  const server = createSignalServer({
    port: 0,
    host: '127.0.0.1',
    webRoot: null,
    models: [{ dir, manifest, key: partitionKey(manifest.model.numLayers, { stages: 1 }, manifest.weights) }],
    redundancy: 1,
    ratePerMinute: 0,
    apiMaxConcurrent: 0,
    spotCheckRate: 0,
    random: seededRandom(5),
  });
  await server.ready;
  servers.push(server);
  return server.address().url;
}

/** A volunteer from `address` (a client key of its own) running `stageFile` when given; it goes into `volunteers` for the caller to close. */
export function volunteerAt(url: string, address: string, volunteers: NodeVolunteer[], stageFile?: Uint8Array): NodeVolunteer {
  const v = new NodeVolunteer(url, {
    localAddress: address,
    clientKey: `client-${address.replaceAll('.', '-')}`,
    ...(stageFile === undefined ? {} : { stageFile: () => stageFile }),
  });
  volunteers.push(v);
  return v;
}
