import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../shared/model/sampling.js';
import { type Candidate, chooseReplicas, chooseRoute } from './route.js';

const c = (id: string, keys: string[], established = false, weight = 0.5): Candidate => ({ id, keys, established, weight });

describe('route choice', () => {
  it('forms a route only with r replicas in every stage, and names the stage that lacks them', () => {
    const random = seededRandom(1);
    const ok = chooseRoute(
      [
        [c('a', ['ka']), c('b', ['kb']), c('x', ['kx'])],
        [c('d', ['kd']), c('e', ['ke']), c('f', ['kf'])],
      ],
      3,
      random,
    );
    expect(ok).toMatchObject({ ok: true });
    const lacking = chooseRoute([[c('a', ['ka']), c('b', ['kb']), c('x', ['kx'])], [c('d', ['kd'])]], 3, random);
    expect(lacking).toEqual({ ok: false, stage: 1, have: 1 });
  });

  it('never puts two replicas of one client (same key or address) in one stage', () => {
    const random = seededRandom(2);
    const sybils = [c('s1', ['key:1', 'addr:10.0.0.9']), c('s2', ['key:2', 'addr:10.0.0.9'])];
    for (let i = 0; i < 200; i++) {
      const chosen = chooseReplicas([c('h1', ['key:h1', 'addr:10.0.0.1']), ...sybils, c('h2', ['key:h2', 'addr:10.0.0.2'])], 3, random);
      expect(chosen.filter((x) => x.id.startsWith('s')).length).toBeLessThanOrEqual(1);
    }
    // Two sockets of one client and one honest tab: no route of three.
    expect(chooseReplicas([c('h1', ['key:h1']), ...sybils], 3, random)).toHaveLength(2);
  });

  it('finds the r distinct clients a stage has, also past a socket that shares a key with one and its address with another', () => {
    const random = seededRandom(4);
    // One client's key on two sockets, its address on two: drawn first, the bridge leaves no third seat.
    const stage = [
      c('bridge', ['key:1', 'addr:10.0.0.1']),
      c('same-key', ['key:1', 'addr:10.0.0.2']),
      c('same-address', ['key:3', 'addr:10.0.0.1']),
      c('other', ['key:4', 'addr:10.0.0.4']),
    ];
    let short = 0;
    for (let i = 0; i < 1_000; i++) {
      const chosen = chooseReplicas(stage, 3, random);
      if (chosen.length < 3) short += 1;
      else expect(chosen.map((x) => x.id).sort()).toEqual(['other', 'same-address', 'same-key']);
    }
    expect(short).toBe(0);
  });

  it('leaves a newcomer out when it shares keys with the established replicas that can fill the stage', () => {
    const random = seededRandom(5);
    // The newcomer shares the client key of one established replica and the address of another.
    const stage = [
      c('newcomer', ['key:1', 'addr:10.0.0.1']),
      c('est-key', ['key:1', 'addr:10.0.0.2'], true, 0.9),
      c('est-address', ['key:3', 'addr:10.0.0.1'], true, 0.9),
      c('est-other', ['key:4', 'addr:10.0.0.4'], true, 0.9),
    ];
    for (let i = 0; i < 100; i++)
      expect(
        chooseReplicas(stage, 3, random)
          .map((x) => x.id)
          .sort(),
      ).toEqual(['est-address', 'est-key', 'est-other']);
  });

  it('newcomers take at most the minority of seats where established replicas can hold the majority', () => {
    const random = seededRandom(3);
    const pool = [
      c('e1', ['e1'], true, 0.9),
      c('e2', ['e2'], true, 0.9),
      c('e3', ['e3'], true, 0.9),
      c('n1', ['n1']),
      c('n2', ['n2']),
      c('n3', ['n3']),
    ];
    let newcomersSeen = 0;
    for (let i = 0; i < 200; i++) {
      const chosen = chooseReplicas(pool, 3, random);
      expect(chosen).toHaveLength(3);
      const n = chosen.filter((x) => !x.established).length;
      expect(n).toBeLessThanOrEqual(1);
      newcomersSeen += n;
    }
    // …but they do get seats, to earn a record.
    expect(newcomersSeen).toBeGreaterThan(100);
  });

  it('is random and weighted by reputation, not by age', () => {
    const random = seededRandom(4);
    const pool = [c('old', ['a'], true, 0.2), c('b', ['b'], true, 0.9), c('c', ['c'], true, 0.9), c('d', ['d'], true, 0.9)];
    const picked = new Map<string, number>();
    for (let i = 0; i < 1000; i++) for (const x of chooseReplicas(pool, 1, random)) picked.set(x.id, (picked.get(x.id) ?? 0) + 1);
    expect(picked.get('old') ?? 0).toBeLessThan(150);
    for (const id of ['b', 'c', 'd']) expect(picked.get(id) ?? 0).toBeGreaterThan(200);
  });

  it('a replacement keeps the stage within the rules next to the replicas that stay', () => {
    const random = seededRandom(5);
    const staying = [c('n1', ['n1']), c('e1', ['e1'], true, 0.9)];
    // One seat left, the minority seat is already a newcomer's: an established spare is taken before a newcomer.
    const [spare] = chooseReplicas([c('n2', ['n2']), c('e2', ['e2'], true, 0.9)], 3, random, staying);
    expect(spare?.id).toBe('e2');
    // A spare of the same client as one that stays is never taken.
    expect(chooseReplicas([c('dup', ['n1'])], 3, random, staying)).toEqual([]);
  });
});
