/**
 * Where the server reads and builds stage files (signal-server/models/stage-files.ts), side by side in one run: on
 * the main thread against in a worker thread, the total time and the longest the event loop went without a turn
 * (a 1 ms timer's longest gap). On the SmolLM-135M-shaped checkpoint (30 layers, 3 fused stages): building a cut
 * into an empty stage cache, and finding it built; on austen-2m: loading its 3 stages (what a challenge oracle's
 * first load does), where a thread's start costs more than the reading (stage-files.ts's OFF_THREAD_BYTES).
 * And what a chat's template costs a message on the event loop (the tokenizer routes and chat charge for it):
 * 512 empty messages rendered, against 1 000 characters of text tokenized.
 *
 *   node --import tsx bench/stage-files.ts, or in npm run bench (BENCH_STAGE_FILES=0 skips it)
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer } from '../shared/model/tokenizer.js';
import { ensureStages, loadStageSet } from '../signal-server/models/model-folder.js';
import { ensureStagesOffThread, loadStageSetOffThread } from '../signal-server/models/stage-files.js';
import { longestStall } from '../testing/event-loop.js';
import { ensureRandomCheckpoint, SMOLLM_135M_SHAPE } from '../testing/random-checkpoint.js';
import { SMOLLM_SHAPED_DIR, SMOLLM_SHAPED_SEED } from './distribution.js';
import { median, printTable } from './table.js';

const AUSTEN = 'models/austen-2m';

/** `work` `repeats` times: the median total ms and the median longest stall. */
async function measure(repeats: number, work: (i: number) => Promise<unknown>): Promise<{ totalMs: number; stallMs: number }> {
  const totals: number[] = [];
  const stalls: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    stalls.push(await longestStall(() => work(i)));
    totals.push(performance.now() - t0);
  }
  return { totalMs: median(totals), stallMs: median(stalls) };
}

export async function benchStageFiles(o: { readonly repeats: number }): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'webswarm-bench-stage-files-'));
  try {
    const smollm = ensureRandomCheckpoint(SMOLLM_SHAPED_DIR, SMOLLM_135M_SHAPE, SMOLLM_SHAPED_SEED);
    const partition = { stages: 3 } as const;
    const choice = { graph: 'fused' } as const;
    // A build is seconds: fewer runs of it, each into a stage cache of its own.
    const builds = Math.max(1, Math.min(o.repeats, 2));
    const rows: string[][] = [];
    const row = (what: string, main: { totalMs: number; stallMs: number }, thread: { totalMs: number; stallMs: number }) =>
      rows.push([
        what,
        main.totalMs.toFixed(0),
        main.stallMs.toFixed(0),
        thread.totalMs.toFixed(0),
        thread.stallMs.toFixed(0),
        `${(main.stallMs / thread.stallMs).toFixed(0)}×`,
      ]);
    row(
      'SmolLM-135M-shaped, 3 fused stages: build',
      await measure(builds, (i) => ensureStages(smollm, partition, join(root, `main-${i}`), choice)),
      await measure(builds, (i) => ensureStagesOffThread(smollm, partition, join(root, `thread-${i}`), choice, 'thread')),
    );
    row(
      'SmolLM-135M-shaped, 3 fused stages: already built',
      await measure(o.repeats, () => ensureStages(smollm, partition, join(root, 'main-0'), choice)),
      await measure(o.repeats, () => ensureStagesOffThread(smollm, partition, join(root, 'main-0'), choice, 'thread')),
    );
    const austen = (await ensureStages(AUSTEN, partition, join(root, 'austen'))).dir;
    row(
      'austen-2m, 3 stages: load (a first challenge)',
      await measure(o.repeats, () => loadStageSet(austen)),
      await measure(o.repeats, () => loadStageSetOffThread(austen, 'thread')),
    );
    printTable(
      `stage files on the server's main thread vs in a worker thread (median of ${o.repeats} runs, ${builds} for a build): total ms and the longest the event loop went without a turn`,
      ['work', 'main: ms', 'main: longest stall ms', 'thread: ms', 'thread: longest stall ms', 'stall main / thread'],
      rows,
    );

    // A chat template's cost a message, against tokenizing text (what the tokenizer routes charge by).
    const tokenizer = Tokenizer.fromJson(
      'austen-2m',
      readFileSync(join(AUSTEN, 'tokenizer.json'), 'utf8'),
      readFileSync(join(AUSTEN, 'tokenizer_config.json'), 'utf8'),
    );
    const empty = Array.from({ length: 512 }, () => ({ role: 'user' as const, content: '' }));
    const words = 'It is a truth universally acknowledged, that a single man in possession of a good fortune '.repeat(12).slice(0, 1000);
    const timed = (f: () => unknown, n: number) =>
      median(
        Array.from({ length: n }, () => {
          const t0 = performance.now();
          f();
          return performance.now() - t0;
        }),
      );
    tokenizer.chatPrompt(empty);
    tokenizer.encode(words);
    const render = timed(() => tokenizer.chatPrompt(empty), Math.max(5, o.repeats));
    const encode = timed(() => tokenizer.encode(words), 5 * Math.max(5, o.repeats));
    printTable(
      `austen-2m's tokenizer on the event loop (median of ${Math.max(5, o.repeats)} runs): a chat's template renders each message`,
      ['work', 'ms', 'ms a message'],
      [
        ['chat template, 512 empty messages', render.toFixed(1), (render / 512).toFixed(3)],
        ['tokenize 1 000 characters of text', encode.toFixed(2), ''],
      ],
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await benchStageFiles({ repeats: Number(process.env.BENCH_REPEATS ?? 3) });
