// A server that cannot listen says which settings to change: a real server
// holds a port, a second one asks for the same port, a third for a host this
// machine does not have. Before: Node's bare "listen EADDRINUSE: address
// already in use 127.0.0.1:8080", naming neither PORT nor HOST.
import { afterEach, describe, expect, it } from 'vitest';
import { createSignalServer, type SignalServer } from './server.js';

const servers: SignalServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close().catch(() => undefined);
});

function server(port: number, host = '127.0.0.1'): SignalServer {
  const s = createSignalServer({ port, host, webRoot: null, models: [] });
  servers.push(s);
  return s;
}

describe('a server that cannot listen', () => {
  it('a port in use: the error names HOST and PORT and keeps the cause', async () => {
    const first = server(0);
    await first.ready;
    const { port } = new URL(first.address().url);
    const e = await server(Number(port)).ready.then(
      () => null,
      (err: unknown) => err as Error,
    );
    expect(e?.message).toMatch(new RegExp(`^cannot listen on 127\\.0\\.0\\.1:${port} \\(HOST, PORT\\): listen EADDRINUSE`));
    expect((e?.cause as NodeJS.ErrnoException | undefined)?.code).toBe('EADDRINUSE');
  });

  it('an address this machine does not have: the same, with EADDRNOTAVAIL', async () => {
    // 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never a local address.
    const e = await server(0, '192.0.2.7').ready.then(
      () => null,
      (err: unknown) => err as Error,
    );
    expect(e?.message).toMatch(/^cannot listen on 192\.0\.2\.7:0 \(HOST, PORT\): listen EADDRNOTAVAIL/);
  });
});
