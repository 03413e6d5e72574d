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
