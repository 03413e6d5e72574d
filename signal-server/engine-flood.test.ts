// Clients that speak Engine.IO itself (raw WebSocket frames, `ws`) to get
// around the per-address bounds of client-connections.ts, against a real
// server on port 0 with small bounds (4 connections an address; 1 MiB/s,
// bursts of 4 MiB, cut off 1 MiB past). Each client comes from its own
// loopback address (127.0.0.x, not one of LOCAL_ADDRESSES). A connection that
// never joins the Socket.IO namespace, and one that joins and leaves it
// (a DISCONNECT packet, "41") but stays, are held to the same bytes and count
// as any page's connection (before: their packets were not counted at all,
// and they held no place of their address's).
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { PROTOCOL_VERSION } from '../shared/protocol/version.js';
import { tinyServerForFile } from './testing/tiny-stages.js';

const MIB = 1024 * 1024;
const BYTES = { ratePerS: MIB, burst: 4 * MIB, maxDropped: MIB };
const server = tinyServerForFile('webswarm-engine-flood-', { maxSocketsPerAddress: 4, socketByteBudget: BYTES });

interface Raw {
  readonly ws: WebSocket;
  readonly texts: string[];
  readonly closed: Promise<void>;
  isOpen(): boolean;
}

/** A raw Engine.IO v4 connection from `address`, once the server's open packet came; answers pings. */
function rawEngine(address: string): Promise<Raw> {
  const url = `${server().address().url.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket`;
  const ws = new WebSocket(url, { localAddress: address, perMessageDeflate: false });
  const texts: string[] = [];
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  return new Promise((resolve, reject) => {
    ws.once('error', reject);
    ws.on('message', (data, binary) => {
      if (binary) return;
      const s = data.toString();
      if (s === '2') ws.send('3');
      else if (s.startsWith('0')) resolve({ ws, texts, closed, isOpen: () => ws.readyState === WebSocket.OPEN });
      else texts.push(s);
    });
  });
}

/** Joins the Socket.IO namespace over `raw` and waits for the server's answer (its first Socket.IO packet). */
async function join(raw: Raw, role: 'volunteer' | 'requester' = 'volunteer'): Promise<string | undefined> {
  raw.ws.send(`40${JSON.stringify({ protocol: PROTOCOL_VERSION, role })}`);
  const t0 = Date.now();
  while (!raw.texts.some((t) => t.startsWith('4')) && Date.now() - t0 < 5_000) await new Promise((r) => setTimeout(r, 10));
  return raw.texts.find((t) => t.startsWith('4'));
}

/** Sends `packet` until the server closes the connection or `most` bytes went; the bytes sent. */
async function floodUntilClosed(raw: Raw, packet: string, most: number): Promise<number> {
  let sent = 0;
  while (raw.isOpen() && sent < most) {
    raw.ws.send(packet);
    sent += packet.length;
    // As the socket drains: a client that writes faster only fills its own buffer.
    while (raw.ws.bufferedAmount > 2 * packet.length && raw.isOpen()) await new Promise((r) => setTimeout(r, 2));
  }
  await Promise.race([raw.closed, new Promise((r) => setTimeout(r, 3_000))]);
  return sent;
}

/** An Engine.IO noop packet of `bytes` (type 6: read, then ignored by the server). */
const noop = (bytes: number) => `6${'x'.repeat(bytes - 1)}`;

describe('raw Engine.IO clients against the per-address bounds', () => {
  it('a connection that never joins the namespace is cut off after its bytes, as a page would be', async () => {
    const raw = await rawEngine('127.0.0.11');
    const sent = await floodUntilClosed(raw, noop(256 * 1024), 80 * MIB);
    expect(raw.isOpen()).toBe(false);
    // Read: the burst, what refilled meanwhile and the slack (about 5 MiB and a second's worth); written, that and what
    // the loopback's buffers took after the server stopped reading; not the 80 MiB it would send.
    expect(sent).toBeLessThan(24 * MIB);
    expect(sent).toBeGreaterThanOrEqual(4 * MIB);
  });

  it('one that joins the namespace, leaves it ("41") and stays is cut off the same', async () => {
    const raw = await rawEngine('127.0.0.12');
    expect(await join(raw)).toMatch(/^40\{/);
    raw.ws.send('41');
    const sent = await floodUntilClosed(raw, noop(256 * 1024), 80 * MIB);
    expect(raw.isOpen()).toBe(false);
    expect(sent).toBeLessThan(24 * MIB);
  });

  it('an event announcing more binary attachments than one is refused by closing its connection', async () => {
    const raw = await rawEngine('127.0.0.15');
    expect(await join(raw)).toMatch(/^40\{/);
    // Two attachments announced: before, up to ten were kept (each up to 1 MiB) until the last came.
    raw.ws.send('452-["frame",{"to":"x","data":{"_placeholder":true,"num":0}}]');
    raw.ws.send(new Uint8Array(1024));
    await Promise.race([raw.closed, new Promise((r) => setTimeout(r, 5_000))]);
    expect(raw.isOpen()).toBe(false);
  });

  it("a binary event's text over 4 KiB, its attachment never sent, closes its connection; a frame's own text passes", async () => {
    const raw = await rawEngine('127.0.0.16');
    expect(await join(raw)).toMatch(/^40\{/);
    // What a page sends, a placeholder for the frame's bytes: kept until they come (here, not at all).
    raw.ws.send(`451-${JSON.stringify(['frame', { to: 'v'.repeat(64), data: { _placeholder: true, num: 0 } }])}`);
    await new Promise((r) => setTimeout(r, 300));
    expect(raw.isOpen()).toBe(true);
    // Before: the decoder held a text of up to 1 MiB (the largest message) until the attachment came.
    const raw2 = await rawEngine('127.0.0.17');
    expect(await join(raw2)).toMatch(/^40\{/);
    raw2.ws.send(`451-${JSON.stringify(['frame', { to: 'x'.repeat(512 * 1024), data: { _placeholder: true, num: 0 } }])}`);
    await Promise.race([raw2.closed, new Promise((r) => setTimeout(r, 5_000))]);
    expect(raw2.isOpen()).toBe(false);
    raw.ws.close();
  });

  it("a neighbour behind the flooder's address is not cut off for its pings and a small packet", async () => {
    const neighbour = await rawEngine('127.0.0.14');
    const flooder = await rawEngine('127.0.0.14');
    await floodUntilClosed(flooder, noop(256 * 1024), 80 * MIB);
    expect(flooder.isOpen()).toBe(false);
    // The address is past its budget now; its other connection still says a little.
    for (let i = 0; i < 5; i++) neighbour.ws.send('3');
    neighbour.ws.send(noop(1024));
    await new Promise((r) => setTimeout(r, 1_500));
    expect(neighbour.isOpen()).toBe(true);
    neighbour.ws.terminate();
  });

  it('connections that never join hold their places: the fifth is closed; a page from there is told why', async () => {
    const held: Raw[] = [];
    try {
      for (let i = 0; i < 4; i++) held.push(await rawEngine('127.0.0.13'));
      const fifth = await rawEngine('127.0.0.13');
      held.push(fifth);
      // It may ask to join, and is told why it may not.
      fifth.ws.send(`40${JSON.stringify({ protocol: PROTOCOL_VERSION, role: 'requester' })}`);
      await Promise.race([fifth.closed, new Promise((r) => setTimeout(r, 5_000))]);
      expect(fifth.isOpen()).toBe(false);
      expect(fifth.texts.find((t) => t.startsWith('44'))).toMatch(/ERR_RATE_LIMITED.*at most 4 connections/);
      // One that sends more than joining takes is closed at once, not after the grace.
      const sixth = await rawEngine('127.0.0.13');
      held.push(sixth);
      const t0 = Date.now();
      sixth.ws.send(noop(64 * 1024));
      await Promise.race([sixth.closed, new Promise((r) => setTimeout(r, 5_000))]);
      expect(sixth.isOpen()).toBe(false);
      expect(Date.now() - t0).toBeLessThan(1_500);
      // The four still hold (ping answered), and one going frees a place.
      expect(held.slice(0, 4).every((r) => r.isOpen())).toBe(true);
      held[0]?.ws.close();
      await held[0]?.closed;
      await new Promise((r) => setTimeout(r, 100));
      const next = await rawEngine('127.0.0.13');
      held.push(next);
      expect(await join(next, 'requester')).toMatch(/^40\{/);
    } finally {
      for (const r of held) r.ws.terminate();
    }
  });
});
