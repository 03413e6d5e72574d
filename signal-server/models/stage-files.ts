/**
 * Stage files built and read in a worker thread of their own, off the event loop that serves sockets, votes and
 * HTTP. `ensureStages` reads and hashes the whole checkpoint even when the cut is cached, and `loadStageSet` reads
 * and hashes every stage file: on the SmolLM-135M-shaped checkpoint they held the server's event loop for 2.7 s at a
 * stretch (a re-partition's build) and 2.1 s (a cut already built), seconds in which no step of any session moved;
 * in the thread 44 ms and 21 ms (bench/stage-files.ts).
 * One thread per call, ended once it answers: these calls are rare (a re-partition, a runner's first load). Small
 * files are read where the call is (OFF_THREAD_BYTES).
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { ModelError, type ModelErrorCode } from '../../shared/model/errors.js';
import type { StageManifest } from '../../shared/model/manifest.js';
import type { Partition } from '../../shared/model/partition.js';
import { type BuildChoice, ensureStages, loadStageSet, type StageSet } from './model-folder.js';

/** What the thread is asked (one per thread). */
export type StageFilesRequest =
  | {
      readonly op: 'ensure';
      readonly modelDir: string;
      readonly partition: Partition;
      readonly cacheRoot: string;
      readonly choice: BuildChoice;
    }
  | { readonly op: 'load'; readonly dir: string };

/** What `ensureStages` gives. */
export interface EnsuredStages {
  readonly dir: string;
  readonly manifest: StageManifest;
  readonly built: boolean;
}

/** The thread's one answer. A ModelError keeps its code and file. */
export type StageFilesReply =
  | { readonly ok: true; readonly op: 'ensure'; readonly value: EnsuredStages }
  | { readonly ok: true; readonly op: 'load'; readonly value: StageSet }
  | { readonly ok: false; readonly error: { readonly code?: ModelErrorCode; readonly file?: string; readonly message: string } };

/**
 * Below this many bytes to read, the work stays on the calling thread: a thread's start (most of it its TypeScript
 * loader) costs more than reading them (austen-2m's 3 stages: 40 ms on the main thread, 405 in a thread, in
 * bench/stage-files.ts), and it delayed a small model's first challenge past what its volunteers' budgets expect.
 */
export const OFF_THREAD_BYTES = 32 * 1024 * 1024;

/** Where the work runs: `auto`, in a thread when it reads OFF_THREAD_BYTES or more; `thread`, always there (tests). */
export type StageFilesPlace = 'auto' | 'thread';

/** model-folder.ts's `ensureStages`, in a thread of its own when the checkpoint is large. */
export async function ensureStagesOffThread(
  modelDir: string,
  partition: Partition,
  cacheRoot: string,
  choice: BuildChoice = {},
  where: StageFilesPlace = 'auto',
): Promise<EnsuredStages> {
  if (where === 'auto' && bytesIn(modelDir, (name) => name.endsWith('.safetensors')) < OFF_THREAD_BYTES)
    return ensureStages(modelDir, partition, cacheRoot, choice);
  const reply = await inThread({ op: 'ensure', modelDir, partition, cacheRoot, choice });
  if (reply.op !== 'ensure') throw new Error(`the stage files' thread answered ${reply.op} to ensure`);
  return reply.value;
}

/** model-folder.ts's `loadStageSet`, in a thread of its own when the stages are large; their bytes are moved here, not copied. */
export async function loadStageSetOffThread(dir: string, where: StageFilesPlace = 'auto'): Promise<StageSet> {
  if (where === 'auto' && bytesIn(dir, (name) => name.endsWith('.onnx')) < OFF_THREAD_BYTES) return loadStageSet(dir);
  const reply = await inThread({ op: 'load', dir });
  if (reply.op !== 'load') throw new Error(`the stage files' thread answered ${reply.op} to load`);
  return reply.value;
}

/** The bytes of a folder's files that `wanted` names (0 for a folder that is not there: the work then says why). */
function bytesIn(dir: string, wanted: (name: string) => boolean): number {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isFile() && wanted(e.name))
      .reduce((a, e) => a + statSync(join(dir, e.name)).size, 0);
  } catch {
    return 0;
  }
}

function inThread(request: StageFilesRequest): Promise<Extract<StageFilesReply, { ok: true }>> {
  return new Promise((resolve, reject) => {
    // No options of this process: a TypeScript loader in them (tsx) would be registered twice; ts-thread.mjs loads it.
    const worker = new Worker(new URL('./ts-thread.mjs', import.meta.url), {
      execArgv: [],
      workerData: { entry: new URL('./stage-files-thread.ts', import.meta.url).href, request },
    });
    let answered = false;
    worker.once('message', (reply: StageFilesReply) => {
      answered = true;
      if (reply.ok) resolve(reply);
      else reject(rebuilt(reply.error));
    });
    worker.once('error', (e: Error) => {
      answered = true;
      reject(new Error(`the stage files' thread failed: ${e.message}`));
    });
    worker.once('exit', (code) => {
      if (!answered) reject(new Error(`the stage files' thread ended (exit code ${code}) without an answer`));
    });
  });
}

/** The thread's error as thrown there: a ModelError with its code, file and message, or an Error with its message. */
function rebuilt(error: Extract<StageFilesReply, { ok: false }>['error']): Error {
  if (error.code === undefined || error.file === undefined) return new Error(error.message);
  const e = new ModelError(error.code, error.file, '');
  e.message = error.message;
  return e;
}
