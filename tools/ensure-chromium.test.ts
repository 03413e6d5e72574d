// Finding Chromium (CHROMIUM_PATH, else `chromium` on PATH) and the reasons an
// install is not attempted, each in the one message that names what to do.
// The install itself (apt-get as root) is exercised in dry-run mode by
// fresh-machine.test.ts.
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureChromium, findChromium, thisMachine } from './ensure-chromium.js';

describe('finding Chromium', () => {
  let dir = '';
  let withChromium = '';
  let withoutChromium = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'webswarm-chromium-'));
    withChromium = join(dir, 'a');
    withoutChromium = join(dir, 'b');
    mkdirSync(withChromium);
    mkdirSync(withoutChromium);
    writeFileSync(join(withChromium, 'chromium'), '#!/bin/sh\n');
    chmodSync(join(withChromium, 'chromium'), 0o755);
    writeFileSync(join(withoutChromium, 'chromium'), 'not executable\n');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('takes the first executable `chromium` on PATH, skipping one that is not executable', () => {
    const found = findChromium({ PATH: `${withoutChromium}:${withChromium}` });
    expect(found).toEqual({ ok: true, path: join(withChromium, 'chromium'), pinned: false });
    expect(findChromium({ PATH: withoutChromium })).toMatchObject({ ok: false });
  });

  it('takes CHROMIUM_PATH over PATH, and names it, with why, when it points at nothing usable', () => {
    const env = { PATH: withChromium };
    expect(findChromium({ ...env, CHROMIUM_PATH: join(withChromium, 'chromium') })).toMatchObject({ ok: true, pinned: true });
    const message = (p: string) => {
      const r = findChromium({ ...env, CHROMIUM_PATH: p });
      return r.ok ? 'found' : r.message;
    };
    expect(message('/nonexistent')).toMatch(/^CHROMIUM_PATH=\/nonexistent: no such file\. Point CHROMIUM_PATH at a Chromium/);
    expect(message(withChromium)).toMatch(/^CHROMIUM_PATH=.*\/a: not a file\./);
    expect(message(join(withoutChromium, 'chromium'))).toMatch(/^CHROMIUM_PATH=.*\/b\/chromium: not executable\./);
  });

  it('does not install over a CHROMIUM_PATH that points nowhere', () => {
    const lines: string[] = [];
    const r = ensureChromium((l) => lines.push(l), { ...thisMachine({ PATH: '', CHROMIUM_PATH: '/nonexistent' }), isRoot: true });
    expect(r).toMatchObject({ ok: false });
    expect(lines).toEqual([]);
  });

  it('says why it did not install, in the one message with the command and CHROMIUM_PATH', () => {
    const attempt = (env: NodeJS.ProcessEnv, isRoot: boolean): string => {
      const lines: string[] = [];
      const r = ensureChromium((l) => lines.push(l), { ...thisMachine({ PATH: withoutChromium, ...env }), isRoot });
      expect(lines, 'nothing run, nothing said before the message').toEqual([]);
      return r.ok ? 'found' : r.message;
    };
    const notRoot = attempt({}, false);
    expect(notRoot).toContain('no Chromium: `chromium` is not on PATH and CHROMIUM_PATH is not set');
    expect(notRoot).toContain('`sudo apt-get install -y chromium`');
    expect(notRoot).toContain('set CHROMIUM_PATH to a Chromium or Chrome binary');
    expect(attempt({}, false)).toContain(', and this is not root, so it was not installed.');
    expect(attempt({ WEBSWARM_CHROMIUM_INSTALL: 'off' }, true)).toContain(', and WEBSWARM_CHROMIUM_INSTALL=off, so it was not installed.');
    expect(attempt({ WEBSWARM_CHROMIUM_INSTALL: 'yes' }, true)).toBe(
      'WEBSWARM_CHROMIUM_INSTALL must be one of auto, dry-run, off, got "yes"',
    );
  });
});
