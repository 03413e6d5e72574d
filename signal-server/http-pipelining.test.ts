// HTTP/1.1 pipelining from a hostile client, against a real server on port 0 (raw TCP; found by a red-team pass):
// Node hands a connection's pipelined requests to the server all at once and queues their responses, and when the
// connection closed it told none of the queued ones. 1 598 `GET`s of a file in one write held 3 196 descriptors for
// two connections, for good; API requests queued behind a stalled response kept their concurrency slots for good, and
// their address was answered 429 from then on. Now a connection may have 8 requests in flight (one more closes it),
// a file is opened only when its response is the one being written, and a closed connection's queued responses close.
import { describe, expect, it } from 'vitest';
import { scrapeMetrics } from '../testing/metrics-scrape.js';
import { MAX_PIPELINED } from './pipelined-requests.js';
import { assetServerForFile, openFiles, rawTcp } from './testing/raw-tcp.js';

const { server, lines } = assetServerForFile('webswarm-pipelining-', { 'big.bin': 32 * 1024 * 1024, 'small.bin': 256 * 1024 }, 1_000);

const pipeliningRefused = async () =>
  (await scrapeMetrics(server().address().url, ['webswarm_http_pipelining_refused_total'])).webswarm_http_pipelining_refused_total;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const get = (path: string) => `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`;
/** An API request with a malformed body: answered 400 at once, once it holds its concurrency slot. */
const badPost = 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1\r\n\r\n{';

const filesOpen = () => openFiles('webswarm-pipelining-');
const raw = (address: string, paused = false) => rawTcp(server().address().url, address, paused);

/** One request on its own connection from `address`: the status line of its answer. */
async function statusOf(address: string, request: string): Promise<string> {
  const c = await raw(address);
  c.socket.write(request.replace('Host: x\r\n', 'Host: x\r\nConnection: close\r\n'));
  await Promise.race([c.closed, sleep(3_000)]);
  c.socket.destroy();
  return c.text().split('\r\n')[0] ?? '';
}

describe('pipelined requests', () => {
  it(`${MAX_PIPELINED} in one write are all answered, in order`, async () => {
    const c = await raw('127.0.0.71');
    c.socket.write(get('/healthz').repeat(MAX_PIPELINED));
    const end = Date.now() + 5_000;
    while ((c.text().match(/HTTP\/1\.1 200/g) ?? []).length < MAX_PIPELINED && Date.now() < end) await sleep(20);
    expect((c.text().match(/HTTP\/1\.1 200/g) ?? []).length).toBe(MAX_PIPELINED);
    expect(c.socket.destroyed).toBe(false);
    c.socket.destroy();
  });

  it(`${MAX_PIPELINED} in flight behind a download nobody reads stay open; one more closes the connection, counted and logged`, async () => {
    const before = await pipeliningRefused();
    const eight = await raw('127.0.0.74', true);
    eight.socket.write(get('/assets/big.bin') + get('/healthz').repeat(MAX_PIPELINED - 1));
    const nine = await raw('127.0.0.75', true);
    nine.socket.write(get('/assets/big.bin') + get('/healthz').repeat(MAX_PIPELINED));
    await sleep(300);
    expect(eight.socket.destroyed).toBe(false);
    // A paused client sees the close once it reads.
    nine.read(64 * 1024 * 1024);
    await Promise.race([nine.closed, sleep(3_000)]);
    expect(nine.isOpen()).toBe(false);
    expect(await pipeliningRefused()).toBe(before + 1);
    expect(lines.some((l) => l.includes(`closed a connection from 127.0.0.75: over ${MAX_PIPELINED} requests in flight on it`))).toBe(true);
    eight.socket.destroy();
  });

  it('1 000 GETs of a file in one write, read by nobody: the connection is closed and no file stays open', async () => {
    // Files the tests before this one still had open are closed first (fs.close is asynchronous).
    for (const end = Date.now() + 3_000; filesOpen() > 0 && Date.now() < end; ) await sleep(50);
    const before = filesOpen();
    const c = await raw('127.0.0.72', true);
    c.socket.write(get('/assets/small.bin').repeat(1_000));
    await sleep(500);
    // Before: each of the 1 000 opened the file and read some of it; after the close their files stayed open.
    const during = filesOpen() - before;
    c.socket.resume();
    await Promise.race([c.closed, sleep(5_000)]);
    // fs.close is asynchronous: waited for, up to 3 s, on a loaded machine.
    for (const end = Date.now() + 3_000; filesOpen() > before && Date.now() < end; ) await sleep(50);
    console.log(`1 000 pipelined GETs: the file open ${during} times while queued, ${filesOpen() - before} after the close`);
    expect(c.socket.destroyed).toBe(true);
    expect(during).toBeLessThanOrEqual(1);
    expect(filesOpen() - before).toBeLessThanOrEqual(0);
  });

  it('API requests queued behind a response nobody reads give their slots back when the connection closes', async () => {
    expect(await statusOf('127.0.0.73', badPost)).toMatch(/ 400 /);
    const c = await raw('127.0.0.73', true);
    c.socket.write(`${get('/assets/big.bin')}${badPost.repeat(4)}`);
    await sleep(300);
    // Meanwhile its four queued requests hold the address's four slots (API_MAX_CONCURRENT).
    expect(await statusOf('127.0.0.73', badPost)).toMatch(/ 429 /);
    // The send timeout closes it (about 1 s after the kernel's buffers filled).
    await Promise.race([
      (async () => {
        while (!c.socket.destroyed && (await statusOf('127.0.0.73', badPost)).includes(' 429 ')) await sleep(200);
      })(),
      sleep(8_000),
    ]);
    c.socket.destroy();
    await sleep(300);
    // Before: 429 from then on, for every client of the address.
    expect(await statusOf('127.0.0.73', badPost)).toMatch(/ 400 /);
  });
});
