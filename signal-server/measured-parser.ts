/**
 * Socket.IO's own packet parser, with what the server needs at the boundary:
 * - each decoded event's exact size, the bytes of every packet it came in
 *   (its text and its binary attachments), found by its arguments' array
 *   (`eventBytes`): an owed step report's bytes are given back to its
 *   connection's byte budget, and no more than arrived (client-connections.ts);
 * - at most MAX_ATTACHMENTS binary attachments an event: the protocol's
 *   events carry one at most (a frame's bytes, a logits row), and the decoder
 *   keeps an event's attachments until the last arrives, so an event announcing
 *   ten held up to ten packets of 1 MiB each for as long as its connection
 *   lived (a red-team pass: 64 connections of one address held 546 MiB);
 * - a binary event's text (its name and arguments, the attachment a
 *   placeholder) of at most MAX_BINARY_HEADER_BYTES: the decoder keeps it
 *   until the attachment arrives, and before, one of up to 1 MiB (the largest
 *   message) could wait for as long as its connection lived.
 */
import { Decoder, Encoder, type Packet } from 'socket.io-parser';

/** Binary attachments a client's event may have (FrameOut.data, StepLogits.logits: one each). */
export const MAX_ATTACHMENTS = 1;

/**
 * The most bytes of a binary event's text (Socket.IO packet types 5 and 6): the protocol's are a few hundred (a peer's
 * id and a placeholder; a step's ids and a placeholder). A longer one closes its connection, as any malformed packet.
 */
export const MAX_BINARY_HEADER_BYTES = 4096;

/** The bytes each decoded event arrived as, by its arguments' array (what a Socket.IO middleware is handed). */
export const eventBytes = new WeakMap<object, number>();

/** The bytes of one Engine.IO packet's payload: its UTF-8 text, or its binary data. */
export function chunkBytes(chunk: unknown): number {
  if (typeof chunk === 'string') return Buffer.byteLength(chunk, 'utf8');
  if (chunk instanceof ArrayBuffer || ArrayBuffer.isView(chunk)) return chunk.byteLength;
  return 0;
}

class MeasuredDecoder extends Decoder {
  private bytes = 0;

  constructor() {
    super({ maxAttachments: MAX_ATTACHMENTS });
    // Before Socket.IO's own listener (it subscribes after constructing): the size is there when the event is.
    this.on('decoded', (packet: Packet) => {
      if (Array.isArray(packet.data)) eventBytes.set(packet.data, this.bytes);
      this.bytes = 0;
    });
  }

  override add(chunk: unknown): void {
    const bytes = chunkBytes(chunk);
    if (typeof chunk === 'string' && (chunk[0] === '5' || chunk[0] === '6') && bytes > MAX_BINARY_HEADER_BYTES)
      throw new Error(`a binary event's text of ${bytes} bytes (at most ${MAX_BINARY_HEADER_BYTES})`);
    this.bytes += bytes;
    super.add(chunk);
  }
}

/** The parser to give Socket.IO's Server (its `parser` option). */
export const measuredParser = { Encoder, Decoder: MeasuredDecoder };
