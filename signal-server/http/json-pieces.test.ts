// A large JSON answer written in pieces: the text is JSON.stringify's, byte for byte (the oracle), and a real
// HTTP server on port 0 writes it without holding its event loop in one piece.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { jsonPieces, sendJsonInPieces } from './json-pieces.js';

class WithToJson {
  toJSON() {
    return { as: 'json' };
  }
}

describe('JSON in pieces', () => {
  it('is the text JSON.stringify gives, for nested arrays, objects and what JSON leaves out or nulls', () => {
    const values: unknown[] = [
      { a: 1, b: [1, 'two', null, undefined, () => 0, { c: [[], {}] }], d: undefined, e: 'é\u2028"\\', f: -0, g: 1e21, h: Number.NaN },
      [[[[[[1, [2, { x: [3] }]]]]]]],
      { nested: { deeper: { deepest: { last: { again: [1, { z: undefined }] } } } } },
      [],
      {},
      'text',
      42,
      null,
      { date: new Date(0), custom: new WithToJson(), arr: [new WithToJson()] },
    ];
    for (const v of values) expect([...jsonPieces(v)].join('')).toBe(JSON.stringify(v));
  });

  it.each(['this process', 'another process'])(
    'answers over HTTP with the whole text, in parts, letting timers run between them (a reader in %s)',
    async (reader) => {
      // 256 choices of about 90 KB each, as a batch answer with echo and log-probabilities (23 MB in all).
      const choice = (i: number) => ({
        index: i,
        logprobs: Array.from({ length: 1_500 }, (_, t) => ({ token: `t${t}`, logprob: -t / 7, top: { a: -1, b: -2 } })),
      });
      const body = { object: 'text_completion', choices: Array.from({ length: 256 }, (_, i) => choice(i)), usage: { total_tokens: 1 } };
      let ticks = 0;
      const server = createServer((_req, res) => {
        const timer = setInterval(() => {
          ticks += 1;
        }, 1);
        void sendJsonInPieces(res, 200, body).finally(() => clearInterval(timer));
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
      try {
        let text: string;
        if (reader === 'this process') {
          const res = await fetch(url);
          expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
          text = await res.text();
        } else {
          // A reader in another process takes each piece at once: then 'drain' comes within the same turn of the event
          // loop, and before, the whole answer was written without a timer running (a red-team find).
          const child = spawn(process.execPath, [
            '-e',
            `fetch(${JSON.stringify(url)}).then((r) => r.text()).then((t) => process.stdout.write(t))`,
          ]);
          const chunks: Buffer[] = [];
          child.stdout.on('data', (c: Buffer) => chunks.push(c));
          await new Promise((resolve) => child.on('close', resolve));
          text = Buffer.concat(chunks).toString('utf8');
        }
        expect(text).toBe(JSON.stringify(body));
        // Written a part at a time (one JSON.stringify of it all would let no timer run until it is done).
        expect(ticks).toBeGreaterThan(50);
      } finally {
        await new Promise((resolve) => server.close(resolve));
      }
    },
  );
});
