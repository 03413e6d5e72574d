// The fan-out's rules on one real replica (ReplicaCore on a real stage, on
// onnxruntime), fed real frames and wants as bytes, as off a data channel: whom
// it sends unasked (the rotation), when it asks (copies it counts on disagree,
// agree only within tolerance, or one is overdue), and how it answers wants,
// hostile ones included (strangers, floods, far past steps, malformed bytes).
import { describe, expect, it } from 'vitest';
import { CachingExecutor } from '../shared/model/pipeline.js';
import { type ActivationFrame, encodeFrame, FrameAssembler } from '../shared/protocol/frames.js';
import type { StepDigest } from '../shared/protocol/messages.js';
import { countsOn, decodeWant, encodeWant, isWant, WANT_CAP_MS, type Want } from '../shared/swarm/fanout.js';
import { ReplicaCore } from '../shared/swarm/replica-core.js';
import { tinyStagesForFile, until } from './testing/tiny-stages.js';

const SESSION = 5;
const PREV = ['A', 'B', 'C'];
const NEXT = ['n0', 'n1', 'n2'];

const stages = tinyStagesForFile('webswarm-fanout-wants-');

/** Replica 0 of stage 1 of a session fanning out at r = 3: it counts on A and B, and sends n0 and n2 unasked. */
function replica() {
  const { manifest, ort } = stages();
  const digests: StepDigest[] = [];
  const rejected: string[] = [];
  /** Per peer: whole frames (step numbers) and wants it was sent. */
  const sent = new Map<string, { steps: number[]; wants: Want[]; asm: FrameAssembler }>();
  const core = new ReplicaCore(manifest, 1, new CachingExecutor(manifest, ort), {
    frames: (to, messages) => {
      let p = sent.get(to);
      if (p === undefined) {
        p = { steps: [], wants: [], asm: new FrameAssembler() };
        sent.set(to, p);
      }
      for (const m of messages) {
        if (isWant(m)) {
          const w = decodeWant(m);
          if (typeof w !== 'string') p.wants.push(w);
          continue;
        }
        const r = p.asm.push(m);
        if (r.kind === 'complete') p.steps.push(r.frame.step);
      }
    },
    digest: (m) => digests.push(m),
    logits: () => {},
    failed: () => {},
    computed: () => {},
    rejected: (reason) => rejected.push(reason),
  });
  core.open({ sessionId: SESSION, stage: 1, replica: 0, prev: PREV, next: NEXT, replayTo: 0, fanout: 3 });
  const hidden = manifest.model.hiddenSize;
  const honest = (step: number) => Float32Array.from({ length: (step === 0 ? 3 : 1) * hidden }, (_, i) => Math.sin(i + step));
  const frame = (replica: number, step: number, data = honest(step)): ActivationFrame => ({
    sessionId: SESSION,
    step,
    stage: 0,
    replica,
    dims: [1, data.length / hidden, hidden],
    data,
  });
  const send = (from: string, f: ActivationFrame) => {
    for (const m of encodeFrame(f)) core.frame(from, m);
  };
  /** Steps 0..n−1 fed by A and B in agreement, each computed before the next. */
  const compute = async (n: number) => {
    for (let step = digests.length; step < n; step++) {
      send('A', frame(0, step));
      send('B', frame(1, step));
      await until(() => digests.length === step + 1, `step ${step}`, 20_000);
    }
  };
  const want = (from: string, w: Partial<Want> = {}) =>
    core.frame(from, encodeWant({ kind: 'frames', sessionId: SESSION, fromStep: 0, stage: 2, replica: NEXT.indexOf(from), era: 0, ...w }));
  const of = (peer: string) => sent.get(peer) ?? { steps: [], wants: [] };
  return { core, digests, rejected, send, frame, honest, compute, want, of };
}

describe('the rotation', () => {
  it('at r = 3 receiver j counts on senders j and j + 1; every sender is counted on by two receivers', () => {
    expect([0, 1, 2].map((j) => countsOn(j, 3, 3))).toEqual([
      [0, 1],
      [1, 2],
      [2, 0],
    ]);
    for (const r of [3, 4, 5, 7]) {
      const heard = new Array<number>(r).fill(0);
      for (let j = 0; j < r; j++) for (const i of countsOn(j, r, r) ?? []) heard[i] = (heard[i] ?? 0) + 1;
      // A majority of receivers hear each sender: an equivocator to all of them is reported by a majority (the audit's bar).
      expect(heard.every((n) => n === Math.floor(r / 2) + 1)).toBe(true);
    }
  });

  it('all-to-all where it does not apply: fewer than three replicas, or stages of different sizes (the server took one over)', () => {
    expect(countsOn(0, 1, 1)).toBeNull();
    expect(countsOn(1, 2, 2)).toBeNull();
    expect(countsOn(0, 1, 3)).toBeNull();
    expect(countsOn(0, 3, 1)).toBeNull();
  });

  it('a want is 20 bytes, told from a frame by its magic; anything else of its magic is refused by name', () => {
    const w: Want = { kind: 'tokens', sessionId: 7, fromStep: 9, stage: 0, replica: 2, era: 3 };
    expect(decodeWant(encodeWant(w))).toEqual(w);
    expect(isWant(encodeFrame({ sessionId: 1, step: 0, stage: 0, replica: 0, dims: [1], data: Float32Array.of(1) })[0] as Uint8Array)).toBe(
      false,
    );
    const long = new Uint8Array(24);
    long.set(encodeWant(w));
    expect(decodeWant(long)).toMatch(/^ERR_FRAME_SHAPE/);
    const kind = encodeWant(w);
    kind[5] = 9;
    expect(decodeWant(kind)).toMatch(/^ERR_FRAME_SHAPE/);
    const version = encodeWant(w);
    version[4] = 2;
    expect(decodeWant(version)).toMatch(/^ERR_FRAME_VERSION/);
  });
});

describe('a sender', () => {
  it('sends its assigned receivers unasked; a want brings its kept outputs and every later step, once', async () => {
    const r = replica();
    await r.compute(3);
    expect(r.of('n0').steps).toEqual([0, 1, 2]);
    expect(r.of('n2').steps).toEqual([0, 1, 2]);
    expect(r.of('n1').steps).toEqual([]);
    r.want('n1', { fromStep: 1 });
    expect(r.of('n1').steps).toEqual([1, 2]);
    await r.compute(5);
    expect(r.of('n1').steps).toEqual([1, 2, 3, 4]);
    expect(r.rejected).toEqual([]);
  });

  it('a want flood: one honoured, every later one refused by name and counted, nothing resent again', async () => {
    const r = replica();
    await r.compute(4);
    for (let i = 0; i < 500; i++) r.want('n1', { fromStep: 0 });
    expect(r.of('n1').steps).toEqual([0, 1, 2, 3]);
    expect(r.rejected.length).toBe(499);
    expect(r.rejected.every((x) => x.startsWith('ERR_WANT_REPEATED'))).toBe(true);
    await r.compute(5);
    expect(r.of('n1').steps).toEqual([0, 1, 2, 3, 4]);
  });

  it('a want from a stranger, from a receiver as another, or of another stage or session: refused by name, nothing sent', async () => {
    const r = replica();
    await r.compute(2);
    r.want('X', { replica: 1 });
    r.want('n2', { replica: 1 });
    r.want('n1', { stage: 1 });
    r.want('A', { replica: 0, stage: 0 });
    r.want('n1', { kind: 'tokens', stage: 0 });
    r.want('n1', { sessionId: SESSION + 1 });
    expect(r.rejected.map((x) => x.split(' ')[0])).toEqual([
      'ERR_NOT_LINKED',
      'ERR_NOT_LINKED',
      'ERR_NOT_LINKED',
      'ERR_NOT_LINKED',
      'ERR_NOT_LINKED',
      'ERR_UNKNOWN_SESSION',
    ]);
    expect(r.of('X').steps).toEqual([]);
    expect(r.of('n1').steps).toEqual([]);
    expect(r.of('A').steps).toEqual([]);
    // A malformed message of a want's magic is refused by name too.
    const bad = encodeWant({ kind: 'frames', sessionId: SESSION, fromStep: 0, stage: 2, replica: 1, era: 0 }).slice(0, 12);
    r.core.frame('n1', bad);
    expect(r.rejected.at(-1)).toMatch(/^ERR_FRAME_SHAPE/);
  });

  it('a want for a step far in the past (beyond MAX_STEPS_AHEAD of the newest) resends nothing, is counted, still subscribes', async () => {
    const r = replica();
    await r.compute(70);
    r.want('n1', { fromStep: 2 });
    expect(r.rejected).toHaveLength(1);
    expect(r.rejected[0]).toMatch(/^ERR_STALE_STEP want from step 2/);
    expect(r.of('n1').steps).toEqual([]);
    await r.compute(71);
    expect(r.of('n1').steps).toEqual([70]);
  }, 60_000);
});

describe('a receiver', () => {
  it('whose assigned copies agree takes its input and asks nobody', async () => {
    const r = replica();
    await r.compute(3);
    expect(r.of('C').wants).toEqual([]);
  });

  it('whose assigned copies disagree asks the third sender at once, then takes the majority', async () => {
    const r = replica();
    await r.compute(2);
    r.send('A', r.frame(0, 2));
    r.send(
      'B',
      r.frame(
        1,
        2,
        r.honest(2).map((x) => x + 1),
      ),
    );
    expect(r.of('C').wants).toEqual([{ kind: 'frames', sessionId: SESSION, fromStep: 2, stage: 1, replica: 0, era: 0 }]);
    expect(r.of('A').wants).toEqual([]);
    expect(r.digests).toHaveLength(2);
    r.send('C', r.frame(2, 2));
    await until(() => r.digests.length === 3, 'step 2 on the majority');
    // Asked once a session: the next disagreement asks nobody again (C sends every step now).
    r.send('A', r.frame(0, 3));
    r.send(
      'B',
      r.frame(
        1,
        3,
        r.honest(3).map((x) => x + 1),
      ),
    );
    expect(r.of('C').wants).toHaveLength(1);
  });

  it('whose assigned copies agree only within tolerance asks at once (before the settle)', async () => {
    const r = replica();
    await r.compute(1);
    r.send('A', r.frame(0, 1));
    r.send(
      'B',
      r.frame(
        1,
        1,
        r.honest(1).map((x) => x * (1 + 1e-4)),
      ),
    );
    expect(r.of('C').wants).toHaveLength(1);
  });

  it('that joined without a data channel to an assigned sender asks the third at once, before any frame', () => {
    const r = replica();
    r.core.unreached(SESSION, ['C']);
    expect(r.of('C').wants).toEqual([]);
    r.core.unreached(SESSION, ['B']);
    expect(r.of('C').wants).toEqual([{ kind: 'frames', sessionId: SESSION, fromStep: 0, stage: 1, replica: 0, era: 0 }]);
    expect(r.of('A').wants).toEqual([]);
  });

  it('one of whose assigned senders is silent asks the third after the deadline (bounded by WANT_CAP_MS), once', async () => {
    const r = replica();
    await r.compute(1);
    const t0 = performance.now();
    r.send('A', r.frame(0, 1));
    expect(r.of('C').wants).toEqual([]);
    await until(() => r.of('C').wants.length === 1, 'the want after the deadline', 5_000);
    expect(performance.now() - t0).toBeLessThan(WANT_CAP_MS + 2_000);
    r.send('C', r.frame(2, 1));
    await until(() => r.digests.length === 2, 'step 1 on A and C');
    r.send('A', r.frame(0, 2));
    r.send('C', r.frame(2, 2));
    await until(() => r.digests.length === 3, 'step 2 on A and C');
    expect(r.of('C').wants).toHaveLength(1);
    expect(r.of('B').wants).toEqual([]);
  });
});
