import { describe, expect, it } from 'vitest';
import { seededRandom } from '../model/sampling.js';
import { type ActivationFrame, encodeFrame, FrameAssembler, MAX_MESSAGE_BYTES } from './frames.js';

function frame(values: number, dims: number[], step = 3): ActivationFrame {
  const r = seededRandom(values);
  const data = Float32Array.from({ length: values }, () => r() * 2 - 1);
  return { sessionId: 7, step, stage: 1, replica: 2, dims, data };
}

describe('activation frames', () => {
  it('round-trips a small frame in one message', () => {
    const f = frame(1 * 5 * 160, [1, 5, 160]);
    const msgs = encodeFrame(f);
    expect(msgs).toHaveLength(1);
    const r = new FrameAssembler().push(msgs[0] as Uint8Array);
    expect(r.kind).toBe('complete');
    if (r.kind === 'complete') expect(r.frame).toEqual(f);
  });

  it('chunks a large frame below 256 KiB, and reassembles it in any order', () => {
    const f = frame(1 * 300 * 2048, [1, 300, 2048]); // 2.4 MB of logits
    const msgs = encodeFrame(f);
    expect(msgs.length).toBe(10);
    for (const m of msgs) expect(m.byteLength).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    const a = new FrameAssembler();
    const order = [...msgs.keys()].reverse();
    const results = order.map((i) => a.push(msgs[i] as Uint8Array));
    expect(results.slice(0, -1).every((r) => r.kind === 'partial')).toBe(true);
    const last = results.at(-1);
    expect(last?.kind).toBe('complete');
    if (last?.kind === 'complete') expect(last.frame.data).toEqual(f.data);
    expect(a.pendingFrames).toBe(0);
  });

  it('rejects malformed, forged and inconsistent chunks with a named reason', () => {
    const a = new FrameAssembler(1024 * 1024);
    const good = encodeFrame(frame(16, [1, 16]))[0] as Uint8Array;
    const edit = (at: number, byte: number) => {
      const m = good.slice();
      m[at] = byte;
      return m;
    };
    expect(a.push(good.subarray(0, 10))).toEqual({ kind: 'rejected', reason: 'ERR_FRAME_TOO_SHORT' });
    expect(a.push(edit(0, 0))).toEqual({ kind: 'rejected', reason: 'ERR_FRAME_MAGIC' });
    expect(a.push(edit(4, 9))).toEqual({ kind: 'rejected', reason: 'ERR_FRAME_VERSION' });
    expect(a.push(edit(5, 2))).toEqual({ kind: 'rejected', reason: 'ERR_FRAME_DTYPE' });
    expect(a.push(edit(6, 7))).toEqual({ kind: 'rejected', reason: 'ERR_FRAME_SHAPE' });
    expect(a.push(edit(36, 17))).toEqual({ kind: 'rejected', reason: 'ERR_FRAME_SHAPE' }); // dims say 17 values, bytes say 16
    expect(a.push(edit(good.length - 1, (good[good.length - 1] as number) ^ 1))).toEqual({
      kind: 'rejected',
      reason: 'ERR_FRAME_CHECKSUM',
    });
    const huge = encodeFrame(frame(1 << 19, [1 << 19]))[0] as Uint8Array;
    expect(a.push(huge)).toEqual({ kind: 'rejected', reason: 'ERR_FRAME_TOO_LARGE' });
    const two = encodeFrame(frame(100_000, [100_000]));
    expect(a.push(two[0] as Uint8Array).kind).toBe('partial');
    expect(a.push(two[0] as Uint8Array)).toEqual({ kind: 'rejected', reason: 'ERR_FRAME_CHUNK' }); // duplicate chunk
  });

  it('keeps frames of different steps apart and bounds what is pending', () => {
    const a = new FrameAssembler(64 * 1024 * 1024, 2);
    const s1 = encodeFrame(frame(100_000, [100_000], 1));
    const s2 = encodeFrame(frame(100_000, [100_000], 2));
    const s3 = encodeFrame(frame(100_000, [100_000], 3));
    a.push(s1[0] as Uint8Array);
    a.push(s2[0] as Uint8Array);
    a.push(s3[0] as Uint8Array); // evicts step 1
    expect(a.pendingFrames).toBe(2);
    expect(a.push(s2[1] as Uint8Array).kind).toBe('complete');
    expect(a.push(s1[1] as Uint8Array).kind).toBe('partial'); // step 1 starts over
  });
});
