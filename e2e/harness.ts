// End-to-end harness: Debian's Chromium through playwright-core, and a real
// webswarm server on port 0 serving the built web app and real stage files.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';
import { ensureStages, partitionKey } from '../signal-server/models/model-folder.js';
import { createSignalServer, type ServedStages, type SignalServer } from '../signal-server/server.js';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Flags measured to work here (../shared/PLATFORM.md): no outbound traffic, WebGPU on SwiftShader when asked. */
export async function launchChromium(opts: { webgpu: boolean }): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM_PATH)`);
  const args = [
    '--no-sandbox',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-quic',
  ];
  if (opts.webgpu) args.push('--enable-unsafe-webgpu');
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args });
}

/** Builds the web app once per test run (vite build into dist/). */
export function buildWebApp(): void {
  const r = spawnSync(process.execPath, ['node_modules/vite/bin/vite.js', 'build', '--logLevel', 'warn'], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`vite build failed (${r.status})`);
}

export async function startTestServer(models: readonly { dir: string; stages: number }[], cacheRoot: string): Promise<SignalServer> {
  const served: ServedStages[] = [];
  for (const m of models) {
    const partition = { stages: m.stages };
    const { dir, manifest } = await ensureStages(m.dir, partition, cacheRoot);
    served.push({ dir, manifest, key: partitionKey(manifest.model.numLayers, partition) });
  }
  const server = createSignalServer({
    port: 0,
    host: '127.0.0.1',
    webRoot: 'dist',
    models: served,
    log: (l) => process.stderr.write(`[server] ${l}\n`),
  });
  await server.ready;
  return server;
}
