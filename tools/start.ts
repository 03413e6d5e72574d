/**
 * npm start: builds the web app, builds (or reuses) the default model's stages,
 * and starts the server. Settings come from the environment (see signal-server/main.ts).
 */
import { spawnSync } from 'node:child_process';
import { optionsFromEnv, startServer } from '../signal-server/main.js';
import { runCli } from './cli-args.js';

runCli(async () => {
  const log = (line: string) => process.stdout.write(`${line}\n`);
  const options = optionsFromEnv(process.env);
  log('building the web app (vite build)…');
  const build = spawnSync(process.execPath, ['node_modules/vite/bin/vite.js', 'build', '--logLevel', 'warn'], { stdio: 'inherit' });
  if (build.status !== 0) throw new Error(`vite build failed with exit code ${build.status}`);
  const server = await startServer(options, log);
  const { url } = server.address();
  log(`webswarm is running at ${url}/`);
  log(`run the model in a browser tab: ${url}/check`);
  const stop = () => void server.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
});
