import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveWebApp } from './static-files.js';

// A real HTTP server on 127.0.0.1 serving a small web root through serveWebApp.
let root: string;
let server: Server;
let base: string;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'webswarm-static-'));
  for (const page of ['', 'volunteer', 'chat', 'dashboard', 'embed', 'consent', 'check']) {
    mkdirSync(join(root, page), { recursive: true });
    writeFileSync(join(root, page, 'index.html'), `<!doctype html><title>${page}</title>`);
  }
  mkdirSync(join(root, 'assets'));
  writeFileSync(join(root, 'assets', 'volunteer-abc.js'), 'export {};');
  server = createServer((req, res) => {
    if (!serveWebApp(res, root, new URL(req.url ?? '/', 'http://x').pathname)) res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((r) => server?.close(r));
  rmSync(root, { recursive: true, force: true });
});

async function headersOf(path: string): Promise<Headers> {
  const res = await fetch(`${base}${path}`);
  expect(res.status, path).toBe(200);
  await res.arrayBuffer();
  return res.headers;
}

describe('serveWebApp framing headers', () => {
  it.each(['/', '/volunteer', '/volunteer/', '/volunteer/index.html', '/chat', '/dashboard', '/check'])(
    '%s may be framed by its own origin only',
    async (path) => {
      const h = await headersOf(path);
      expect(h.get('content-security-policy')).toBe("frame-ancestors 'self'");
      expect(h.get('x-frame-options')).toBe('SAMEORIGIN');
      // Cross-origin isolation stays on (threads for onnxruntime-web).
      expect(h.get('cross-origin-opener-policy')).toBe('same-origin');
      expect(h.get('cross-origin-embedder-policy')).toBe('require-corp');
      expect(h.get('cross-origin-resource-policy')).toBe('same-origin');
    },
  );

  it.each(['/embed', '/embed/', '/embed/index.html'])(
    '%s (the widget frame) may be framed by any origin, isolated or not',
    async (path) => {
      const h = await headersOf(path);
      expect(h.get('content-security-policy')).toBeNull();
      expect(h.get('x-frame-options')).toBeNull();
      expect(h.get('cross-origin-resource-policy')).toBe('cross-origin');
      expect(h.get('cross-origin-embedder-policy')).toBe('require-corp');
    },
  );

  it.each(['/consent', '/consent/'])(
    '%s (the widget’s consent window) may be framed by nobody, and stays tied to the frame that opened it (no COOP same-origin)',
    async (path) => {
      const h = await headersOf(path);
      expect(h.get('content-security-policy')).toBe("frame-ancestors 'none'");
      expect(h.get('x-frame-options')).toBe('DENY');
      // With same-origin, a window opened from a frame on another site's page is cut from it: the frame never hears.
      expect(h.get('cross-origin-opener-policy')).toBe('unsafe-none');
    },
  );

  it('leaves scripts and other files alone', async () => {
    const h = await headersOf('/assets/volunteer-abc.js');
    expect(h.get('content-security-policy')).toBeNull();
    expect(h.get('x-frame-options')).toBeNull();
    expect(h.get('cross-origin-resource-policy')).toBe('same-origin');
    expect(h.get('cache-control')).toContain('immutable');
  });
});
