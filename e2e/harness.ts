// End-to-end harness: Debian's Chromium through playwright-core, and a real
// webswarm server on port 0 serving the built web app and real stage files.
import { spawnSync } from 'node:child_process';
import { ensureStages, partitionKey } from '../signal-server/models/model-folder.js';
import { createSignalServer, type ServedStages, type SignalServer } from '../signal-server/server.js';

export { launchChromium } from '../tools/local-swarm.js';

/** Builds the web app once per test run (vite build into dist/). */
export function buildWebApp(): void {
  const r = spawnSync(process.execPath, ['node_modules/vite/bin/vite.js', 'build', '--logLevel', 'warn'], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`vite build failed (${r.status})`);
}

export async function startTestServer(
  models: readonly { dir: string; stages: number }[],
  cacheRoot: string,
  extra: { redundancy?: number; allowFaults?: boolean; port?: number; quiet?: boolean } = {},
): Promise<SignalServer> {
  const served: ServedStages[] = [];
  for (const m of models) {
    const partition = { stages: m.stages };
    const { dir, manifest } = await ensureStages(m.dir, partition, cacheRoot);
    served.push({ dir, manifest, key: partitionKey(manifest.model.numLayers, partition) });
  }
  const server = createSignalServer({
    port: extra.port ?? 0,
    host: '127.0.0.1',
    webRoot: 'dist',
    models: served,
    redundancy: extra.redundancy ?? 3,
    allowFaults: extra.allowFaults ?? false,
    log: extra.quiet === true ? () => {} : (l) => process.stderr.write(`[server] ${l}\n`),
  });
  await server.ready;
  return server;
}
