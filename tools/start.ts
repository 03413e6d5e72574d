/**
 * npm start [-- --volunteers N]: builds the web app, builds (or reuses) the
 * default model's stages, starts the server and a local swarm of headless
 * Chromium volunteer tabs (by default enough for every stage to reach its
 * redundancy; 0 for none). Settings come from the environment (signal-server/main.ts).
 */
import { optionsFromEnv, startServer } from '../signal-server/main.js';
import { buildWebApp } from './build-web.js';
import { cliArgs, runCli } from './cli-args.js';
import { faultsFromArgs, startLocalSwarm } from './local-swarm.js';

const USAGE = 'usage: npm start [-- --volunteers N] [--faulty N --fault KIND]';

runCli(async () => {
  const v = cliArgs({ volunteers: { type: 'string' }, faulty: { type: 'string' }, fault: { type: 'string' } }, USAGE);
  const log = (line: string) => process.stdout.write(`${line}\n`);
  const faultOf = faultsFromArgs(v.faulty, v.fault);
  const env = { ...process.env };
  if (faultOf(0) !== null && (env.WEBSWARM_MODE ?? 'production') === 'production') {
    log('fault injection asked for: the server runs in demo mode (WEBSWARM_MODE=demo)');
    env.WEBSWARM_MODE = 'demo';
  }
  const options = optionsFromEnv(env);
  const volunteers = v.volunteers === undefined ? options.stages * options.redundancy : Number(v.volunteers);
  if (!Number.isInteger(volunteers) || volunteers < 0 || volunteers > 64)
    throw new Error(`--volunteers must be an integer in [0, 64]\n${USAGE}`);
  log('building the web app (vite build)…');
  buildWebApp();
  const server = await startServer(options, log);
  const { url } = server.address();
  log(`webswarm is listening at ${url}/`);
  let swarm: Awaited<ReturnType<typeof startLocalSwarm>> | null = null;
  if (volunteers > 0) {
    log(`starting ${volunteers} headless Chromium volunteer tab(s)…`);
    swarm = await startLocalSwarm({ serverUrl: url, volunteers, faultOf, log });
    log(`${volunteers} volunteer(s) ready`);
  }
  log(`chat with the swarm: ${url}/chat`);
  log(`volunteer a tab: ${url}/volunteer   ·   run the model alone in a tab: ${url}/check`);
  const stop = () => {
    void (async () => {
      await swarm?.close();
      await server.close();
      process.exit(0);
    })();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
});
