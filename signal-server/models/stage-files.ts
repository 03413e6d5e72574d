/**
 * Stage files built and read in a worker thread of their own, off the event loop that serves sockets, votes and
 * HTTP. `ensureStages` reads and hashes the whole checkpoint even when the cut is cached, and `loadStageSet` reads
 * and hashes every stage file: on the SmolLM-135M-shaped checkpoint they held the server's event loop for 2.5 s at a
 * stretch (a re-partition's build) and 2.0 s (a cut already built), seconds in which no step of any session moved.
 * One thread per call, ended once it answers: these calls are rare (a re-partition, a runner's first load).
 */
import { Worker } from 'node:worker_threads';
import { ModelError, type ModelErrorCode } from '../../shared/model/errors.js';
import type { StageManifest } from '../../shared/model/manifest.js';
import type { Partition } from '../../shared/model/partition.js';
import type { BuildChoice, StageSet } from './model-folder.js';

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

/** model-folder.ts's `ensureStages`, in a thread of its own. */
export async function ensureStagesOffThread(
  modelDir: string,
  partition: Partition,
  cacheRoot: string,
  choice: BuildChoice = {},
): Promise<EnsuredStages> {
  const reply = await inThread({ op: 'ensure', modelDir, partition, cacheRoot, choice });
  if (reply.op !== 'ensure') throw new Error(`the stage files' thread answered ${reply.op} to ensure`);
  return reply.value;
}

/** model-folder.ts's `loadStageSet`, in a thread of its own; the stage files' bytes are moved here, not copied. */
export async function loadStageSetOffThread(dir: string): Promise<StageSet> {
  const reply = await inThread({ op: 'load', dir });
  if (reply.op !== 'load') throw new Error(`the stage files' thread answered ${reply.op} to load`);
  return reply.value;
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
