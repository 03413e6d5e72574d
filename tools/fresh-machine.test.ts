// README's two commands on a machine without Chromium, run as a newcomer
// would (npm itself, in child processes): Chromium hidden (a PATH without it,
// or CHROMIUM_PATH pointing nowhere) and the install step in dry-run mode.
// `npm test` stops at once with one message; `npm start` still starts the
// server and says how to add volunteers.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APT_GET } from './ensure-chromium.js';

/** Each child is given this long (a build, the stages and a server start take ≈ 5 s on 2 busy cores). */
const CHILD_TIMEOUT_MS = 90_000;
const DRY_RUN_LINE = 'Chromium is missing: would run `apt-get update && apt-get install -y chromium` (WEBSWARM_CHROMIUM_INSTALL=dry-run)';
/** What this machine would do for real: install (root with apt-get), so the dry run says what it would run. */
const WOULD_INSTALL = process.getuid?.() === 0 && existsSync(APT_GET);

/** npm's own script (`npm` on PATH is a link to it), run with this node. */
function npmCli(): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const npm = join(dir, 'npm');
    if (dir !== '' && existsSync(npm)) return realpathSync(npm);
  }
  throw new Error('npm is not on PATH: this test runs npm as a newcomer would');
}

interface Run {
  readonly code: number | null;
  readonly output: string;
}

let scratch = '';
let fresh: NodeJS.ProcessEnv = {};
const children: ChildProcess[] = [];

/** Runs npm with `args` in this repository, in a fresh machine's environment plus `env`. */
function npm(args: readonly string[], env: NodeJS.ProcessEnv = {}): { child: ChildProcess; output: () => string; done: Promise<Run> } {
  // Its own process group, so that the server (npm → sh → node) can be stopped as a whole.
  const child = spawn(process.execPath, [npmCli(), ...args], {
    env: { ...fresh, ...env },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const chunks: string[] = [];
  child.stdout?.on('data', (b: Buffer) => chunks.push(b.toString()));
  child.stderr?.on('data', (b: Buffer) => chunks.push(b.toString()));
  const output = () => chunks.join('');
  const done = new Promise<Run>((resolve, reject) => {
    const timer = setTimeout(() => {
      stopGroup(child);
      reject(new Error(`npm ${args.join(' ')} still running after ${CHILD_TIMEOUT_MS} ms; output:\n${output()}`));
    }, CHILD_TIMEOUT_MS);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output: output() });
    });
  });
  return { child, output, done };
}

function stopGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGTERM');
  } catch {}
}

/** Resolves with the output once `pattern` has appeared; rejects if the child exits or the time runs out first. */
async function waitFor(run: ReturnType<typeof npm>, pattern: RegExp): Promise<string> {
  const deadline = Date.now() + CHILD_TIMEOUT_MS;
  while (!pattern.test(run.output())) {
    if (run.child.exitCode !== null) throw new Error(`exited ${run.child.exitCode} before ${pattern}; output:\n${run.output()}`);
    if (Date.now() > deadline) throw new Error(`no ${pattern} after ${CHILD_TIMEOUT_MS} ms; output:\n${run.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return run.output();
}

/** Starts `npm start` and checks that its server answers and it says how to add volunteers; stops it by its process id. */
async function startsWithoutLocalTabs(env: NodeJS.ProcessEnv, extraArgs: readonly string[] = []): Promise<string> {
  const run = npm(['start', '--', '--port', '0', '--stage-cache', join(scratch, 'stages'), ...extraArgs], env);
  try {
    const out = await waitFor(run, /\n(no local volunteers: open|volunteer a tab:) http:\/\/[^\s]+\/volunteer/);
    const url = /webswarm is listening at (http:\/\/127\.0\.0\.1:\d+)\//.exec(out)?.[1];
    expect(url, `a listening URL in:\n${out}`).toBeDefined();
    const health = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(5000) });
    expect(health.status).toBe(200);
    // Not a terminal: the server's own logs stay pino's JSON lines.
    const jsonLines = out.split('\n').filter((l) => l.startsWith('{'));
    expect(jsonLines.length, `JSON log lines in:\n${out}`).toBeGreaterThan(0);
    for (const l of jsonLines) expect(JSON.parse(l)).toHaveProperty('msg');
    expect(out).not.toContain('\u001b[');
    return out;
  } finally {
    stopGroup(run.child);
    await run.done.catch(() => {});
  }
}

describe('a fresh machine without Chromium', () => {
  beforeAll(() => {
    scratch = mkdtempSync(join(tmpdir(), 'webswarm-fresh-'));
    // A PATH with node and sh (npm runs scripts with it) and nothing else: no chromium on it (apt-get is found by its own path).
    const bin = join(scratch, 'bin');
    mkdirSync(bin);
    symlinkSync(process.execPath, join(bin, 'node'));
    symlinkSync('/bin/sh', join(bin, 'sh'));
    // npm's update check would go to the registry: loopback only in tests.
    fresh = { PATH: bin, HOME: join(scratch, 'home'), WEBSWARM_CHROMIUM_INSTALL: 'dry-run', npm_config_update_notifier: 'false' };
  });
  afterAll(() => {
    for (const c of children) stopGroup(c);
    rmSync(scratch, { recursive: true, force: true });
  });

  it('npm test stops at once with one message naming what to install, how, and CHROMIUM_PATH', async () => {
    const { code, output } = await npm(['test']).done;
    expect(code).toBe(1);
    expect(output.includes(DRY_RUN_LINE), `the dry run's command in:\n${output}`).toBe(WOULD_INSTALL);
    const errors = output.split('\n').filter((l) => l.startsWith('error:'));
    expect(errors, output).toHaveLength(1);
    expect(errors[0]).toContain('no Chromium: `chromium` is not on PATH and CHROMIUM_PATH is not set');
    expect(errors[0]).toContain('`sudo apt-get install -y chromium`');
    expect(errors[0]).toContain('set CHROMIUM_PATH to a Chromium or Chrome binary');
    // Early: before the typecheck, not after minutes of tests.
    expect(output).not.toContain('tsc -p');
  });

  it("the end-to-end tests' setup stops before building, with the message naming CHROMIUM_PATH", async () => {
    const index = join('dist', 'index.html');
    const builtBefore = existsSync(index) ? statSync(index).mtimeMs : null;
    const { code, output } = await npm(['run', 'test:e2e', '--', 'e2e/dashboard.spec.ts'], { CHROMIUM_PATH: '/nonexistent' }).done;
    expect(code).toBe(1);
    expect(output).toContain('error: CHROMIUM_PATH=/nonexistent: no such file. Point CHROMIUM_PATH at a Chromium or Chrome binary');
    // A pinned path is the user's choice: nothing is installed over it.
    expect(output).not.toContain('would run');
    expect(output).not.toMatch(/✓|passed/);
    expect(existsSync(index) ? statSync(index).mtimeMs : null, 'dist/ was not rebuilt').toBe(builtBefore);
  });

  it('npm start with CHROMIUM_PATH pointing nowhere names the variable first, then serves and says how to volunteer', async () => {
    const out = await startsWithoutLocalTabs({ CHROMIUM_PATH: '/nonexistent' });
    const lines = out.split('\n');
    const first = lines.findIndex((l) => l.startsWith('CHROMIUM_PATH=/nonexistent: no such file.'));
    expect(first, out).toBeGreaterThanOrEqual(0);
    expect(first, 'said before the build').toBeLessThan(lines.findIndex((l) => l.startsWith('building the web app')));
    expect(out).toContain('`npm start -- --volunteers 0` asks for that on purpose');
    expect(out).toMatch(
      /no local volunteers: open http:\/\/127\.0\.0\.1:\d+\/volunteer in any browser, one tab per volunteer \(3 stages × 3 replicas = 9 tabs/,
    );
    expect(out).toContain('or install Chromium and run npm start again');
  });

  it('npm start without chromium on PATH tries the install (a dry run here), then still serves', async () => {
    const out = await startsWithoutLocalTabs({});
    expect(out.includes(DRY_RUN_LINE), `the dry run's command in:\n${out}`).toBe(WOULD_INSTALL);
    expect(out).toContain('no Chromium: `chromium` is not on PATH and CHROMIUM_PATH is not set');
    expect(out).toMatch(/no local volunteers: open http:\/\/127\.0\.0\.1:\d+\/volunteer in any browser/);
  });

  it('npm start -- --volunteers 0 asks for no browser at all', async () => {
    const out = await startsWithoutLocalTabs({}, ['--volunteers', '0']);
    expect(out).not.toContain('Chromium');
    expect(out).toMatch(/volunteer a tab: http:\/\/127\.0\.0\.1:\d+\/volunteer/);
  });
});
