import { spawnSync } from 'node:child_process';

/** Builds the web app (vite build into dist/); throws when the build fails. */
export function buildWebApp(): void {
  const r = spawnSync(process.execPath, ['node_modules/vite/bin/vite.js', 'build', '--logLevel', 'warn'], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`vite build failed with exit code ${r.status}`);
}
