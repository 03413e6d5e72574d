/**
 * Faults, measured on the in-process swarm (real stages, replicas and
 * coordinator; direct calls in place of WebRTC): ms per token clean, with one
 * slow replica and with a crash; and for each fault kind, whether the tokens
 * stayed correct, whether a wrong token was ever accepted as verified (must be
 * never), and whether the fault was detected.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GREEDY } from '../shared/model/sampling.js';
import { FAULT_KINDS, faultBehaviour } from '../shared/swarm/faults.js';
import { ensureStages, loadStageSet } from '../signal-server/models/model-folder.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';
import {
  createInProcessSwarm,
  type InProcessResult,
  releaseInProcessSwarm,
  runInProcess,
} from '../signal-server/testing/in-process-swarm.js';
import { median, printTable } from './table.js';

const PROMPT = 'It is a truth universally acknowledged, that a single man';
const R = 3;

export async function benchFaults(o: { modelDir: string; stages: number; tokens: number; repeats: number }): Promise<void> {
  const cache = mkdtempSync(join(tmpdir(), 'webswarm-bench-faults-'));
  try {
    const { dir } = await ensureStages(o.modelDir, { stages: o.stages }, cache);
    const set = await loadStageSet(dir);
    const reference = await ReferenceRunner.fromStageDir(dir);
    const promptIds = reference.tokenizer.encode(PROMPT);
    const expected = (await reference.generateIds(promptIds, o.tokens, GREEDY)).tokens;
    await reference.close();
    const swarm = await createInProcessSwarm(set.manifest, set.stageBytes, R);
    const mid = Math.min(1, o.stages - 1);
    const who = `s${mid}r1`;
    const spare = `s${mid}spare`;
    try {
      await runInProcess(swarm, promptIds, 128); // warm-up
      const runs = {
        clean: [] as number[],
        meshOff: [] as number[],
        liar: [] as number[],
        slow: [] as number[],
        crash: [] as number[],
        crashStep: [] as number[],
      };
      // A last-stage replica that computes and reports honestly but sends stage 0 another token (the mesh loop).
      const liar = `s${o.stages - 1}r0`;
      const lie = { output: (_s: number, d: Float32Array) => d, delayMs: 0, token: (_step: number, t: number) => (t === 0 ? 1 : t - 1) };
      for (let i = 0; i < o.repeats; i++) {
        runs.clean.push(median((await runInProcess(swarm, promptIds, o.tokens)).stepMs));
        runs.meshOff.push(median((await runInProcess({ ...swarm, meshLoop: false }, promptIds, o.tokens)).stepMs));
        const lied = await runInProcess(swarm, promptIds, o.tokens, { [liar]: lie });
        if (lied.tokens.join() !== expected.join()) throw new Error('a lying last stage changed the tokens');
        runs.liar.push(median(lied.stepMs));
        runs.slow.push(median((await runInProcess(swarm, promptIds, o.tokens, { [who]: faultBehaviour('slow', 1) })).stepMs));
        const crashed = await runInProcess(swarm, promptIds, o.tokens, {}, [], { who, afterSteps: Math.floor(o.tokens / 2), spare });
        runs.crash.push(median(crashed.stepMs));
        const at = crashed.replacements[0]?.atStep;
        if (at !== undefined && crashed.stepMs[at] !== undefined) runs.crashStep.push(crashed.stepMs[at] as number);
      }
      const clean = median(runs.clean);
      printTable(
        `faults, in-process swarm of ${o.stages} stages × r = ${R} (median of ${o.repeats} runs × ${o.tokens} tokens; one replica of stage ${mid} misbehaves)`,
        ['run', 'ms/token', '× clean'],
        [
          ['clean (mesh loop)', clean.toFixed(2), '1.00'],
          ['clean, MESH_LOOP=off', median(runs.meshOff).toFixed(2), (median(runs.meshOff) / clean).toFixed(2)],
          [
            `one last-stage replica (${liar}) sends stage 0 wrong tokens (outvoted there)`,
            median(runs.liar).toFixed(2),
            (median(runs.liar) / clean).toFixed(2),
          ],
          ['one slow replica (1 s per step)', median(runs.slow).toFixed(2), (median(runs.slow) / clean).toFixed(2)],
          [
            'one replica crashes mid-generation, a spare takes over',
            median(runs.crash).toFixed(2),
            (median(runs.crash) / clean).toFixed(2),
          ],
          [
            '  the step during which the spare replayed the session and joined',
            median(runs.crashStep).toFixed(2),
            (median(runs.crashStep) / clean).toFixed(2),
          ],
        ],
      );
      const rows: string[][] = [];
      for (const kind of FAULT_KINDS) {
        let r: InProcessResult;
        // A wrong token can only come from the last stage.
        const faulty = kind === 'wrong-token' ? `s${o.stages - 1}r1` : who;
        // A lost GPU device is, to the coordinator, a volunteer that leaves mid-generation (and comes back later as a new one).
        if (kind === 'crash' || kind === 'disconnect' || kind === 'gpu-lost')
          r = await runInProcess(swarm, promptIds, o.tokens, {}, [], { who, afterSteps: 3, spare });
        else r = await runInProcess(swarm, promptIds, o.tokens, { [faulty]: faultBehaviour(kind, 7) });
        const correct = r.streamed.filter((t, i) => t === expected[i]).length;
        const wrongVerified = r.streamed.filter((t, i) => t !== expected[i]).length;
        // Its last score as it was told (an eviction forgets the audit).
        const counts = r.scores.get(faulty) ?? r.audit.get(faulty);
        const evicted = r.evicted.get(faulty);
        const equivocated = r.equivocators.find((e) => e.volunteer === faulty);
        const detected =
          equivocated !== undefined
            ? `equivocation at step ${equivocated.step}`
            : kind === 'nudge'
              ? 'in agreement (moves nothing)'
              : evicted !== undefined
                ? `${counts.disagreed} disagreements, evicted (${evicted}), a spare took over`
                : r.replacements.length > 0
                  ? 'replaced by a spare'
                  : counts.disagreed > 0
                    ? `${counts.disagreed} disagreements`
                    : kind === 'slow' || kind === 'silent'
                      ? 'late / missing'
                      : 'no';
        rows.push([kind, faulty, `${correct}/${o.tokens}`, String(wrongVerified), detected]);
      }
      printTable(
        `each fault kind, one faulty replica of stage ${mid} (${o.tokens} tokens)`,
        ['fault', 'replica', 'tokens correct', 'wrong but verified', 'detected'],
        rows,
      );
    } finally {
      await releaseInProcessSwarm(swarm);
    }
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
}
