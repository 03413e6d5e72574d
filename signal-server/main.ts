/**
 * Starts the webswarm server from the environment:
 *   PORT (default 8080), HOST (default 127.0.0.1), MODEL (default austen-2m; an id under models/ or a folder),
 *   STAGES (default 3), WEB_ROOT (default dist), STAGE_CACHE (default .cache/stages), REDUNDANCY (default 3),
 *   WEBSWARM_MODE (production | demo | test; default production, which refuses fault-injecting volunteers)
 */
import { existsSync } from 'node:fs';
import { DEFAULT_MODEL, DEFAULT_STAGES, modelDir, STAGE_CACHE } from './defaults.js';
import { ensureStages, partitionKey } from './models/model-folder.js';
import { createSignalServer, type SignalServer } from './server.js';

export interface StartOptions {
  readonly port: number;
  readonly host: string;
  readonly model: string;
  readonly stages: number;
  readonly webRoot: string;
  readonly stageCache: string;
  readonly redundancy: number;
  /** production (default) refuses volunteers that inject faults; demo and test accept them. */
  readonly mode: 'production' | 'demo' | 'test';
}

function modeOf(raw: string | undefined): StartOptions['mode'] {
  if (raw === undefined || raw === '' || raw === 'production') return 'production';
  if (raw === 'demo' || raw === 'test') return raw;
  throw new Error(`WEBSWARM_MODE must be production, demo or test, got "${raw}"`);
}

export function optionsFromEnv(env: NodeJS.ProcessEnv): StartOptions {
  const int = (name: string, fallback: number, min: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer ≥ ${min}, got "${raw}"`);
    return n;
  };
  return {
    port: int('PORT', 8080, 0),
    host: env.HOST || '127.0.0.1',
    model: env.MODEL || DEFAULT_MODEL,
    stages: int('STAGES', DEFAULT_STAGES, 1),
    webRoot: env.WEB_ROOT || 'dist',
    stageCache: env.STAGE_CACHE || STAGE_CACHE,
    redundancy: int('REDUNDANCY', 3, 1),
    mode: modeOf(env.WEBSWARM_MODE),
  };
}

export async function startServer(o: StartOptions, log: (line: string) => void): Promise<SignalServer> {
  if (!existsSync(o.webRoot)) throw new Error(`the web app is not built: ${o.webRoot} is missing (run npm run build)`);
  const t0 = performance.now();
  const partition = { stages: o.stages };
  const { dir, manifest, built } = await ensureStages(modelDir(o.model), partition, o.stageCache);
  log(
    `${built ? 'built' : 'reused'} ${manifest.stages.length} stages of ${manifest.modelId} in ${(performance.now() - t0).toFixed(0)} ms (${dir})`,
  );
  const server = createSignalServer({
    port: o.port,
    host: o.host,
    webRoot: o.webRoot,
    models: [{ manifest, dir, key: partitionKey(manifest.model.numLayers, partition) }],
    redundancy: o.redundancy,
    allowFaults: o.mode !== 'production',
    log,
  });
  await server.ready;
  return server;
}

const isMain = process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'));
if (isMain) {
  const log = (line: string) => process.stdout.write(`${line}\n`);
  startServer(optionsFromEnv(process.env), log)
    .then((s) => {
      log(`webswarm listening on ${s.address().url}`);
      const stop = () => void s.close().then(() => process.exit(0));
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    })
    .catch((e: unknown) => {
      process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    });
}
