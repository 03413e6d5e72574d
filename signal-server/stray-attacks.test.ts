// Red team (83cd8ca, strayToDrop): a stage-1 replica (ReplicaCore, real stage on onnxruntime) of prev [A, B, C] is
// rolled back to step s; stage 0 recomputes s.. in era 1 and its frames overtake the update (strays). Hostile peers
// flood strays meanwhile, of this era and of newer ones, so that the honest frames are the ones dropped.
import { describe, expect, it } from 'vitest';
import { MESH_AHEAD } from '../shared/swarm/mesh-loop.js';
import { recordingReplica, sendHidden, tinyStagesForFile, until } from './testing/tiny-stages.js';

const SESSION = 31;
const PREV = ['A', 'B', 'C'];
const stages = tinyStagesForFile('webswarm-rt-strays-');

function stage1() {
  const { manifest } = stages();
  const { core, digests, rejected } = recordingReplica(stages(), 1);
  core.open({ sessionId: SESSION, stage: 1, replica: 0, prev: PREV, next: ['n0'], replayTo: 0 });
  const hidden = manifest.model.hiddenSize;
  /** A frame of stage 0 for `step` in `era`, as replica `replica`, from peer `from` (`salt` changes its data). */
  const one = (from: string, replica: number, step: number, era: number, salt = 0) =>
    sendHidden(core, from, { sessionId: SESSION, step, replica, era, hidden, salt });
  const send = (step: number, era: number) => {
    for (const [replica, from] of PREV.entries()) one(from, replica, step, era);
  };
  return { core, digests, rejected, send, one };
}

/** Steps 0..s+MESH_AHEAD taken in era 0, then the honest era-1 frames of s..s+2 interleaved with `flood`, then the update. */
async function rolledBack(flood: (r: ReturnType<typeof stage1>, step: number) => void) {
  const r = stage1();
  const s = 2;
  for (let step = 0; step <= s + MESH_AHEAD; step++) r.send(step, 0);
  await until(() => r.digests.length === s + MESH_AHEAD + 1, 'steps 0..4');
  for (let step = s; step <= s + 2; step++) {
    r.send(step, 1);
    flood(r, step);
  }
  r.core.update({ sessionId: SESSION, prev: PREV, next: ['n0'], resendTo: [], resetFrom: s, era: 1 });
  await new Promise((res) => setTimeout(res, 800));
  const again = r.digests.filter((d) => d.resets === 1).map((d) => d.step);
  r.core.close(SESSION);
  return { again, rejected: r.rejected, s };
}

describe('strays flooded while a roll-back update is late (red team)', () => {
  it('one stranger floods same-era and newer-era frames (eras 1, 2, 100) between the honest ones: s.. computed again', async () => {
    const { again, s } = await rolledBack((r, step) => {
      for (let k = 0; k < 12; k++) r.one('X', k % 3, step + (k % 4), [0, 1, 2, 100][k % 4] as number, 7 + k);
    });
    expect(again.slice(0, 3)).toEqual([s, s + 1, s + 2]);
  });

  it('a linked sender (C) floods era-1 frames of far steps and era-0 late copies: A and B still carry s..', async () => {
    const { again, s } = await rolledBack((r, step) => {
      for (let k = 0; k < 12; k++) r.one('C', 2, k % 2 === 0 ? 50 + step * 12 + k : k % 3, k % 2 === 0 ? 1 : 0, 3 + k);
    });
    expect(again.slice(0, 3)).toEqual([s, s + 1, s + 2]);
  });

  it('two strangers flooding (4 frames a step each): always the busiest, their own frames dropped, s.. computed again', async () => {
    const { again, s } = await rolledBack((r, step) => {
      for (let k = 0; k < 4; k++) for (const x of ['X1', 'X2']) r.one(x, 0, step + 40 + k, 1, 9);
    });
    expect(again.slice(0, 3)).toEqual([s, s + 1, s + 2]);
  });

  // FINDING: with 3 or more identities a flood settles at ties with the honest senders (9 honest strays + 7 others
  // within MAX_STRAYS = 16), and on a tie "the first such peer" (Map order: the first to have a stray waiting) is an
  // honest sender, whose newest newer-era frame goes: step s + 2 is never computed again (sent once).
  it('Sybils tying the honest senders, the honest frames first (first on a tie): s.. computed again', async () => {
    const { again, s, rejected } = await rolledBack((r, step) => {
      for (const x of ['X1', 'X2', 'X3', 'X4']) r.one(x, 0, step + 40, 1, 9);
    });
    expect(
      again.slice(0, 3),
      `refused: ${rejected
        .filter((w) => w.includes('NOT_LINKED'))
        .slice(0, 6)
        .join('; ')}`,
    ).toEqual([s, s + 1, s + 2]);
  });

  // FINDING (closed by SENDER_STRAYS_KEPT): eight Sybils holding fewer strays each than the honest senders (one, then
  // two) still filled the strays (16 then), and the busiest were then the senders, whose newest recomputed frames went.
  it('eight Sybils each keeping fewer strays than the senders: the senders keep their recomputed steps', async () => {
    const sybils = Array.from({ length: 8 }, (_, k) => `X${k}`);
    let round = 0;
    const { again, s } = await rolledBack((r, step) => {
      if (round++ !== 1) for (const x of sybils) r.one(x, 0, step + 40, 1, 9);
    });
    expect(again.slice(0, 3)).toEqual([s, s + 1, s + 2]);
  });

  it('a named sender flooding newer-era frames keeps only its own first ones: the other senders carry s..', async () => {
    const { again, s } = await rolledBack((r, step) => {
      for (let k = 0; k < 8; k++) r.one('C', 2, 60 + step * 8 + k, 1, 5 + k);
      for (const x of ['X1', 'X2', 'X3']) r.one(x, 1, step + 30, 1, 2);
    });
    expect(again.slice(0, 3)).toEqual([s, s + 1, s + 2]);
  });
});
