/**
 * A large JSON answer written in pieces: the same text JSON.stringify gives, made and written a part at a time
 * (the elements of its arrays and the members of its objects, to a depth), yielding to the event loop between
 * parts and waiting for the reader where the socket's buffer is full. A whole (not streamed) batch answer with
 * echo, log-probabilities and n choices ran to tens of MB, and its one JSON.stringify held the server's event loop:
 * a red-team pass measured 0.4–1.7 s a request.
 */
import type { ServerResponse } from 'node:http';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { ISOLATION_HEADERS } from './static-files.js';

/**
 * How deep arrays and objects are split into parts (below, each is one JSON.stringify): a batch answer's choices,
 * each choice's log-probabilities and votes, and each token's entry whole. At 4, one choice's votes at 16 stages were
 * 10 MB in one piece (152 ms); at 8, the parts were so many that 38 MB took 4.5 s to write, against 0.65 s at 5.
 */
const SPLIT_DEPTH = 5;
/** Text gathered before a write (and a turn of the event loop). */
const PIECE_CHARS = 64 * 1024;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && typeof (v as { toJSON?: unknown }).toJSON !== 'function';
}

/** JSON.stringify's text of `value`, in parts; undefined (and functions) as JSON.stringify writes them. */
export function* jsonPieces(value: unknown, depth = SPLIT_DEPTH): Generator<string> {
  if (depth > 0 && Array.isArray(value)) {
    yield '[';
    for (let i = 0; i < value.length; i++) {
      if (i > 0) yield ',';
      // In an array, what JSON.stringify cannot write is null.
      const text = value[i] === undefined || typeof value[i] === 'function' || typeof value[i] === 'symbol' ? 'null' : null;
      if (text === null) yield* jsonPieces(value[i], depth - 1);
      else yield text;
    }
    yield ']';
    return;
  }
  if (depth > 0 && isPlainObject(value)) {
    yield '{';
    let first = true;
    for (const [k, v] of Object.entries(value)) {
      // In an object, what JSON.stringify cannot write is left out.
      if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue;
      yield `${first ? '' : ','}${JSON.stringify(k)}:`;
      first = false;
      yield* jsonPieces(v, depth - 1);
    }
    yield '}';
    return;
  }
  yield JSON.stringify(value) ?? 'null';
}

/**
 * Answers `status` with `body` as JSON, written in parts (jsonPieces): a turn of the event loop between parts, and
 * a wait for 'drain' where the socket's buffer is full (the send timeout ends a reader that never reads). Resolves
 * once written, or once the response is gone.
 */
export async function sendJsonInPieces(res: ServerResponse, status: number, body: unknown): Promise<void> {
  res.writeHead(status, { ...ISOLATION_HEADERS, 'content-type': 'application/json; charset=utf-8' });
  let buffered = '';
  const flush = async () => {
    const full = !res.write(buffered);
    buffered = '';
    if (full && !res.destroyed)
      await new Promise<void>((resolve) => {
        const done = () => {
          res.off('drain', done);
          res.off('close', done);
          resolve();
        };
        res.on('drain', done);
        res.on('close', done);
      });
    // And a turn of the event loop always: where the reader takes each piece at once, 'drain' comes in the same turn
    // (process.nextTick), and the whole answer was written in one hold (a red-team pass: 1 s for 26 MB read by curl).
    await yieldToLoop();
  };
  for (const piece of jsonPieces(body)) {
    if (res.destroyed) return;
    buffered += piece;
    if (buffered.length >= PIECE_CHARS) await flush();
  }
  if (res.destroyed) return;
  res.end(buffered);
}
