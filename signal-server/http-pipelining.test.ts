// HTTP/1.1 pipelining from a hostile client, against a real server on port 0 (raw TCP; found by a red-team pass):
// Node hands a connection's pipelined requests to the server all at once and queues their responses, and when the
// connection closed it told none of the queued ones. 1 598 `GET`s of a file in one write held 3 196 descriptors for
// two connections, for good; API requests queued behind a stalled response kept their concurrency slots for good, and
// their address was answered 429 from then on. Now a connection may have 8 requests in flight (one more closes it),
// a file is opened only when its response is the one being written, and a closed connection's queued responses close.
import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MAX_PIPELINED } from './pipelined-requests.js';
import { tinyServerForFile } from './testing/tiny-stages.js';

const SEND_MS = 1_000;
const webRoot = mkdtempSync(join(tmpdir(), 'webswarm-pipelining-'));
mkdirSync(join(webRoot, 'assets'));
writeFileSync(join(webRoot, 'assets', 'big.bin'), Buffer.alloc(32 * 1024 * 1024, 7));
writeFileSync(join(webRoot, 'assets', 'small.bin'), Buffer.alloc(256 * 1024, 3));
afterAll(() => rmSync(webRoot, { recursive: true, force: true }));
const server = tinyServerForFile('webswarm-pipelining-', {
  webRoot,
  httpTimeouts: { headersMs: 5_000, requestMs: 10_000, sendMs: SEND_MS },
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const get = (path: string) => `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`;
/** An API request with a malformed body: answered 400 at once, once it holds its concurrency slot. */
const badPost = 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1\r\n\r\n{';

/** This process's open descriptors of the test's files (the server runs in it). */
const openFiles = () =>
  readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(join('/proc/self/fd', fd)).includes('webswarm-pipelining-');
    } catch {
      return false;
    }
  }).length;

interface Raw {
  readonly socket: Socket;
  text(): string;
  readonly closed: Promise<void>;
}

async function raw(address: string, paused = false): Promise<Raw> {
  const { port } = new URL(server().address().url);
  const socket = connect({ port: Number(port), host: '127.0.0.1', localAddress: address });
  socket.on('error', () => {});
  let text = '';
  socket.on('data', (b: Buffer) => (text += b.toString('latin1')));
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  await new Promise((r) => socket.once('connect', r));
  if (paused) socket.pause();
  return { socket, text: () => text, closed };
}

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

  it('1 000 GETs of a file in one write, read by nobody: the connection is closed and no file stays open', async () => {
    const before = openFiles();
    const c = await raw('127.0.0.72', true);
    c.socket.write(get('/assets/small.bin').repeat(1_000));
    await sleep(500);
    // Before: each of the 1 000 opened the file and read some of it; after the close their files stayed open.
    const during = openFiles() - before;
    c.socket.resume();
    await Promise.race([c.closed, sleep(5_000)]);
    await sleep(300);
    console.log(`1 000 pipelined GETs: the file open ${during} times while queued, ${openFiles() - before} after the close`);
    expect(c.socket.destroyed).toBe(true);
    expect(during).toBeLessThanOrEqual(1);
    expect(openFiles() - before).toBe(0);
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
