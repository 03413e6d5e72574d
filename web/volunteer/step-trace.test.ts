import { describe, expect, it } from 'vitest';
import type { SessionExecutor, TensorData } from '../../shared/model/pipeline.js';
import { encodeFrame } from '../../shared/protocol/frames.js';
import { StepTrace } from './step-trace.js';

const out = { dtype: 'float32' as const, dims: [1, 1, 4], data: new Float32Array(4) };
const executor: SessionExecutor = {
  step: async () => out,
  truncate: async () => {},
  release: () => {},
};
const input: TensorData = { dtype: 'float32', dims: [1, 1, 4], data: new Float32Array(4) };

describe('StepTrace (the bench’s stamps of a step’s path)', () => {
  it('reads the session and step of a real frame’s first chunk, and skips the later chunks', () => {
    const trace = new StepTrace();
    const data = new Float32Array(100);
    // Chunks of 128 bytes: the frame takes several messages.
    const messages = encodeFrame({ sessionId: 7, step: 42, stage: 1, replica: 0, dims: [1, 1, 100], data }, 128);
    expect(messages.length).toBeGreaterThan(1);
    for (const m of messages) trace.markFrame(m, 'recv');
    expect(trace.entries).toHaveLength(1);
    expect(trace.entries[0]).toMatchObject({ session: 7, step: 42, phase: 'recv' });
    const now = performance.timeOrigin + performance.now();
    expect(Math.abs((trace.entries[0]?.t ?? 0) - now)).toBeLessThan(5_000);
  });

  it('counts the steps of each session around the executor, leaves challenges out, and starts again after a release', async () => {
    const trace = new StepTrace();
    let ms = 1.5;
    const wrapped = trace.wrap(executor, () => ms);
    await wrapped.step(3, 0, input);
    ms = 2.5;
    await wrapped.step(3, 0, input);
    await wrapped.step(-1, 0, input); // a challenge
    await wrapped.step(4, 0, input);
    const got = trace.entries.map((e) => [e.session, e.step, e.phase, e.runMs]);
    expect(got).toEqual([
      [3, 0, 'run-start', undefined],
      [3, 0, 'run-end', 1.5],
      [3, 1, 'run-start', undefined],
      [3, 1, 'run-end', 2.5],
      [4, 0, 'run-start', undefined],
      [4, 0, 'run-end', 2.5],
    ]);
    wrapped.release(3);
    await wrapped.step(3, 0, input);
    expect(trace.entries.at(-1)).toMatchObject({ session: 3, step: 0, phase: 'run-end' });
  });
});
