/**
 * Finds the Chromium that the local swarm and the end-to-end tests drive, and
 * installs Debian's when it is missing and this machine allows it (root with
 * apt-get). The one place that knows how: `npm start`, `npm test` (and so
 * `.ci/run`) and the e2e global setup all call it.
 *
 * Run alone (`node --import tsx tools/ensure-chromium.ts`) it prints the path
 * found, or the reason and what to do, and exits 1.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/** Debian's package, and where Debian puts apt-get (looked up by path: PATH may be anything). */
export const APT_GET = '/usr/bin/apt-get';
export const INSTALL_COMMAND = 'apt-get update && apt-get install -y chromium';
const INSTALL_MODES = ['auto', 'dry-run', 'off'] as const;
export type InstallMode = (typeof INSTALL_MODES)[number];
/** The environment variable that sets the install mode. */
export const INSTALL_MODE_VAR = 'WEBSWARM_CHROMIUM_INSTALL';

export type ChromiumResult = { readonly ok: true; readonly path: string } | { readonly ok: false; readonly message: string };

/** What a machine offers for an install; the real machine's by default, a test's own otherwise. */
export interface Machine {
  readonly env: NodeJS.ProcessEnv;
  readonly isRoot: boolean;
  /** Runs one command to the end: its exit status and its output (for the error message). */
  readonly run: (file: string, args: readonly string[]) => { status: number | null; output: string };
}

export function thisMachine(env: NodeJS.ProcessEnv = process.env): Machine {
  return {
    env,
    isRoot: process.getuid?.() === 0,
    run(file, args) {
      const r = spawnSync(file, args, { env: { ...env, DEBIAN_FRONTEND: 'noninteractive' }, encoding: 'utf8' });
      return { status: r.status, output: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error === undefined ? '' : r.error.message}` };
    },
  };
}

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

const APT_HINT = 'Debian or Ubuntu: `sudo apt-get install -y chromium`';
const HOW = `Install it (${APT_HINT}; as root on Debian, npm start and npm test do this themselves), or set CHROMIUM_PATH to a Chromium or Chrome binary.`;

/**
 * Where Chromium is, without installing anything: CHROMIUM_PATH when it is set
 * (then it must be an executable file), else `chromium` on PATH.
 */
export function findChromium(env: NodeJS.ProcessEnv): ChromiumResult & { readonly pinned: boolean } {
  const pinned = env.CHROMIUM_PATH;
  if (pinned !== undefined && pinned !== '') {
    if (isExecutableFile(pinned)) return { ok: true, path: pinned, pinned: true };
    let why = 'no such file';
    try {
      why = statSync(pinned).isFile() ? 'not executable' : 'not a file';
    } catch {}
    return {
      ok: false,
      pinned: true,
      message: `CHROMIUM_PATH=${pinned}: ${why}. Point CHROMIUM_PATH at a Chromium or Chrome binary, or unset it to use \`chromium\` from PATH (${APT_HINT}).`,
    };
  }
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const path = join(dir, 'chromium');
    if (isExecutableFile(path)) return { ok: true, path, pinned: false };
  }
  return { ok: false, pinned: false, message: missing('') };
}

/** The one message for a missing Chromium: what, why it was not installed (when it was tried), how, and CHROMIUM_PATH. */
function missing(why: string): string {
  return `no Chromium: \`chromium\` is not on PATH and CHROMIUM_PATH is not set${why === '' ? '' : `, and ${why}`}. ${HOW}`;
}

function installMode(env: NodeJS.ProcessEnv): InstallMode | { error: string } {
  const v = env[INSTALL_MODE_VAR];
  if (v === undefined || v === '') return 'auto';
  return (INSTALL_MODES as readonly string[]).includes(v)
    ? (v as InstallMode)
    : { error: `${INSTALL_MODE_VAR} must be one of ${INSTALL_MODES.join(', ')}, got "${v}"` };
}

/**
 * Chromium's path; when it is missing (and CHROMIUM_PATH does not pin another
 * one), installs Debian's with apt-get if running as root, saying so in one
 * line. Otherwise, or when the install fails, one message: what is missing,
 * how to install it, and CHROMIUM_PATH. `WEBSWARM_CHROMIUM_INSTALL=dry-run`
 * prints the command instead of running it and fails as if it could not;
 * `off` never installs.
 */
export function ensureChromium(log: (line: string) => void, m: Machine = thisMachine()): ChromiumResult {
  const found = findChromium(m.env);
  if (found.ok || found.pinned) return found;
  const mode = installMode(m.env);
  if (typeof mode !== 'string') return { ok: false, message: mode.error };
  const cannot = (why: string): ChromiumResult => ({ ok: false, message: missing(why) });
  if (mode === 'off') return cannot(`${INSTALL_MODE_VAR}=off, so it was not installed`);
  if (!m.isRoot) return cannot('this is not root, so it was not installed');
  if (!isExecutableFile(APT_GET)) return cannot(`there is no ${APT_GET} to install it with`);
  if (mode === 'dry-run') {
    log(`Chromium is missing: would run \`${INSTALL_COMMAND}\` (${INSTALL_MODE_VAR}=dry-run)`);
    return cannot(`${INSTALL_MODE_VAR}=dry-run, so nothing was installed`);
  }
  log(`Chromium is missing: installing Debian's chromium (${INSTALL_COMMAND}), a few minutes…`);
  for (const args of [
    ['update', '-qq'],
    ['install', '-y', '-qq', 'chromium'],
  ]) {
    const r = m.run(APT_GET, args);
    if (r.status !== 0) {
      const tail = r.output.trim().split('\n').slice(-3).join(' / ');
      return cannot(`\`apt-get ${args.join(' ')}\` failed (exit code ${r.status}: ${tail})`);
    }
  }
  const after = findChromium(m.env);
  if (after.ok) return after;
  // Debian's package puts it here; PATH may not include it.
  if (isExecutableFile('/usr/bin/chromium'))
    return {
      ok: false,
      message: "installed Debian's chromium at /usr/bin/chromium, but it is not on PATH: set CHROMIUM_PATH=/usr/bin/chromium",
    };
  return cannot('apt-get install chromium succeeded but no chromium binary appeared');
}

const isMain = process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'));
if (isMain) {
  const r = ensureChromium((line) => process.stdout.write(`${line}\n`));
  if (r.ok) {
    process.stdout.write(`Chromium: ${r.path}\n`);
  } else {
    process.stderr.write(`error: ${r.message}\n`);
    process.exit(1);
  }
}
