// Raw TCP connections that send nothing, against a real server on port 0: an address may hold twice
// MAX_SOCKETS_PER_ADDRESS connections of any kind (here 2 × 4), one more is closed as it opens. Before, plain
// connections were bounded only by the HTTP timeouts (each closed after 10 s without headers), so one address held
// as many as it opened meanwhile. Each client comes from its own loopback address (127.0.0.x, not one of
// LOCAL_ADDRESSES); a trusted proxy's connections are not counted.
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { scrapeMetrics } from '../testing/metrics-scrape.js';
import { rawTcp } from './testing/raw-tcp.js';
import { serverLog } from './testing/server-log.js';
import { tinyServerForFile } from './testing/tiny-stages.js';

const log = serverLog();
const server = tinyServerForFile('webswarm-tcp-conns-', { logger: log.logger, maxSocketsPerAddress: 4 });
const behindProxy = tinyServerForFile('webswarm-tcp-proxy-', { maxSocketsPerAddress: 4, trustedProxies: ['127.0.0.33'] });

/** A TCP connection to `url` from `address`, once connected; it sends nothing. */
const open = (url: string, address: string) => rawTcp(url, address);

const settle = () => new Promise((r) => setTimeout(r, 400));
/** Waits for `c` to be closed, at most 3 s (the server closes it at once; a loaded machine may take a while to say). */
const closedWithin = (c: { closed: Promise<number> }) => Promise.race([c.closed, new Promise((r) => setTimeout(r, 3_000))]);
const refused = async (url: string) =>
  (await scrapeMetrics(url, ['webswarm_tcp_connections_refused_total'])).webswarm_tcp_connections_refused_total;

describe('TCP connections per address', () => {
  it('the ninth from one address is closed as it opens; another address, and one after a place frees, are not', async () => {
    const url = server().address().url;
    const before = await refused(url);
    const held = await Promise.all(Array.from({ length: 8 }, () => open(url, '127.0.0.31')));
    const ninth = await open(url, '127.0.0.31');
    const other = await open(url, '127.0.0.32');
    await closedWithin(ninth);
    expect(held.map((c) => c.isOpen())).toEqual(Array(8).fill(true));
    expect(ninth.isOpen()).toBe(false);
    expect(other.isOpen()).toBe(true);
    expect(await refused(url)).toBe(before + 1);
    expect(log.lines.some((l) => l.includes('closed a connection from 127.0.0.31: as it opened, the address holds 8 already'))).toBe(true);
    // A place given back when a connection closes.
    held[0]?.socket.destroy();
    await settle();
    const again = await open(url, '127.0.0.31');
    await settle();
    expect(again.isOpen()).toBe(true);
    // Pages from there still reach the server over HTTP once connections close: not locked out.
    for (const c of [...held, again, other]) c.socket.destroy();
    await settle();
    const page = await open(url, '127.0.0.31');
    page.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const text = await new Promise<string>((r) => {
      let got = '';
      page.socket.on('data', (b: Buffer) => (got += b.toString()));
      page.socket.once('close', () => r(got));
    });
    expect(text).toMatch(/^HTTP\/1\.1 200/);
  });

  it('a connection upgraded to a WebSocket gives its place back: 4 Socket.IO connections and 8 plain ones stay open', async () => {
    const url = server().address().url;
    const sockets = await Promise.all(
      Array.from(
        { length: 4 },
        () =>
          new Promise<WebSocket>((resolve, reject) => {
            const ws = new WebSocket(`${url.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket`, { localAddress: '127.0.0.34' });
            ws.once('message', () => resolve(ws)); // Engine.IO's open packet
            ws.once('error', reject);
          }),
      ),
    );
    const plain = await Promise.all(Array.from({ length: 8 }, () => open(url, '127.0.0.34')));
    await settle();
    expect(sockets.every((ws) => ws.readyState === WebSocket.OPEN)).toBe(true);
    expect(plain.every((c) => c.isOpen())).toBe(true);
    // The ninth plain one is over.
    const ninth = await open(url, '127.0.0.34');
    await closedWithin(ninth);
    expect(ninth.isOpen()).toBe(false);
    for (const ws of sockets) ws.close();
    for (const c of plain) c.socket.destroy();
  });

  it('an upgrade request to a path nobody serves keeps its place (a client ignoring the half-close would hold it)', async () => {
    const url = server().address().url;
    // Before: any upgrade request gave its place back, and 40 of them from one address were held past a limit of 8.
    const upgrades = await Promise.all(Array.from({ length: 8 }, () => open(url, '127.0.0.35')));
    for (const c of upgrades) c.socket.write('GET /elsewhere HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
    await settle();
    const plain = await open(url, '127.0.0.35');
    await closedWithin(plain);
    expect(plain.isOpen()).toBe(false);
    for (const c of upgrades) c.socket.destroy();
  });

  it('a trusted proxy’s connections are not counted: every client behind it arrives from its address', async () => {
    const url = behindProxy().address().url;
    const many = await Promise.all(Array.from({ length: 12 }, () => open(url, '127.0.0.33')));
    await settle();
    expect(many.every((c) => c.isOpen())).toBe(true);
    for (const c of many) c.socket.destroy();
  });
});
