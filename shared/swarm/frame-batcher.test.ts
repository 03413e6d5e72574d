import { describe, expect, it } from 'vitest';
import { MAX_FRAME_BATCH, MAX_FRAME_BATCH_BYTES } from '../protocol/messages.js';
import { FrameBatcher } from './frame-batcher.js';

describe('FrameBatcher', () => {
  it('sends one turn’s messages per peer as few events as the limits allow, in order', () => {
    const sent: { to: string; sizes: number[] }[] = [];
    let run: (() => void) | null = null;
    const b = new FrameBatcher(
      (to, batch) => sent.push({ to, sizes: batch.map((m) => m.byteLength) }),
      (f) => {
        run = f;
      },
    );
    // A replay of 600 steps of small frames, and one of large messages to another peer.
    for (let i = 0; i < 600; i++) b.push('server:1', [new Uint8Array(100 + (i % 3))]);
    for (let i = 0; i < 4; i++) b.push('server:2', [new Uint8Array(256 * 1024)]);
    expect(sent).toEqual([]);
    (run as unknown as () => void)();
    const one = sent.filter((s) => s.to === 'server:1');
    expect(one.map((s) => s.sizes.length)).toEqual([MAX_FRAME_BATCH, MAX_FRAME_BATCH, 600 - 2 * MAX_FRAME_BATCH]);
    expect(one.flatMap((s) => s.sizes)).toEqual(Array.from({ length: 600 }, (_, i) => 100 + (i % 3)));
    const two = sent.filter((s) => s.to === 'server:2');
    expect(two.map((s) => s.sizes.length)).toEqual([3, 1]);
    for (const s of sent) expect(s.sizes.reduce((a, n) => a + n, 0)).toBeLessThanOrEqual(MAX_FRAME_BATCH_BYTES);
  });
});
