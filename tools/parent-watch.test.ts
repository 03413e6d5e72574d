// A real process tree: this test starts a parent (as npm), which starts a child that watches it (as the server
// under npm start), then the parent is killed by its PID alone; the child must notice and end on its own.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), 'webswarm-parent-watch-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('whenParentGone', () => {
  it('tells a child whose parent was killed by its PID alone, within a few intervals; not while the parent lives', async () => {
    const watch = resolve('tools/parent-watch.ts');
    const child = join(dir, 'child.mts');
    writeFileSync(
      child,
      `import { whenParentGone } from ${JSON.stringify(watch)};\n` +
        `console.log('child ' + process.pid);\n` +
        `whenParentGone(() => { console.error('parent gone'); process.exit(0); }, 100);\n` +
        'setInterval(() => {}, 1000);\n',
    );
    const parentScript = join(dir, 'parent.mjs');
    writeFileSync(
      parentScript,
      "import { spawn } from 'node:child_process';\n" +
        `spawn(process.execPath, ['--import', 'tsx', ${JSON.stringify(child)}], { stdio: 'inherit' });\n` +
        'setInterval(() => {}, 1000);\n',
    );
    const parent: ChildProcess = spawn(process.execPath, [parentScript], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    parent.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
    });
    let childPid = 0;
    try {
      for (const deadline = Date.now() + 20_000; childPid === 0 && Date.now() < deadline; ) {
        childPid = Number(/child (\d+)/.exec(out)?.[1] ?? 0);
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(childPid).toBeGreaterThan(0);
      // Its parent alive: it runs on.
      await new Promise((r) => setTimeout(r, 500));
      expect(alive(childPid)).toBe(true);
      process.kill(parent.pid as number, 'SIGKILL');
      let gone = false;
      for (const deadline = Date.now() + 10_000; !gone && Date.now() < deadline; ) {
        gone = !alive(childPid);
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(gone, 'the child ended on its own once its parent was gone').toBe(true);
    } finally {
      if (childPid > 0 && alive(childPid)) process.kill(childPid, 'SIGKILL');
      if (parent.exitCode === null && parent.signalCode === null) parent.kill('SIGKILL');
    }
  });
});
