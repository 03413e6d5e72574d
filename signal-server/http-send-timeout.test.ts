// A client that asks for a response and stops reading it, against a real server on port 0 (raw TCP): before, Node
// held the response's bytes (and an API request's concurrency slots) for as long as the client kept the connection,
// with no timeout; the file being sent stayed open. Now the send timeout (send-timeout.ts, here 1 s) closes it.
import { describe, expect, it } from 'vitest';
import { scrapeMetrics } from '../testing/metrics-scrape.js';
import { assetServerForFile, openFiles, type RawTcp, rawTcp } from './testing/raw-tcp.js';

const SEND_MS = 1_000;
/** Far more than loopback's socket buffers take (a few MiB each way): Node itself holds the rest. */
const BIG = 48 * 1024 * 1024;

const { server, lines } = assetServerForFile('webswarm-send-timeout-', { 'big.bin': BIG }, SEND_MS);

/** Asks for the big file over a raw connection; `paused`: reads nothing of the answer. */
async function get(paused: boolean): Promise<RawTcp> {
  const c = await rawTcp(server().address().url, '127.0.0.1', paused);
  c.socket.write('GET /assets/big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  return c;
}

const sendTimeouts = async () =>
  (await scrapeMetrics(server().address().url, ['webswarm_http_send_timeouts_total'])).webswarm_http_send_timeouts_total;

const bigFilesOpen = () => openFiles('big.bin');

describe('a response its client stops reading', () => {
  it('is closed after the send timeout, not held: the file it was sending is closed too', async () => {
    const before = await sendTimeouts();
    const t0 = performance.now();
    const clients = await Promise.all([get(true), get(true), get(true)]);
    // Closed once the kernel's buffers filled and then 1 s passed with none of it read (checked every 250 ms).
    while ((await sendTimeouts()) < before + 3 && performance.now() - t0 < 15_000) await new Promise((r) => setTimeout(r, 100));
    const ms = performance.now() - t0;
    expect(await sendTimeouts()).toBe(before + 3);
    expect(ms).toBeGreaterThanOrEqual(SEND_MS);
    expect(ms).toBeLessThan(10_000);
    expect(lines.filter((l) => l.includes('took none of what it was sent for 1 s')).length).toBeGreaterThanOrEqual(3);
    // A paused client sees the close once it reads again: what the buffers held, not the file.
    for (const c of clients) c.read(BIG);
    await Promise.all(clients.map((c) => Promise.race([c.closed, new Promise((r) => setTimeout(r, 5_000))])));
    for (const c of clients) {
      expect(c.socket.destroyed).toBe(true);
      expect(c.received()).toBeLessThan(BIG / 2);
    }
    // pipe() left each file open and paused (3 here, for good); pipeline closes it with its response (fs.close is
    // asynchronous: waited for, up to 3 s, on a loaded machine).
    for (const end = Date.now() + 3_000; bigFilesOpen() > 0 && Date.now() < end; ) await new Promise((r) => setTimeout(r, 50));
    const open = bigFilesOpen();
    console.log(`send timeout: 3 clients closed ${Math.round(ms)} ms after asking; the file open ${open} times after`);
    expect(open).toBe(0);
  });

  it('a client that reads slowly (4 MiB, then nothing for 0.3 s, again and again; the timeout 1 s) gets the whole file', async () => {
    const before = await sendTimeouts();
    const c = await get(true);
    const end = Date.now() + 60_000;
    let pauses = 0;
    while (c.received() < BIG && Date.now() < end && !c.socket.destroyed) {
      await new Promise((r) => setTimeout(r, 300));
      pauses += 1;
      c.read(4 * 1024 * 1024);
    }
    expect(c.socket.destroyed).toBe(false);
    expect(c.received()).toBeGreaterThan(BIG);
    expect(pauses).toBeGreaterThan(8);
    expect(await sendTimeouts()).toBe(before);
    c.socket.destroy();
  });
});
