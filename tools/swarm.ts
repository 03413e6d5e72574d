/** npm run swarm -- --server URL --volunteers N [--backend wasm|webgpu]: adds headless volunteer tabs to a running server. */
import { cliArgs, runCli } from './cli-args.js';
import { faultsFromArgs, startLocalSwarm } from './local-swarm.js';
import { checkServer } from './server-check.js';

const USAGE = 'usage: npm run swarm -- --server http://127.0.0.1:8080 --volunteers N [--backend wasm|webgpu] [--faulty N --fault KIND]';

runCli(async () => {
  const v = cliArgs(
    {
      server: { type: 'string', default: 'http://127.0.0.1:8080' },
      volunteers: { type: 'string', default: '3' },
      backend: { type: 'string', default: 'wasm' },
      faulty: { type: 'string' },
      fault: { type: 'string' },
    },
    USAGE,
  );
  const n = Number(v.volunteers);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new Error(`--volunteers must be an integer in [1, 64]\n${USAGE}`);
  if (v.backend !== 'wasm' && v.backend !== 'webgpu') throw new Error(`--backend must be wasm or webgpu\n${USAGE}`);
  const backend = v.backend;
  const faultOf = faultsFromArgs(v.faulty, v.fault);
  const server = await checkServer(v.server);
  if (!server.ok) throw new Error(server.message);
  const swarm = await startLocalSwarm({
    serverUrl: server.url,
    volunteers: n,
    backendOf: () => backend,
    faultOf,
    log: (l) => process.stderr.write(`${l}\n`),
  });
  process.stdout.write(`${n} volunteer tab(s) ready on ${server.url}; Ctrl-C to stop\n`);
  const stop = () => void swarm.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
});
