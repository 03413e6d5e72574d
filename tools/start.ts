/**
 * npm start [-- --volunteers N]: builds the web app, builds (or reuses) the
 * default model's stages, starts the server and a local swarm of headless
 * Chromium volunteer tabs (by default enough for every stage to reach its
 * redundancy; 0 for none). The server's settings come from flags or the
 * environment (SETTINGS in signal-server/main.ts).
 */
import { optionsFrom, SETTING_FLAGS, startServer } from '../signal-server/main.js';
import { buildWebApp } from './build-web.js';
import { cliArgs, runCli } from './cli-args.js';
import { faultsFromArgs, startLocalSwarm } from './local-swarm.js';

const USAGE = 'usage: npm start [-- --volunteers N] [--faulty N --fault KIND] [--port N --redundancy N --api-keys K1,K2 ... (see README)]';

runCli(async () => {
  const v = cliArgs({ ...SETTING_FLAGS, volunteers: { type: 'string' }, faulty: { type: 'string' }, fault: { type: 'string' } }, USAGE);
  const log = (line: string) => process.stdout.write(`${line}\n`);
  const faultOf = faultsFromArgs(v.faulty, v.fault);
  let options = optionsFrom(process.env, v);
  if (faultOf(0) !== null && options.mode === 'production') {
    log('fault injection asked for: the server runs in demo mode (WEBSWARM_MODE=demo)');
    options = { ...options, mode: 'demo' };
  }
  const volunteers = v.volunteers === undefined ? options.stages * options.redundancy : Number(v.volunteers);
  if (!Number.isInteger(volunteers) || volunteers < 0 || volunteers > 64)
    throw new Error(`--volunteers must be an integer in [0, 64]\n${USAGE}`);
  log('building the web app (vite build)…');
  buildWebApp();
  const server = await startServer(options);
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
