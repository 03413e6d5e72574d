// What a replica's session:joined says of the neighbours it could not reach
// (`unreached`), attacked over Socket.IO: a real server on port 0 and
// real-protocol Node volunteers computing on onnxruntime. The coordinator puts
// the fault on a neighbour only when a majority of a stage beside it names it;
// a single replica naming its honest neighbours (or anyone) costs them nothing.
// (The data channels themselves, and a neighbour that never connects, are
// e2e/hostile-silent.spec.ts's: Node volunteers relay frames over the socket.)
import { describe, expect, it } from 'vitest';
import type { SessionOpen } from '../shared/protocol/messages.js';
import { createLogger } from './log.js';
import { httpSwarm } from './testing/http-swarm.js';
import type { NodeVolunteer } from './testing/node-volunteer.js';

const { start, complete, joinAll } = httpSwarm('unreached');
/** Three no-shows evict a volunteer (coordinator/session-runner.ts): three requests would push one out. */
const REQUESTS = 3;

/** A server of `stages` stages at r = 3 whose log lines are kept, and 3 volunteers a stage; `claims(i, m)`: what volunteer i says it could not reach. */
async function rig(claims: (i: number, m: SessionOpen, all: readonly NodeVolunteer[]) => readonly string[], stages = 2) {
  const lines: string[] = [];
  const logger = createLogger('info', { write: (chunk: string) => lines.push(...chunk.split('\n').filter((l) => l.length > 0)) });
  const { url, expected } = await start(stages, 3, { logger });
  let all: NodeVolunteer[] = [];
  all = await joinAll(url, 3 * stages, 40, (i) => ({ unreached: (m) => claims(i, m, all) }));
  const messages = () => lines.map((l) => (JSON.parse(l) as { msg?: string }).msg ?? '');
  return { url, expected, all, messages };
}

const ids = (vs: readonly NodeVolunteer[]) => vs.map((v) => v.id as string);

/** REQUESTS requests in a row, each answered with the reference tokens. */
async function referenceAnswers(url: string, expected: readonly number[]): Promise<void> {
  for (let k = 0; k < REQUESTS; k++) {
    const r = await complete(url);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.webswarm?.tokens).toEqual(expected);
  }
}

/** Nobody blamed, replaced or told an error; every session had all `n` replicas joined. */
function nobodyBlamed(msgs: readonly string[], all: readonly NodeVolunteer[], n: number): void {
  expect(msgs.filter((m) => /unreachable|did not join|not reached by|takes its place/.test(m))).toEqual([]);
  expect(msgs.filter((m) => new RegExp(`^session \\d+: ${n} of ${n} replicas joined`).test(m))).toHaveLength(REQUESTS);
  for (const v of all) expect(v.errors, v.id ?? '').toEqual([]);
}

describe('session:joined naming unreached neighbours', () => {
  it('one replica naming every other volunteer unreachable: the reference tokens, nobody blamed, nobody evicted', async () => {
    const { url, expected, all, messages } = await rig((i, _m, vs) => (i === 0 ? ids(vs).filter((id) => id !== vs[0]?.id) : []));
    await referenceAnswers(url, expected);
    nobodyBlamed(messages(), all, 6);
  });

  it('3 stages: one replica of stage 0 and one of stage 2 naming all of stage 1 (one of each side is no majority): nobody blamed', async () => {
    const { url, expected, all, messages } = await rig((i, m, vs) => {
      const v = vs[i];
      const first = (stage: number) => vs.find((x) => x.stage === stage);
      if (v === first(0)) return m.next;
      if (v === first(2)) return m.prev;
      return [];
    }, 3);
    await referenceAnswers(url, expected);
    nobodyBlamed(messages(), all, 9);
  });

  it('a majority of a stage naming a neighbour: a no-show on its record each session, evicted after three; the others keep theirs', async () => {
    // The target: the first volunteer of stage 0; two of stage 1's three name it (their claim need not be true).
    let target: string | null = null;
    const { url, expected, all, messages } = await rig((i, m, vs) => {
      const mine = vs[i];
      const stage1 = vs.filter((v) => v.stage === 1);
      target ??= vs.find((v) => v.stage === 0)?.id ?? null;
      const namer = mine !== undefined && stage1.indexOf(mine) >= 0 && stage1.indexOf(mine) < 2;
      return namer && target !== null && m.prev.includes(target) ? [target] : [];
    });
    await referenceAnswers(url, expected);
    const msgs = messages();
    const blamed = msgs.filter((m) => /unreachable/.test(m));
    expect(blamed).toHaveLength(REQUESTS);
    for (const m of blamed) expect(m).toContain(`${target} of stage 0 was unreachable for 2 replicas of stage 1`);
    expect(msgs.filter((m) => m.includes(`volunteer ${target} was not reached by a majority of a neighbouring stage`))).toHaveLength(
      REQUESTS,
    );
    const t = all.find((v) => v.id === target);
    await expect.poll(() => t?.errors.map((e) => e.code), { timeout: 5_000 }).toContain('ERR_EVICTED');
    // Told why, with what to check: not "sessions not joined" alone.
    expect(t?.errors.find((e) => e.code === 'ERR_EVICTED')?.message).toMatch(/reaching this volunteer over WebRTC/);
    // The others stay; all they met is frames for the evicted one refused after it left.
    for (const v of all.filter((x) => x !== t))
      expect(
        v.errors.filter((e) => !(e.code === 'ERR_NOT_LINKED' && e.message.includes(`not linked to ${target}`))),
        v.id ?? '',
      ).toEqual([]);
  });

  it('a majority naming replicas that are not its neighbours (its own stage): ignored', async () => {
    // Stage 1's replicas name the other replicas of stage 1: not beside them, so no claim counts.
    const { url, expected, all, messages } = await rig((i, _m, vs) =>
      vs[i]?.stage === 1 ? ids(vs.filter((v) => v.stage === 1 && v !== vs[i])) : [],
    );
    await referenceAnswers(url, expected);
    nobodyBlamed(messages(), all, 6);
  });
});
