// A streamed answer whose reader does not keep up: the server holds at most `streamBehindBytes` of it unsent, then
// stops the generation and ends the stream with ERR_SLOW_READER after what the reader has not read yet (before: the
// whole answer waited in the server, about 23 MB for a reader at 64 KB/s). A real server on port 0, a real-protocol
// Node volunteer, and a raw TCP client that stops reading after the status line.
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiSwarm, startApiSwarm, streamEvents } from '../testing/api-swarm.js';
import { serverLog } from '../testing/server-log.js';

/**
 * Small: past it once the kernel's socket buffers are full, which on loopback here took about 4 MB (a whole 3.7 MB
 * answer fitted in them); the batch below is about 7 MB.
 */
const BEHIND_BYTES = 64 * 1024;
/** A batch of PROMPTS × n = 8 × 120 tokens with log-probabilities: about 0.6 MB of events a prompt. */
const PROMPTS = 12;
const BODY = { model: 'austen-2m', prompt: 'Emma Woodhouse', max_tokens: 120, n: 8, logprobs: 5, temperature: 1, seed: 7, stream: true };

let s: ApiSwarm;
const log = serverLog();
beforeAll(async () => {
  s = await startApiSwarm('webswarm-slow-reader-', {
    redundancy: 1,
    apiMaxConcurrent: 4,
    streamBehindBytes: BEHIND_BYTES,
    logger: log.logger,
  });
});
afterAll(() => s?.close());

/** POSTs `body` to /v1/completions over a raw socket; `take` gets what arrives. */
function post(body: object, take: (chunk: Buffer) => void): Socket {
  const json = JSON.stringify(body);
  const { port } = new URL(s.server.address().url);
  const socket = connect(Number(port), '127.0.0.1');
  socket.on('data', take);
  socket.write(
    `POST /v1/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(json)}\r\nconnection: close\r\n\r\n${json}`,
  );
  return socket;
}

/** The events of a chunked HTTP/1.1 response's body. */
function eventsOf(raw: Buffer): unknown[] {
  const text = raw.toString('utf8');
  const body = text.slice(text.indexOf('\r\n\r\n') + 4);
  // Chunk-size lines between the chunks: dropped (the events are whole lines of their own).
  return streamEvents(`\r\n${body}`.replace(/\r\n[0-9a-f]+\r\n/g, ''));
}

describe('a streamed answer’s slow reader', () => {
  it('a reader that keeps up gets every token and [DONE]', async () => {
    const chunks: Buffer[] = [];
    const socket = post(BODY, (c) => chunks.push(c));
    await new Promise((r) => socket.on('close', r));
    const raw = Buffer.concat(chunks);
    expect(raw.toString('utf8')).toMatch(/^HTTP\/1\.1 200/);
    expect(raw.toString('utf8')).toContain('data: [DONE]');
    expect(raw.toString('utf8')).not.toContain('ERR_SLOW_READER');
  });

  it('one that stops reading: the generation stops, and the stream ends with ERR_SLOW_READER after what it held', async () => {
    const before = s.volunteers[0]?.steps ?? 0;
    const chunks: Buffer[] = [];
    const socket = post({ ...BODY, prompt: Array.from({ length: PROMPTS }, (_, i) => `Emma Woodhouse ${i}`) }, (c) => {
      chunks.push(c);
      // Reads the status line's chunk, then nothing until resumed.
      if (chunks.length === 1) socket.pause();
    });
    await expect
      .poll(() => log.lines.find((l) => l.includes('its reader fell')), { timeout: 30_000 })
      .toMatch(/completion \S+: stopped after \d+ tokens: its reader fell \d+ bytes behind/);
    // Stopped: the steps in flight finish (a few, the client's 4 sessions at most a step or two each), then the
    // volunteer computes nothing more for it, short of the PROMPTS × 8 × 120 tokens asked for (about 58 % here: the
    // kernel took about 4 MB before the server held any).
    const atStop = (s.volunteers[0]?.steps ?? 0) - before;
    const settled = async () => {
      for (let last = -1; ; ) {
        const now = (s.volunteers[0]?.steps ?? 0) - before;
        if (now === last) return now;
        last = now;
        await new Promise((r) => setTimeout(r, 500));
      }
    };
    const steps = await settled();
    expect(steps - atStop).toBeLessThanOrEqual(16);
    await new Promise((r) => setTimeout(r, 1_000));
    expect((s.volunteers[0]?.steps ?? 0) - before).toBe(steps);
    expect(steps).toBeLessThan(PROMPTS * 8 * 120);
    socket.resume();
    await new Promise((r) => socket.on('close', r));
    const events = eventsOf(Buffer.concat(chunks));
    expect(events.length).toBeGreaterThan(1);
    expect(events.at(-1)).toMatchObject({ error: { code: 'ERR_SLOW_READER', type: 'server_error' } });
    expect(events).not.toContain('[DONE]');
    // Every event before it is a token's, whole.
    for (const e of events.slice(0, -1)) expect(e).toMatchObject({ object: 'text_completion' });
  });
});
