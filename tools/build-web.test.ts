// Vite's (rolldown's) warnings reach a log file without escape codes, and a
// terminal with its colours; a failed build throws after showing why.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runVite } from './build-web.js';

const ESC = '\u001b';
const MAIN = "import { two } from './two.js';\neval('1');\nconsole.log(two);\n";

function output(isTTY: boolean): { isTTY: boolean; text: () => string; write(chunk: string): void } {
  const chunks: string[] = [];
  return { isTTY, text: () => chunks.join(''), write: (chunk: string) => void chunks.push(chunk) };
}

describe('runVite', () => {
  let project = '';
  beforeAll(() => {
    // A tiny page whose build warns (direct eval), as real builds do now and then.
    project = mkdtempSync(join(tmpdir(), 'webswarm-vite-'));
    writeFileSync(join(project, 'index.html'), '<script type="module" src="./main.js"></script>\n');
    writeFileSync(join(project, 'main.js'), MAIN);
    writeFileSync(join(project, 'two.js'), 'export const two = 2;\n');
  });
  afterAll(() => rmSync(project, { recursive: true, force: true }));

  it('strips the escape codes of a warning when the output is not a terminal, and keeps them on one', () => {
    const log = output(false);
    runVite(['build', '--logLevel', 'warn'], log, project);
    expect(log.text()).toContain('[EVAL]');
    expect(log.text()).toContain('Use of direct `eval`');
    expect(log.text(), 'no escape code in a non-terminal log').not.toContain(ESC);

    const terminal = output(true);
    runVite(['build', '--logLevel', 'warn'], terminal, project);
    expect(terminal.text(), 'rolldown colours its warnings: the terminal keeps them').toContain(ESC);
  });

  it('builds for production under vitest too (NODE_ENV=test here): code for development only is left out', () => {
    expect(process.env.NODE_ENV).toBe('test');
    writeFileSync(
      join(project, 'main.js'),
      "if (process.env.NODE_ENV !== 'production') console.log('DEVELOPMENT ONLY');\nconsole.log('shipped');\n",
    );
    try {
      runVite(['build', '--logLevel', 'warn'], output(false), project);
    } finally {
      writeFileSync(join(project, 'main.js'), MAIN);
    }
    const assets = join(project, 'dist', 'assets');
    const js = readdirSync(assets)
      .filter((f) => f.endsWith('.js'))
      .map((f) => readFileSync(join(assets, f), 'utf8'))
      .join('');
    expect(js).toContain('shipped');
    expect(js).not.toContain('DEVELOPMENT ONLY');
  });

  it('throws when the build fails, after writing why (stripped)', () => {
    writeFileSync(join(project, 'two.js'), 'export const three = 3;\n');
    const log = output(false);
    expect(() => runVite(['build', '--logLevel', 'warn'], log, project)).toThrow(/vite build --logLevel warn failed with exit code 1/);
    expect(log.text()).toContain('"two" is not exported by "two.js"');
    expect(log.text(), 'no escape code in a non-terminal log').not.toContain(ESC);
  });
});
