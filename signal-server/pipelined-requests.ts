/**
 * HTTP/1.1 pipelining, bounded. Node hands a connection's requests to the server as they are parsed, all of them at
 * once when a client sends many in one write, and queues their responses behind the one being written. A red-team
 * pass sent 1 598 `GET`s of a file in one 64 KiB write and read nothing: each queued response opened the file and
 * read 125 KiB of it (3 196 descriptors and 400 MiB for two connections), and when the connection closed, Node told
 * none of the queued responses (no `close`), so their files stayed open for good and pipelined API requests kept
 * their concurrency slots for good. Browsers do not pipeline.
 *
 * So a connection may have MAX_PIPELINED requests in flight (asked, not yet answered whole); one more closes it.
 * And when a connection closes, every response of it that has neither finished (its bytes handed to the kernel) nor
 * closed is destroyed and emits `close`, as the one being written does: what listens for a client going away (a file's stream, an API request's slots and cancellation)
 * hears of it for queued responses too.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** Requests one connection may have in flight at once (a browser has one). */
export const MAX_PIPELINED = 8;

/**
 * Wraps a request listener: counts each connection's requests in flight, closes a connection past `max`, and ends
 * the queued responses of a connection that closed.
 */
export function boundPipelining(
  listener: (req: IncomingMessage, res: ServerResponse) => void,
  refused: (socket: Socket) => void = () => {},
  max = MAX_PIPELINED,
): (req: IncomingMessage, res: ServerResponse) => void {
  const inFlight = new WeakMap<Socket, Set<ServerResponse>>();
  const closed = new WeakSet<ServerResponse>();
  return (req, res) => {
    const socket = req.socket;
    let open = inFlight.get(socket);
    if (open === undefined) {
      const mine = new Set<ServerResponse>();
      open = mine;
      inFlight.set(socket, mine);
      socket.once('close', () => {
        // After Node's own listeners: the response being written has emitted `close` by then; the queued ones never do.
        setImmediate(() => {
          for (const r of mine)
            if (!closed.has(r)) {
              r.destroy();
              r.emit('close');
            }
          mine.clear();
        });
      });
    }
    if (open.size >= max) {
      refused(socket);
      socket.destroy();
      return;
    }
    const set = open;
    set.add(res);
    res.once('close', () => {
      closed.add(res);
      set.delete(res);
    });
    res.once('finish', () => set.delete(res));
    listener(req, res);
  };
}
