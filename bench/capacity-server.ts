/**
 * The server of the capacity benchmark, in a process of its own so that its
 * memory and CPU are its own: austen-2m in 3 stages, no web app, no volunteer
 * challenged (the simulated volunteers never say they are ready). With
 * REDIS_URL it is one process of a cluster (CAPACITY_PREFIX: its keys). With
 * BENCH_BYTE_BUDGET=off its sockets have no byte budget, as before there was
 * one (bench/socket-flood.ts compares). Prints its URL on the first line of
 * stdout and runs until killed.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { DEFAULT_MODEL, modelDir } from '../signal-server/defaults.js';
import { ensureStages, partitionKey } from '../signal-server/models/model-folder.js';
import { createSignalServer } from '../signal-server/server.js';

const cache = mkdtempSync(join(tmpdir(), 'webswarm-capacity-'));
const { dir, manifest } = await ensureStages(modelDir(DEFAULT_MODEL), { stages: 3 }, cache);
const server = createSignalServer({
  port: 0,
  host: '127.0.0.1',
  webRoot: null,
  models: [{ dir, manifest, key: partitionKey(manifest.model.numLayers, { stages: 3 }) }],
  ratePerMinute: 0,
  ...(process.env.BENCH_BYTE_BUDGET === 'off' ? { socketByteBudget: { ratePerS: 1e15, burst: 1e15, maxDropped: 1e15 } } : {}),
  ...(process.env.REDIS_URL === undefined
    ? {}
    : { redisUrl: process.env.REDIS_URL, cluster: { prefix: process.env.CAPACITY_PREFIX ?? 'capacity' } }),
});
await server.ready;
process.stdout.write(`${server.address().url}\n`);
// The benchmark links pairs of its volunteers, as a session would, to time the signalling relay between them:
// "link <a> <b>" lines on stdin, answered "linked".
for await (const line of createInterface({ input: process.stdin })) {
  const [word, a, b] = line.trim().split(' ');
  if (word === 'link' && a !== undefined && b !== undefined) server.coordinator?.links.link(a, b);
  if (word === 'done') process.stdout.write('linked\n');
}
