import { describe, expect, it } from 'vitest';
import { seededRandom } from '../model/sampling.js';
import {
  type ActivationFrame,
  encodeFrame,
  FRAME_MAGIC,
  FRAME_VERSION,
  FrameAssembler,
  type FrameKey,
  MAX_MESSAGE_BYTES,
} from './frames.js';

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
    expect(results.slice(0, -1).map((r) => r.kind)).toEqual(Array(msgs.length - 1).fill('partial'));
    const last = results.at(-1);
    expect(last?.kind).toBe('complete');
    if (last?.kind === 'complete') expect(last.frame.data).toEqual(f.data);
    expect(a.pendingFrames).toBe(0);
  });

  it('rejects malformed, forged and inconsistent chunks with a named reason', () => {
    const a = new FrameAssembler({ maxFrameBytes: 1024 * 1024 });
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
    const a = new FrameAssembler({ maxPendingFrames: 2 });
    const s1 = encodeFrame(frame(100_000, [100_000], 1));
    const s2 = encodeFrame(frame(100_000, [100_000], 2));
    const s3 = encodeFrame(frame(100_000, [100_000], 3));
    a.push(s1[0] as Uint8Array);
    a.push(s2[0] as Uint8Array);
    a.push(s3[0] as Uint8Array); // drops step 1
    expect(a.pendingFrames).toBe(2);
    expect(a.push(s2[1] as Uint8Array).kind).toBe('complete');
    expect(a.push(s1[1] as Uint8Array).kind).toBe('partial'); // step 1 starts over
  });

  it('a peer streaming 10 000 chunks of frames that never complete holds at most its byte budget', () => {
    // The measured attack: a linked peer sent 847 MiB of first chunks of frames it never finished.
    const maxFrameBytes = 160 * 512 * 4; // austen-2m: hiddenSize × maxPositions × 4 = 320 KiB
    const maxPendingBytes = 2 * maxFrameBytes;
    const dropped: FrameKey[] = [];
    const a = new FrameAssembler({ maxPendingFrames: 4, maxFrameBytes, maxPendingBytes, onDrop: (f) => dropped.push(f) });
    const big = encodeFrame(frame(160 * 512, [1, 512, 160]));
    expect(big.length).toBeGreaterThan(1);
    const first = big[0] as Uint8Array;
    let peak = 0;
    const started = performance.now();
    for (let i = 0; i < 10_000 && performance.now() - started < 20_000; i++) {
      const m = first.slice();
      new DataView(m.buffer).setUint32(12, i, true); // a new step each time: a new frame, never completed
      expect(a.push(m).kind).toBe('partial');
      peak = Math.max(peak, a.pendingBytes);
    }
    expect(peak).toBeLessThanOrEqual(maxPendingBytes);
    expect(peak).toBeGreaterThan(0);
    expect(a.pendingFrames).toBeLessThanOrEqual(2); // two 320 KiB frames fill 640 KiB
    expect(dropped).toHaveLength(10_000 - a.pendingFrames);
    expect(dropped[0]).toEqual({ sessionId: 7, step: 0, stage: 1, replica: 2 });
  });

  it('bounds the frames pending by count as well as by bytes', () => {
    const drops: string[] = [];
    const a = new FrameAssembler({ maxPendingFrames: 4, onDrop: (f, reason) => drops.push(`${f.step} ${reason}`) });
    for (let step = 0; step < 6; step++) a.push(encodeFrame(frame(100_000, [100_000], step))[0] as Uint8Array);
    expect(a.pendingFrames).toBe(4);
    expect(drops).toEqual(['0 ERR_FRAME_BUDGET', '1 ERR_FRAME_BUDGET']);
  });

  it('refuses the chunks of a frame no session wants before keeping a byte of it', () => {
    const asked: [number, number, number][] = [];
    const a = new FrameAssembler({
      accept: (sessionId, step, stage) => {
        asked.push([sessionId, step, stage]);
        return sessionId === 7;
      },
    });
    const unwanted = encodeFrame({ ...frame(100_000, [100_000]), sessionId: 8 });
    for (const m of unwanted) expect(a.push(m)).toEqual({ kind: 'rejected', reason: 'ERR_FRAME_UNWANTED' });
    expect(a.pendingFrames).toBe(0);
    expect(a.pendingBytes).toBe(0);
    // A wanted frame is asked about once, on its first chunk, and still reassembles.
    asked.length = 0;
    const wanted = frame(100_000, [100_000]);
    const results = encodeFrame(wanted).map((m) => a.push(m));
    expect(asked).toEqual([[7, 3, 1]]);
    const last = results.at(-1);
    expect(last?.kind).toBe('complete');
    if (last?.kind === 'complete') expect(last.frame).toEqual(wanted);
    expect(a.pendingBytes).toBe(0);
  });

  it('refuses a frame larger than the model allows, and forgets an ended session', () => {
    const a = new FrameAssembler({ maxFrameBytes: 64 * 4 });
    expect(a.push(encodeFrame(frame(65, [1, 65]))[0] as Uint8Array)).toEqual({ kind: 'rejected', reason: 'ERR_FRAME_TOO_LARGE' });
    expect(a.push(encodeFrame(frame(64, [1, 64]))[0] as Uint8Array).kind).toBe('complete');
    const b = new FrameAssembler();
    b.push(encodeFrame(frame(100_000, [100_000]))[0] as Uint8Array);
    b.push(encodeFrame({ ...frame(100_000, [100_000]), sessionId: 9 })[0] as Uint8Array);
    expect(b.forgetSession(7)).toBe(1);
    expect(b.pendingFrames).toBe(1);
    expect(b.forgetSession(9)).toBe(1);
    expect(b.pendingBytes).toBe(0);
  });

  it('refuses a header that claims more chunks than the frame has values', () => {
    const m = encodeFrame(frame(4, [4]))[0] as Uint8Array;
    const v = new DataView(m.buffer);
    expect(v.getUint32(0, true)).toBe(FRAME_MAGIC);
    expect(v.getUint8(4)).toBe(FRAME_VERSION);
    v.setUint16(22, 5, true); // 5 chunks for 4 values
    expect(new FrameAssembler().push(m)).toEqual({ kind: 'rejected', reason: 'ERR_FRAME_CHUNK' });
  });
});
