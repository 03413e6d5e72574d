// The byte budget of a socket (SOCKET_BYTE_BUDGET, the server's default),
// against a client that sends large events: a real server on port 0 and raw
// socket.io-client sockets speaking the real protocol. A volunteer's relayed
// frames of a long prompt (30 MiB of hidden states in a burst, each batch as
// large as a frame batch may be) are all served; a socket that sends 1 MB
// events as fast as it can, fewer than its event budget's burst, is cut off
// with ERR_RATE_LIMITED after about the byte budget's burst (before: every one
// of them was read, parsed and answered, and the socket was never cut off).
// From an address other than this machine's (127.0.0.2), its sockets share
// one budget, kept after they close: the flooder's next connection is
// refused as it joins (ERR_RATE_LIMITED, why), and another address's is not.
import { describe, expect, it } from 'vitest';
import type { WireError } from '../shared/protocol/errors.js';
import { MAX_FRAME_BATCH_BYTES } from '../shared/protocol/messages.js';
import { PROTOCOL_VERSION } from '../shared/protocol/version.js';
import { budgetCounts } from '../testing/metrics-scrape.js';
import { SOCKET_BYTE_BUDGET, SOCKET_EVENT_BUDGET } from './coordinator/event-budget.js';
import { type Client, connectClient } from './testing/socket-client.js';
import { tinyServerForFile } from './testing/tiny-stages.js';

const server = tinyServerForFile('webswarm-socket-bytes-');

const VOLUNTEER = { protocol: PROTOCOL_VERSION, role: 'volunteer' };

/** Sends 1 MB frames from `c` until it is cut off (at most `most`); how many it sent. */
async function flood(c: Client, most: number): Promise<number> {
  let sent = 0;
  for (; sent < most && c.connected; sent++) {
    c.emit('frame', { to: 'stage-1', data: new Uint8Array(1_000_000) });
    if (sent % 8 === 7) await new Promise((r) => setTimeout(r, 1));
  }
  return sent;
}

/** Counts the server's answers to `c` (each served `frame` before a hello is refused ERR_NOT_LINKED) and how it ends. */
function watch(c: Client): { answered: () => number; codes: string[]; ended: Promise<string> } {
  let answered = 0;
  const codes: string[] = [];
  c.on('server:error', (e: WireError) => {
    codes.push(e.code);
    if (e.code === 'ERR_NOT_LINKED') answered += 1;
  });
  const ended = new Promise<string>((resolve) => c.on('disconnect', (reason) => resolve(reason)));
  return { answered: () => answered, codes, ended };
}

async function connected(c: Client): Promise<void> {
  if (c.connected) return;
  await new Promise<void>((resolve, reject) => {
    c.once('connect', () => resolve());
    c.once('connect_error', reject);
  });
}

async function until(check: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const t0 = Date.now();
  while (!check()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('bytes a socket may send (SOCKET_BYTE_BUDGET)', () => {
  it("a long prompt's relayed frames in one burst (30 MiB in batches of the largest size) are all served", async () => {
    const c = connectClient(server().address().url);
    const w = watch(c);
    try {
      await connected(c);
      const batch = MAX_FRAME_BATCH_BYTES - 1024;
      const count = Math.ceil((30 * 1024 * 1024) / batch);
      for (let i = 0; i < count; i++) c.emit('frame', { to: 'stage-1', data: new Uint8Array(batch) });
      await until(() => w.answered() === count, `${count} answers`);
      expect(w.codes.filter((x) => x !== 'ERR_NOT_LINKED')).toEqual([]);
      expect(c.connected).toBe(true);
    } finally {
      c.disconnect();
    }
  });

  it('a socket that sends 1 MB events as fast as it can is cut off with ERR_RATE_LIMITED after about the burst', async () => {
    const url = server().address().url;
    const before = await budgetCounts(url);
    const c = connectClient(url);
    const w = watch(c);
    try {
      await connected(c);
      const size = 1_000_000;
      // Fewer events than the event budget's burst: only the bytes can stop them.
      const most = Math.min(SOCKET_EVENT_BUDGET.burst - 50, 300);
      const t0 = performance.now();
      const sent = await flood(c, most);
      const reason = await w.ended;
      const seconds = (performance.now() - t0) / 1000;
      const mib = (n: number) => n * (size / (1024 * 1024));
      process.stderr.write(
        `byte flood: ${w.answered()} of ${sent} sent served (${mib(w.answered()).toFixed(0)} MiB) in ${seconds.toFixed(2)} s, then cut (${w.codes.filter((x) => x !== 'ERR_NOT_LINKED').join(', ')})\n`,
      );
      expect(w.codes).toContain('ERR_RATE_LIMITED');
      expect(reason).toBe('io server disconnect');
      // Served: the burst and what the rate gave back meanwhile, no more; and not cut before the burst was spent.
      const allowed = SOCKET_BYTE_BUDGET.burst + SOCKET_BYTE_BUDGET.ratePerS * seconds;
      expect(mib(w.answered()) * 1024 * 1024).toBeLessThanOrEqual(allowed);
      expect(mib(w.answered()) * 1024 * 1024).toBeGreaterThanOrEqual(SOCKET_BYTE_BUDGET.burst - size);
      const after = await budgetCounts(url);
      expect(after.limited - before.limited).toBe(1);
      expect(after.dropped).toBeGreaterThan(before.dropped);
    } finally {
      c.disconnect();
    }
  });

  it("from another machine's address, the flooder's next connection is refused as it joins; another address is served", async () => {
    const url = server().address().url;
    const first = connectClient(url, VOLUNTEER, '127.0.0.2');
    const w1 = watch(first);
    try {
      await connected(first);
      await flood(first, 300);
      await w1.ended;
      expect(w1.codes).toContain('ERR_RATE_LIMITED');
    } finally {
      first.disconnect();
    }
    // At once again from the same address: refused as it joins, told why, served nothing, and closed by the server.
    const again = connectClient(url, VOLUNTEER, '127.0.0.2');
    const w2 = watch(again);
    try {
      const refusal = await new Promise<{ message: string; data: unknown }>((resolve, reject) => {
        again.once('connect', () => reject(new Error('connected')));
        again.once('connect_error', (e: Error & { data?: unknown }) => resolve({ message: e.message, data: e.data }));
      });
      expect(refusal.data).toMatchObject({ code: 'ERR_RATE_LIMITED' });
      expect(refusal.message).toMatch(/this address sent more than 16\.0 MiB a second .* a moment ago/);
      expect(w2.answered()).toBe(0);
    } finally {
      again.disconnect();
    }
    // Another address has its own budget.
    const other = connectClient(url, VOLUNTEER, '127.0.0.3');
    const w3 = watch(other);
    try {
      await connected(other);
      for (let i = 0; i < 10; i++) other.emit('frame', { to: 'stage-1', data: new Uint8Array(1_000_000) });
      await until(() => w3.answered() === 10, '10 answers');
      expect(other.connected).toBe(true);
    } finally {
      other.disconnect();
    }
  });
});
