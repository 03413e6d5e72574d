import { ensureChromium } from '../tools/ensure-chromium.js';
import { buildWebApp } from './harness.js';

/**
 * Chromium first (installed when this machine allows it), before the build:
 * without one every spec would fail the same way. A missing Chromium ends the
 * run with its one message: a thrown error would be printed under vitest's
 * "No test files found" and a stack trace.
 */
export default function setup(): void {
  const chromium = ensureChromium((line) => process.stdout.write(`${line}\n`));
  if (!chromium.ok) {
    process.stderr.write(`error: ${chromium.message}\n`);
    process.exit(1);
  }
  buildWebApp();
}
