import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { stripVTControlCharacters } from 'node:util';

/** vite's CLI (its package exports do not name it), so that a build can run in any folder. */
const VITE = fileURLToPath(new URL('../node_modules/vite/bin/vite.js', import.meta.url));

/** Where a build's output goes: colours stay only where `isTTY` says a person reads them. */
export interface BuildOutput {
  readonly isTTY?: boolean;
  write(chunk: string): unknown;
}

/**
 * Runs `vite ARGS` in `cwd` and copies its output to `out`; throws when it fails.
 * Rolldown colours its warnings whatever the output is (NO_COLOR does not stop
 * it), so escape codes are stripped unless `out` is a terminal.
 */
export function runVite(args: readonly string[], out: BuildOutput = process.stdout, cwd = process.cwd()): void {
  // A production build wherever it runs: under vitest (NODE_ENV=test, which the e2e suite's build inherited) Vite
  // bundled React's development build, twice the size and slower, so the specs tested a page nobody is served.
  const env = { ...process.env, NODE_ENV: 'production' };
  const r = spawnSync(process.execPath, [VITE, ...args], { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const text = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  if (text !== '') out.write(out.isTTY === true ? text : stripVTControlCharacters(text));
  if (r.status !== 0)
    throw new Error(`vite ${args.join(' ')} failed with exit code ${r.status}${r.error === undefined ? '' : `: ${r.error.message}`}`);
}

/** Builds the web app and embed.js (vite build into dist/); throws when a build fails. */
export function buildWebApp(out: BuildOutput = process.stdout): void {
  for (const extra of [[], ['-c', 'vite.embed.config.ts']]) runVite(['build', '--logLevel', 'warn', ...extra], out);
}
