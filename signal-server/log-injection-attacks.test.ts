// What a stranger can make the server's log keep: a real server on 127.0.0.1:0 (JSON and pretty logs), volunteers
// over real socket.io-client sending their own text where the log quotes it. Found by a red-team pass: a ready for
// another partition wrote a line each, echoing the partition (278 KiB/s of log from one address), and in the pretty
// format (a terminal's) a newline in a volunteer's failure message started a record of its making and an ESC reached
// the operator's terminal.

import { io as connect } from 'socket.io-client';
import { afterEach, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../shared/protocol/version.js';
import { REFUSAL_LOG_LIMIT } from './log-limiter.js';
import { serverLog } from './testing/server-log.js';
import { type Client, connectClient, next } from './testing/socket-client.js';
import { tinyServerForFile } from './testing/tiny-stages.js';

const json = serverLog('info', 'json');
const pretty = serverLog('info', 'pretty');
const jsonServer = tinyServerForFile('webswarm-log-attacks-json-', { logger: json.logger });
/** Behind a proxy on 127.0.0.1 (X-Forwarded-For): clients of any address, IPv6 among them. */
const proxiedServer = tinyServerForFile('webswarm-log-attacks-proxied-', { logger: json.logger, trustedProxies: ['127.0.0.1'] });
const prettyServer = tinyServerForFile('webswarm-log-attacks-pretty-', { logger: pretty.logger });

/** An event the protocol does not name, sent as a stranger would. */
const rawEmit = (c: Client, event: string, m: unknown) => (c as unknown as { emit(e: string, m: unknown): void }).emit(event, m);

const clients: Client[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.disconnect();
});

async function volunteer(url: string, address: string): Promise<Client> {
  const c = connectClient(url, { protocol: PROTOCOL_VERSION, role: 'volunteer' }, address);
  clients.push(c);
  await next(c, 'connect' as never).catch(() => {});
  const welcome = next<{ volunteerId: string }>(c, 'volunteer:welcome');
  c.emit('volunteer:hello', {
    backend: 'wasm',
    adapter: null,
    fault: null,
    clientKey: `log-attack-${address.replaceAll('.', '-')}`,
    capacity: { deviceMemoryGiB: 64, maxBufferBytes: null, maxStorageBindingBytes: null },
  });
  await welcome;
  return c;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('log lines a volunteer writes', () => {
  it('a volunteer:ready naming another partition writes at most 10 lines per 10 s (REFUSAL_LOG_LIMIT.maxLines), its value described, not echoed', async () => {
    const url = jsonServer().address().url;
    const c = await volunteer(url, '127.0.0.61');
    const marker = 'STRANGER-PARTITION';
    // 60 readies, well inside the socket's event budget (200/s): every one a line?
    const before = json.lines.length;
    for (let i = 0; i < 60; i++)
      c.emit('volunteer:ready', { modelId: 'x', stage: 0, stepMs: 1, partition: `${marker}-${i}-${'A'.repeat(200)}` } as never);
    await sleep(500);
    const written = json.lines.slice(before).filter((l) => l.includes(marker));
    expect(written.length).toBeGreaterThan(0);
    expect(written.length).toBeLessThanOrEqual(REFUSAL_LOG_LIMIT.maxLines);
    // Described (its first characters, quoted, and its length), never the whole value.
    for (const l of written) expect(l).not.toContain('A'.repeat(100));
    expect(written[0]).toContain('characters)');
  });

  it('pretty log format: a volunteer-chosen string cannot start a line of its own (forged record) or carry terminal escapes', async () => {
    const url = prettyServer().address().url;
    const c = await volunteer(url, '127.0.0.62');
    const forged = '12:00:00 ERROR STRANGER-FORGED operator password reset by admin';
    const before = pretty.lines.length;
    // step:failed's message (kept up to 1000 characters, logged under "volunteer <id> failed step"): a newline and a forged record.
    c.emit('step:failed', {
      sessionId: 4242,
      step: 0,
      code: 'ERR_INTERNAL',
      message: `oops\n${forged}\n\u001b[2J\u001b[31mSTRANGER-ANSI`,
    } as never);
    // volunteer:ready's partition (a short string, any characters).
    c.emit('volunteer:ready', { modelId: 'x', stage: 0, stepMs: 1, partition: `p\n${forged.replace('FORGED', 'FORGED2')}` } as never);
    await sleep(500);
    const mine = pretty.lines.slice(before);
    // A line that begins as the forged record: the volunteer wrote a log record of its own.
    expect(mine.filter((l) => l.startsWith('12:00:00 ERROR STRANGER-FORGED'))).toEqual([]);
    // The message is there, its newline written as an escape.
    expect(mine.some((l) => l.includes('oops\\n12:00:00 ERROR STRANGER-FORGED'))).toBe(true);
  });

  it('pretty log format: a volunteer-chosen string never puts a raw ESC (terminal control sequence) in the log', async () => {
    const url = prettyServer().address().url;
    const c = await volunteer(url, '127.0.0.65');
    const before = pretty.lines.length;
    c.emit('step:failed', {
      sessionId: 4244,
      step: 0,
      code: 'ERR_INTERNAL',
      message: '\u001b]0;pwned\u0007\u001b[2J\u001b[31mSTRANGER-ANSI',
    } as never);
    await sleep(500);
    const mine = pretty.lines.slice(before);
    expect(mine.filter((l) => l.includes('\u001b'))).toEqual([]);
    expect(mine.some((l) => l.includes('\\u001b]0;pwned\\u0007'))).toBe(true);
  });

  it('json log format: a client-chosen string never forges a JSON field or a second JSON line', async () => {
    const url = jsonServer().address().url;
    const c = await volunteer(url, '127.0.0.63');
    const before = json.lines.length;
    c.emit('step:failed', {
      sessionId: 4243,
      step: 0,
      code: 'ERR_INTERNAL',
      message: 'x","level":60,"msg":"STRANGER-JSON-FORGED"}\n{"level":60,"msg":"STRANGER-JSON-FORGED"}',
    } as never);
    c.emit('volunteer:ready', { modelId: 'x', stage: 0, stepMs: 1, partition: '","level":60,"msg":"STRANGER-JSON-FORGED2' } as never);
    // An HTTP path and a socket.io event name with quotes.
    await (await fetch(`${url}/v1/%22,%22level%22:60,%22msg%22:%22STRANGER-JSON-FORGED3`)).text();
    rawEmit(c, '","level":60,"msg":"STRANGER-JSON-FORGED4', {});
    await sleep(500);
    const mine = json.lines.slice(before).filter((l) => l !== '');
    for (const l of mine) {
      const r = JSON.parse(l) as Record<string, unknown>;
      expect(r.level).toBe(30);
      expect(String(r.msg)).not.toBe('STRANGER-JSON-FORGED');
    }
  });
});

describe('log volume one address can write', () => {
  it('four volunteers of one address, 2 s of readies inside the event budget: at most 10 lines each per 10 s', async () => {
    const url = jsonServer().address().url;
    const vs = await Promise.all([0, 1, 2, 3].map(() => volunteer(url, '127.0.0.64')));
    const marker = 'STRANGER-VOLUME';
    const before = json.lines.length;
    const t0 = Date.now();
    // 190 events a second per socket (the budget is 200/s), for 2 s: bounded in count and time.
    for (let tick = 0; tick < 20 && Date.now() - t0 < 4_000; tick++) {
      for (const c of vs)
        for (let i = 0; i < 19; i++)
          c.emit('volunteer:ready', { modelId: 'x', stage: 0, stepMs: 1, partition: `${marker}${'B'.repeat(240)}` } as never);
      await sleep(100);
    }
    await sleep(300);
    const mine = json.lines.slice(before).filter((l) => l.includes(marker));
    expect(mine.length).toBeGreaterThan(0);
    expect(mine.length).toBeLessThanOrEqual(4 * REFUSAL_LOG_LIMIT.maxLines);
  });

  it('requester sockets of one address opened and closed in a loop, each sending unknown events: at most 10 lines for the address in its window', async () => {
    // Found by a red-team helper (2026-12-07): such lines were limited per socket, so each new socket wrote 10 more:
    // 48 750 lines (11.6 MB) in 10.5 s from one address.
    const url = jsonServer().address().url;
    const marker = 'STRANGER-CYCLE';
    const before = json.lines.length;
    const t0 = Date.now();
    let sockets = 0;
    const cycle = async (address: string, until: number) => {
      while (Date.now() - t0 < until) {
        const c = connectClient(url, { protocol: PROTOCOL_VERSION, role: 'requester' }, address);
        clients.push(c);
        if (
          await next(c, 'connect' as never).then(
            () => true,
            () => false,
          )
        ) {
          sockets += 1;
          for (let i = 0; i < 12; i++) rawEmit(c, `${marker}-${address}-${i}`, {});
          await sleep(30);
        }
        c.disconnect();
      }
    };
    // Eight loops of one address for 3 s (bounded in time), one socket of another at the same time.
    await Promise.all([...Array.from({ length: 8 }, () => cycle('127.0.0.77', 3_000)), cycle('127.0.0.78', 200)]);
    await sleep(500);
    const mine = json.lines.slice(before).filter((l) => l.includes(`${marker}-127.0.0.77`));
    const other = json.lines.slice(before).filter((l) => l.includes(`${marker}-127.0.0.78`));
    expect(sockets).toBeGreaterThan(40);
    expect(mine.length, `${mine.length} lines from ${sockets} sockets`).toBeLessThanOrEqual(REFUSAL_LOG_LIMIT.maxLines);
    // The other address is not silenced by the first one's flood.
    expect(other.length).toBeGreaterThan(0);
  });

  it('sockets of one address each flooding just past their event budget: the cut-off lines, at most 10 for the address', async () => {
    // A red-team helper's (2026-12-07): each socket cut off wrote its line unlimited, 894 in 5 s from one address.
    const url = jsonServer().address().url;
    const before = json.lines.length;
    const t0 = Date.now();
    let cut = 0;
    const cycle = async () => {
      while (Date.now() - t0 < 3_000) {
        const c = connectClient(url, { protocol: PROTOCOL_VERSION, role: 'requester' }, '127.0.0.91');
        clients.push(c);
        if (
          await next(c, 'connect' as never).then(
            () => true,
            () => false,
          )
        ) {
          const gone = new Promise<void>((r) => c.once('disconnect', () => r()));
          // Past the burst (400) and the drops allowed (200): a flood, cut off.
          for (let i = 0; i < 700; i++) rawEmit(c, 'status:subscribe', null);
          await Promise.race([gone.then(() => (cut += 1)), sleep(1_500)]);
        }
        c.disconnect();
      }
    };
    await Promise.all(Array.from({ length: 4 }, cycle));
    await sleep(300);
    const mine = json.lines.slice(before).filter((l) => l.includes('(127.0.0.91): ERR_RATE_LIMITED'));
    expect(cut).toBeGreaterThan(20);
    expect(mine.length, `${mine.length} lines for ${cut} sockets cut off`).toBeLessThanOrEqual(REFUSAL_LOG_LIMIT.maxLines);
  });

  it('handshakes refused from every address of one IPv6 /64: at most 10 lines for the /64', async () => {
    // A red-team helper's (2026-12-07): keyed by the exact address, 3 936 lines in 3 s from one /64.
    const url = proxiedServer().address().url;
    const before = json.lines.length;
    const t0 = Date.now();
    let n = 0;
    const loop = async (k: number) => {
      while (Date.now() - t0 < 2_000) {
        n += 1;
        const c = connect(url, {
          auth: { protocol: -1, role: 'volunteer' },
          transports: ['websocket'],
          reconnection: false,
          forceNew: true,
          extraHeaders: { 'x-forwarded-for': `2001:db8:1:2::${(k * 10_000 + n).toString(16)}` },
        });
        await new Promise<void>((r) => {
          c.once('connect_error', () => r());
          c.once('connect', () => r());
          setTimeout(r, 1_000);
        });
        c.disconnect();
      }
    };
    await Promise.all([0, 1, 2, 3].map(loop));
    await sleep(300);
    const mine = json.lines.slice(before).filter((l) => l.includes('refused connection from 2001:db8:1:2:'));
    expect(n).toBeGreaterThan(40);
    expect(mine.length, `${mine.length} lines for ${n} handshakes`).toBeLessThanOrEqual(REFUSAL_LOG_LIMIT.maxLines);
  });
});
