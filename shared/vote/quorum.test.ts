import { describe, expect, it } from 'vitest';
import { medianBySort } from '../../testing/reference-rules.js';
import { seededRandom } from '../model/sampling.js';
import { agreeLogitRows, agreeLogits, agreeTensors, majority, medianOf, Quorum, type ReplicaOutcome } from './quorum.js';

const base = new Float32Array([1, -2, 0.5, 3]);
const near = new Float32Array([1.0005, -2.0004, 0.5, 3.0006]); // within 1e-3 · 3
const far = new Float32Array([1, -2, 0.5, 3.5]);
const nan = new Float32Array([Number.NaN, -2, 0.5, 3]);
const ok = (replica: string, value: Float32Array): ReplicaOutcome<Float32Array> => ({ status: 'fulfilled', replica, value });

describe('quorum', () => {
  it('needs a strict majority', () => {
    expect([1, 2, 3, 4, 5].map(majority)).toEqual([1, 2, 2, 3, 3]);
  });

  it('agrees on the first two of three without waiting for the third', () => {
    const q = new Quorum(['a', 'b', 'c'], agreeTensors);
    q.add(ok('a', base));
    expect(q.state.kind).toBe('pending');
    q.add(ok('b', near));
    expect(q.state).toMatchObject({ kind: 'agreed', agreeing: ['a', 'b'], disagreeing: [] });
    expect(q.state.kind === 'agreed' && q.state.value).toBe(base);
    expect(q.missing).toEqual(['c']);
  });

  it('outvotes a liar and records it as disagreeing when it arrives late', () => {
    const q = new Quorum(['a', 'b', 'c'], agreeTensors);
    q.add(ok('a', far));
    q.add(ok('b', base));
    expect(q.state.kind).toBe('pending');
    q.add(ok('c', near));
    expect(q.state).toMatchObject({ kind: 'agreed', agreeing: ['b', 'c'], disagreeing: ['a'] });
  });

  it('keeps the decided value when a late liar arrives', () => {
    const q = new Quorum(['a', 'b', 'c'], agreeTensors);
    q.add(ok('a', base));
    q.add(ok('b', base));
    q.add(ok('c', far));
    expect(q.state).toMatchObject({ kind: 'agreed', agreeing: ['a', 'b'], disagreeing: ['c'] });
  });

  it('has no majority when every replica says something else', () => {
    const q = new Quorum(['a', 'b', 'c'], agreeTensors);
    q.add(ok('a', base));
    q.add(ok('b', far));
    expect(q.state.kind).toBe('pending');
    q.add(ok('c', new Float32Array([9, 9, 9, 9])));
    expect(q.state).toEqual({ kind: 'no-majority', clusters: [['a'], ['b'], ['c']], failed: [] });
  });

  it('a tie is no majority, not a coin toss', () => {
    const q = new Quorum(['a', 'b', 'c', 'd'], agreeTensors);
    for (const o of [ok('a', base), ok('b', base), ok('c', far), ok('d', far)]) q.add(o);
    expect(q.state.kind).toBe('no-majority');
  });

  it('NaN agrees with nothing, not even NaN', () => {
    const q = new Quorum(['a', 'b', 'c'], agreeTensors);
    q.add(ok('a', nan));
    q.add(ok('b', nan));
    q.add(ok('c', base));
    expect(q.state.kind).toBe('no-majority');
  });

  it('counts timeouts and errors against the majority', () => {
    const q = new Quorum(['a', 'b', 'c'], agreeTensors);
    q.add({ status: 'timeout', replica: 'a' });
    q.add(ok('b', base));
    expect(q.state.kind).toBe('pending');
    q.add({ status: 'disconnected', replica: 'c' });
    expect(q.state).toEqual({ kind: 'no-majority', clusters: [['b']], failed: ['a', 'c'] });
    const r = new Quorum(['a', 'b', 'c'], agreeTensors);
    r.add({ status: 'rejected', replica: 'a', reason: 'wrong shape' });
    r.add(ok('b', base));
    r.add(ok('c', near));
    expect(r.state).toMatchObject({ kind: 'agreed', agreeing: ['b', 'c'], disagreeing: ['a'] });
  });

  it('ignores unknown replicas and second answers', () => {
    const q = new Quorum(['a', 'b', 'c'], agreeTensors);
    expect(q.add(ok('a', base))).toBe(true);
    expect(q.add(ok('a', base))).toBe(false);
    expect(q.add(ok('mallory', base))).toBe(false);
    expect(q.state.kind).toBe('pending');
  });

  it('a replacement answers in the place of a replica that left before answering', () => {
    const q = new Quorum(['a', 'b', 'c'], agreeTensors);
    q.add(ok('a', base));
    expect(q.substitute('b', 'd')).toBe(true);
    expect(q.add(ok('b', base))).toBe(false);
    q.add(ok('d', near));
    expect(q.state).toMatchObject({ kind: 'agreed', agreeing: ['a', 'd'] });
    expect(q.substitute('a', 'e')).toBe(false); // a already answered
  });

  it('logits must also pick the same token', () => {
    const a = new Float32Array([5, 4.9999, 0]);
    const b = new Float32Array([4.9999, 5, 0]);
    expect(agreeTensors(a, b)).toBe(true);
    expect(agreeLogits(a, b)).toBe(false);
    expect(agreeLogits(a, a)).toBe(true);
  });

  it('rows of logits (a scored step) must pick the same token in every row, and come in the same count', () => {
    // Row 0's two best swapped within tolerance; row 1 holds the largest value, so the whole array's argmax agrees.
    const a = new Float32Array([5, 4.9999, 0, 9, 1, 0]);
    const b = new Float32Array([4.9999, 5, 0, 9, 1, 0]);
    expect(agreeLogits(a, b)).toBe(true);
    const rows = agreeLogitRows(3);
    expect(rows(a, b)).toBe(false);
    expect(rows(a, a)).toBe(true);
    expect(rows(a, a.slice(3))).toBe(false);
    expect(rows(a.slice(0, 4), a.slice(0, 4))).toBe(false);
    // One row: agreeLogits.
    expect(rows(a.slice(3), a.slice(3))).toBe(true);
  });
});

describe('quorum: the majority of r, newcomers and values a minority cannot move', () => {
  it('counts the majority of the configured redundancy, not of the replicas that answer', () => {
    // r = 3 but only two replicas are in the vote: both must agree (2 of 3), one alone is never enough.
    const q = new Quorum(['a', 'b'], agreeTensors, { needed: majority(3) });
    q.add(ok('a', base));
    expect(q.state.kind).toBe('pending');
    q.add(ok('b', far));
    expect(q.state.kind).toBe('no-majority');
    const one = new Quorum(['a'], agreeTensors, { needed: majority(3) });
    one.add(ok('a', base));
    expect(one.state.kind).toBe('no-majority');
  });

  it('two newcomers never outvote an established replica', () => {
    const established = (r: string) => r === 'e';
    const q = new Quorum(['e', 'n1', 'n2'], agreeTensors, { established });
    q.add(ok('n1', far));
    q.add(ok('n2', far));
    // The newcomers agree, but the established replica has not answered: no decision yet.
    expect(q.state.kind).toBe('pending');
    q.add(ok('e', base));
    expect(q.state.kind).toBe('no-majority');
  });

  it('newcomers agreeing with an established replica win as usual', () => {
    const established = (r: string) => r === 'e';
    const q = new Quorum(['e', 'n1', 'n2'], agreeTensors, { established });
    q.add(ok('n1', base));
    q.add(ok('e', base));
    expect(q.state).toMatchObject({ kind: 'agreed', agreeing: ['n1', 'e'] });
  });

  it('a newcomer never decides between two established replicas: an established one and a newcomer do not outvote another (contested)', () => {
    // The red-team find: a colluder with a record (e1) and its newcomer in the minority's seat (n) against an honest
    // established replica (e2). Before, e1 and n won: their value served as verified.
    const established = (r: string) => r.startsWith('e');
    const q = new Quorum(['e1', 'e2', 'n'], agreeTensors, { established });
    q.add(ok('e1', far));
    q.add(ok('n', far));
    // Two of three agree, but e2 is still to answer: no decision.
    expect(q.state.kind).toBe('pending');
    q.add(ok('e2', base));
    expect(q.state.kind).toBe('no-majority');
    // The honest established replica and the newcomer against the colluder: contested as well (symmetric).
    const r = new Quorum(['e1', 'e2', 'n'], agreeTensors, { established });
    r.add(ok('e2', base));
    r.add(ok('n', base));
    r.add(ok('e1', far));
    expect(r.state.kind).toBe('no-majority');
  });

  it('a strict majority of the established replicas decides with newcomers beside it; one that failed is not counted', () => {
    const established = (r: string) => r.startsWith('e');
    const q = new Quorum(['e1', 'e2', 'e3', 'n1', 'n2'], agreeTensors, { established });
    q.add(ok('n1', far));
    q.add(ok('n2', far));
    q.add(ok('e1', far));
    // Three of five, but one of three established: not yet.
    expect(q.state.kind).toBe('pending');
    q.add(ok('e2', base));
    q.add(ok('e3', base));
    // Two of three established and two newcomers against them: the established majority is short of three of five.
    expect(q.state.kind).toBe('no-majority');
    const r = new Quorum(['e1', 'e2', 'n'], agreeTensors, { established });
    r.add({ status: 'timeout', replica: 'e1' });
    r.add(ok('e2', base));
    r.add(ok('n', base));
    expect(r.state).toMatchObject({ kind: 'agreed', agreeing: ['e2', 'n'] });
    const all = new Quorum(['e1', 'e2', 'e3'], agreeTensors, { established });
    all.add(ok('e1', far));
    all.add(ok('e2', base));
    all.add(ok('e3', base));
    expect(all.state).toMatchObject({ kind: 'agreed', agreeing: ['e2', 'e3'], disagreeing: ['e1'] });
  });

  it('waitsOnlyOn: open only for established replicas still to answer, with a group of the majority already', () => {
    const established = (r: string) => r.startsWith('e');
    const q = new Quorum(['e1', 'e2', 'n'], agreeTensors, { established });
    q.add(ok('e2', base));
    // One answer: no group of the majority yet.
    expect(q.waitsOnlyOn(established)).toBe(false);
    q.add(ok('n', base));
    expect(q.state.kind).toBe('pending');
    expect(q.waitsOnlyOn(established)).toBe(true);
    q.add(ok('e1', base));
    expect(q.state.kind).toBe('agreed');
    expect(q.waitsOnlyOn(established)).toBe(false);
    // A newcomer still to answer: not only established ones.
    const r = new Quorum(['e1', 'e2', 'n'], agreeTensors, { established, needed: 2 });
    r.add(ok('e1', base));
    r.add(ok('e2', far));
    expect(r.waitsOnlyOn(established)).toBe(false);
  });

  it('an established replica that went away does not block the newcomers', () => {
    const established = (r: string) => r === 'e';
    const q = new Quorum(['e', 'n1', 'n2'], agreeTensors, { established });
    q.add({ status: 'disconnected', replica: 'e' });
    q.add(ok('n1', base));
    q.add(ok('n2', base));
    expect(q.state).toMatchObject({ kind: 'agreed', agreeing: ['n1', 'n2'] });
  });

  it('a nudge inside the tolerance cannot move a value two identical replicas agree on', () => {
    const nudged = new Float32Array([1.0009, -2.0009, 0.5009, 3.0009]);
    const q = new Quorum(['liar', 'a', 'b'], agreeTensors, { combine: medianOf });
    q.add(ok('liar', nudged));
    q.add(ok('a', base));
    // Liar and one honest replica agree within the tolerance: accepted, but not settled.
    expect(q.state).toMatchObject({ kind: 'agreed', settled: false });
    q.add(ok('b', new Float32Array(base)));
    expect(q.state).toMatchObject({ kind: 'agreed', settled: true });
    expect(q.state.kind === 'agreed' && [...q.state.value]).toEqual([...base]);
  });

  it('the element-wise median of 1 to 7 values is that of a sorted column, identical majorities taken whole', () => {
    const random = seededRandom(11);
    // The oracle: each column sorted, its middle (of an even count, the mean of the middle two in float64).
    const sorted = (values: Float32Array[]) => medianBySort(values, values.length + 1).value;
    for (let k = 1; k <= 7; k++)
      for (let trial = 0; trial < 20; trial++) {
        // Few distinct values, so that columns hold ties.
        const values = Array.from({ length: k }, () => Float32Array.from({ length: 50 }, () => Math.round((random() - 0.5) * 8) / 4));
        const made = medianOf(values, k + 1);
        expect(made.exact).toBe(false);
        // Equal as numbers (a column of −0 and +0 may give either: the sort orders them, comparisons do not).
        expect(
          [...made.value].map((v) => v + 0),
          `k ${k}`,
        ).toEqual([...sorted(values)].map((v) => v + 0));
      }
    const honest = new Float32Array([1, 2, 3]);
    const liar = new Float32Array([1.0001, 2, 3]);
    // Two identical copies of three: that value itself, exact, whichever order they came in.
    for (const order of [
      [liar, honest, new Float32Array(honest)],
      [honest, liar, new Float32Array(honest)],
    ]) {
      const made = medianOf(order, 2);
      expect(made.exact).toBe(true);
      expect([...made.value]).toEqual([1, 2, 3]);
    }
    expect(medianOf([liar, honest, new Float32Array([1.0002, 2, 3])], 2).exact).toBe(false);
  });

  it('without identical values the element-wise median is taken', () => {
    const m = medianOf([new Float32Array([1, 5]), new Float32Array([3, 4]), new Float32Array([2, 9])], 2);
    expect(m.exact).toBe(false);
    expect([...m.value]).toEqual([2, 5]);
  });
});

describe('quorum: agreement within a tolerance is not transitive', () => {
  // Tolerance here: 1e-3 · max(1, 2) = 2e-3. Honest replicas differ by a few ulps' worth (2e-6 to 4e-6); a liar
  // sits at the tolerance's edge of one honest value, just beyond another's.
  const h1 = new Float32Array([1, 2]);
  const h2 = new Float32Array([1.000004, 2]);
  const h3 = new Float32Array([1.000002, 2]);
  const below = new Float32Array([1 - 0.001999, 2]); // agrees with h1 only
  const above = new Float32Array([1.000004 + 0.001999, 2]); // agrees with h2 only
  const agreeing = (q: Quorum<Float32Array>) => (q.state.kind === 'agreed' ? [...q.state.agreeing].sort() : []);

  it('the rig: each liar agrees with one honest value and no other', () => {
    for (const [x, y, want] of [
      [below, h1, true],
      [below, h2, false],
      [below, h3, false],
      [above, h2, true],
      [above, h1, false],
      [above, h3, false],
      [below, above, false],
    ] as const)
      expect(agreeTensors(x, y)).toBe(want);
  });

  it('a liar answering first at the edge cannot keep an honest replica out, nor have its mean served (r = 3)', () => {
    for (const order of [
      ['liar', 'a', 'b'],
      ['liar', 'b', 'a'],
    ]) {
      const values: Record<string, Float32Array> = { liar: below, a: h1, b: h2 };
      const q = new Quorum(order, agreeTensors, { combine: medianOf });
      for (const id of order) q.add(ok(id, values[id] as Float32Array));
      // Every honest answer counts in the winner (none is reported as disagreeing), and the value is the median of
      // all three: between the honest values, never the mean of the liar's and one honest replica's.
      expect(q.state).toMatchObject({ kind: 'agreed', settled: true, disagreeing: [] });
      expect(agreeing(q)).toEqual(['a', 'b', 'liar']);
      const v = q.state.kind === 'agreed' ? (q.state.value[0] as number) : Number.NaN;
      expect(v).toBeGreaterThanOrEqual(1);
      expect(v).toBeLessThanOrEqual(Math.fround(1.000004));
    }
  });

  it('two liars that each hold one honest replica cannot split three honest ones into no majority (r = 5)', () => {
    const q = new Quorum(['l1', 'l2', 'a', 'b', 'c'], agreeTensors, { combine: medianOf });
    for (const [id, v] of [
      ['l1', below],
      ['l2', above],
      ['a', h1],
      ['b', h2],
    ] as const)
      q.add(ok(id, v));
    expect(q.state.kind).toBe('pending');
    q.add(ok('c', h3));
    expect(q.state).toMatchObject({ kind: 'agreed', settled: true });
    // The honest clique wins; each liar, within the tolerance of one of its members, counts in it.
    expect(agreeing(q)).toEqual(['a', 'b', 'c', 'l1', 'l2']);
    expect(q.state.kind === 'agreed' && [...q.state.value]).toEqual([Math.fround(1.000002), 2]);
  });

  it('a group must agree each with each: two values that only a third agrees with do not make a majority', () => {
    const q = new Quorum(['l1', 'a', 'l2'], agreeTensors);
    q.add(ok('l1', below));
    q.add(ok('l2', new Float32Array([1 + 0.001999, 2]))); // agrees with h1, not with below
    q.add(ok('a', h1));
    // {l1, a} and {a, l2} are both groups of two: the first formed wins, and l2 counts in it through a.
    expect(q.state).toMatchObject({ kind: 'agreed', agreeing: ['l1', 'l2', 'a'] });
    const two = new Quorum(['l1', 'l2', 'x'], agreeTensors, { needed: 3 });
    two.add(ok('l1', below));
    two.add(ok('l2', new Float32Array([1 + 0.001999, 2])));
    // The two liars disagree, so no group of three can agree each with each, whatever x answers: decided at once.
    expect(two.state).toEqual({ kind: 'no-majority', clusters: [['l1'], ['l2']], failed: [] });
  });

  it('a late answer joins through a member of the winning group, not through another joiner', () => {
    const q = new Quorum(['a', 'b', 'c', 'j', 'x'], agreeTensors);
    q.add(ok('a', h1));
    q.add(ok('b', new Float32Array(h1)));
    q.add(ok('c', new Float32Array(h1)));
    q.add(ok('j', below)); // agrees with the group
    q.add(ok('x', new Float32Array([1 - 0.003998, 2]))); // agrees with j only
    expect(q.state).toMatchObject({ kind: 'agreed', agreeing: ['a', 'b', 'c', 'j'], disagreeing: ['x'] });
  });
});

describe('describe', () => {
  it('says how each replica answered, for the log when a vote fails', () => {
    const q = new Quorum<number>(['a', 'b', 'c'], (x, y) => x === y);
    q.add({ status: 'fulfilled', replica: 'a', value: 1 });
    q.add({ status: 'rejected', replica: 'b', reason: 'ERR_COMPUTE' });
    expect(q.describe()).toBe('pending: a answered, b failed (ERR_COMPUTE), c missing');
    q.add({ status: 'fulfilled', replica: 'c', value: 2 });
    expect(q.describe()).toBe('no-majority: a answered, b failed (ERR_COMPUTE), c answered');
    const ok = new Quorum<number>(['a', 'b'], (x, y) => x === y, { needed: 1 });
    ok.add({ status: 'disconnected', replica: 'b' });
    ok.add({ status: 'fulfilled', replica: 'a', value: 1 });
    expect(ok.describe()).toBe('agreed: b disconnected, a agreed');
  });
});
