/**
 * npm start [-- --volunteers N]: checks for Chromium (installing Debian's when
 * it can), builds the web app, builds (or reuses) the default model's stages,
 * starts the server and a local swarm of headless Chromium volunteer tabs (by
 * default enough for every stage to reach its redundancy; 0 for none). Without
 * a Chromium it still starts the server and says how to add volunteers. The
 * server's settings come from flags or the environment (SETTINGS in
 * signal-server/main.ts).
 */
import { createLogger, type LineSink, resolveLogFormat } from '../signal-server/log.js';
import { optionsFrom, SETTING_FLAGS, startNotes, startServer } from '../signal-server/main.js';
import { buildWebApp } from './build-web.js';
import { cliArgs, runCli } from './cli-args.js';
import { ensureChromium } from './ensure-chromium.js';
import { faultsFromArgs, startLocalSwarm } from './local-swarm.js';
import { whenParentGone } from './parent-watch.js';
import { watchProgress } from './start-progress.js';
import { StatusLine } from './status-line.js';

const USAGE = 'usage: npm start [-- --volunteers N] [--faulty N --fault KIND] [--port N --redundancy N --api-keys K1,K2 ... (see README)]';
/** The most headless tabs npm start's local swarm opens on this machine. */
const MAX_LOCAL_TABS = 64;

const seconds = () => `${(performance.now() / 1000).toFixed(0)} s`;

runCli(async () => {
  const v = cliArgs({ ...SETTING_FLAGS, volunteers: { type: 'string' }, faulty: { type: 'string' }, fault: { type: 'string' } }, USAGE);
  let options = optionsFrom(process.env, v);
  // On a terminal: short human lines and a progress line; anywhere else: plain lines and pino's JSON
  // (or, with LOG_FORMAT=pretty, human lines without the progress line's escape codes).
  const format = resolveLogFormat(options.logFormat, process.stdout.isTTY);
  const status = format === 'pretty' && process.stdout.isTTY ? new StatusLine(process.stdout) : null;
  const out: LineSink & { isTTY?: boolean } = status ?? process.stdout;
  const log = (line: string) => void out.write(`${line}\n`);
  const notes = startNotes(process.env, options);
  for (const line of notes.warn) log(`warning: ${line}`);
  for (const line of notes.info) log(line);
  const faultOf = faultsFromArgs(v.faulty, v.fault);
  if (faultOf(0) !== null && options.mode === 'production') {
    log('fault injection asked for: the server runs in demo mode (WEBSWARM_MODE=demo)');
    options = { ...options, mode: 'demo' };
  }
  // An empty value is no number (Number('') is 0: before, `--volunteers ''` started no tab and said nothing of it).
  const given = v.volunteers === undefined ? null : v.volunteers.trim() === '' ? Number.NaN : Number(v.volunteers);
  if (given !== null && (!Number.isInteger(given) || given < 0 || given > MAX_LOCAL_TABS))
    throw new Error(`--volunteers must be an integer in [0, ${MAX_LOCAL_TABS}]\n${USAGE}`);
  // Not given: one tab a replica, at most MAX_LOCAL_TABS (before, STAGES × REDUNDANCY over it blamed --volunteers).
  const full = options.stages * options.redundancy;
  const wanted = given ?? Math.min(full, MAX_LOCAL_TABS);
  if (given === null && full > MAX_LOCAL_TABS)
    log(
      `STAGES × REDUNDANCY is ${full}, more tabs than this machine's local swarm starts (${MAX_LOCAL_TABS}): starting ${MAX_LOCAL_TABS}; a stage short of r volunteers waits for more (or the fallback computes it)`,
    );
  // Chromium first, before minutes of work: without it the server still starts, with no local tabs.
  let volunteers = wanted;
  if (volunteers > 0) {
    const chromium = ensureChromium(log);
    if (!chromium.ok) {
      log(`${chromium.message}`);
      log('Starting the server without local volunteer tabs (`npm start -- --volunteers 0` asks for that on purpose).');
      volunteers = 0;
    }
  }
  log('building the web app (vite build)…');
  buildWebApp(out);
  const server = await startServer(options, createLogger(options.logLevel, status ?? undefined, format));
  const { url } = server.address();
  log(`webswarm is listening at ${url}/`);
  let swarm: Awaited<ReturnType<typeof startLocalSwarm>> | null = null;
  if (volunteers > 0) {
    log(`starting ${volunteers} headless Chromium volunteer tab(s)…`);
    const progress =
      status === null ? null : watchProgress(url, { expected: volunteers, redundancy: options.redundancy }, (l) => status.set(l));
    try {
      swarm = await startLocalSwarm({ serverUrl: url, volunteers, faultOf, log });
    } finally {
      progress?.stop();
      status?.clear();
    }
    log(`${volunteers} volunteer(s) ready, ${seconds()} after start`);
  }
  log(`chat with the swarm: ${url}/chat`);
  if (volunteers < wanted) {
    log(
      `no local volunteers: open ${url}/volunteer in any browser, one tab per volunteer ` +
        `(${options.stages} stages × ${options.redundancy} replicas = ${options.stages * options.redundancy} tabs for a full vote), ` +
        'or install Chromium and run npm start again for the headless local swarm',
    );
  } else {
    log(`volunteer a tab: ${url}/volunteer   ·   run the model alone in a tab: ${url}/check`);
  }
  let stopping = false;
  const stop = (why: string) => {
    if (stopping) return;
    stopping = true;
    log(`stopping (${why}): closing the volunteer tabs and the server`);
    void (async () => {
      await swarm?.close();
      await server.close();
      process.exit(0);
    })();
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
  // npm (or whatever started this) ended without passing its signal on: stop as on SIGTERM, not run on orphaned.
  whenParentGone(() => stop('the process that started this server has ended'));
});
