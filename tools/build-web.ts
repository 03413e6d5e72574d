import { spawnSync } from 'node:child_process';

/** Builds the web app and embed.js (vite build into dist/); throws when a build fails. */
export function buildWebApp(): void {
  for (const extra of [[], ['-c', 'vite.embed.config.ts']]) {
    const r = spawnSync(process.execPath, ['node_modules/vite/bin/vite.js', 'build', '--logLevel', 'warn', ...extra], { stdio: 'inherit' });
    if (r.status !== 0) throw new Error(`vite build ${extra.join(' ')} failed with exit code ${r.status}`);
  }
}
