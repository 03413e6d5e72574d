// Connections one client address may hold (MAX_SOCKETS_PER_ADDRESS, 3 here):
// a real server on port 0 and raw socket.io-client sockets, each from its own
// loopback address (127.0.0.x is a distinct client; 127.0.0.1 is one of
// LOCAL_ADDRESSES, this machine's own, which are not counted). The address's
// fourth connection is refused with ERR_RATE_LIMITED (before: 1 000 from one
// address were all held, each subscribed to both feeds); a place frees when
// one closes; a handshake the server refused holds none; other addresses and
// this machine's own are not affected.
import { describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../shared/protocol/version.js';
import { scrapeMetrics } from '../testing/metrics-scrape.js';
import { type Client, connectClient } from './testing/socket-client.js';
import { tinyServerForFile } from './testing/tiny-stages.js';

const MAX = 3;
const server = tinyServerForFile('webswarm-socket-address-', { maxSocketsPerAddress: MAX });
const REQUESTER = { protocol: PROTOCOL_VERSION, role: 'requester' };

type Outcome = { ok: true } | { ok: false; message: string; data: unknown };

/** Connects from `address`: connected, or the server's refusal. */
async function open(address: string, auth: Record<string, unknown> = REQUESTER): Promise<{ c: Client; outcome: Outcome }> {
  const c = connectClient(server().address().url, auth, address);
  const outcome = await new Promise<Outcome>((resolve) => {
    c.once('connect', () => resolve({ ok: true }));
    c.once('connect_error', (e: Error & { data?: unknown }) => resolve({ ok: false, message: e.message, data: e.data }));
  });
  return { c, outcome };
}

async function refusedCount(): Promise<number> {
  return (await scrapeMetrics(server().address().url, ['webswarm_sockets_refused_total'])).webswarm_sockets_refused_total;
}

describe('connections per client address (MAX_SOCKETS_PER_ADDRESS)', () => {
  it("an address's connection beyond the limit is refused ERR_RATE_LIMITED; one closing frees a place; others are not affected", async () => {
    const held: Client[] = [];
    try {
      for (let i = 0; i < MAX; i++) {
        const { c, outcome } = await open('127.0.0.2');
        held.push(c);
        expect(outcome).toEqual({ ok: true });
      }
      const before = await refusedCount();
      const over = await open('127.0.0.2');
      held.push(over.c);
      expect(over.outcome.ok).toBe(false);
      if (over.outcome.ok) return;
      expect(over.outcome.message).toMatch(/^ERR_RATE_LIMITED: an address may hold at most 3 connections/);
      expect(over.outcome.data).toMatchObject({ code: 'ERR_RATE_LIMITED' });
      expect(await refusedCount()).toBe(before + 1);
      // A volunteer is held to it too (its hello never comes into it).
      expect((await open('127.0.0.2', { protocol: PROTOCOL_VERSION, role: 'volunteer' })).outcome.ok).toBe(false);
      // Another address, and this machine's own (any number), connect.
      const other = await open('127.0.0.3');
      held.push(other.c);
      expect(other.outcome).toEqual({ ok: true });
      for (let i = 0; i < MAX + 2; i++) {
        const local = await open('127.0.0.1');
        held.push(local.c);
        expect(local.outcome).toEqual({ ok: true });
      }
      // One of the three goes: a place frees once the server sees it gone.
      held[0]?.disconnect();
      let again: Outcome = { ok: false, message: '', data: null };
      for (let i = 0; i < 50 && !again.ok; i++) {
        await new Promise((r) => setTimeout(r, 20));
        const next = await open('127.0.0.2');
        held.push(next.c);
        again = next.outcome;
      }
      expect(again).toEqual({ ok: true });
      expect((await open('127.0.0.2')).outcome.ok).toBe(false);
    } finally {
      for (const c of held) c.disconnect();
    }
  });

  it('a handshake the server refused holds no place', async () => {
    const held: Client[] = [];
    try {
      for (let i = 0; i < MAX + 2; i++) {
        const bad = await open('127.0.0.4', { protocol: PROTOCOL_VERSION + 1000, role: 'requester' });
        held.push(bad.c);
        expect(bad.outcome.ok).toBe(false);
        if (!bad.outcome.ok) expect(bad.outcome.message).toMatch(/^ERR_PROTOCOL_VERSION/);
      }
      for (let i = 0; i < MAX; i++) {
        const good = await open('127.0.0.4');
        held.push(good.c);
        expect(good.outcome).toEqual({ ok: true });
      }
    } finally {
      for (const c of held) c.disconnect();
    }
  });
});
