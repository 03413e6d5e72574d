/**
 * The body of stage-files.ts's worker thread: one request (workerData.request), one reply, then the thread ends.
 * Reading a checkpoint, hashing it, building stages and checking their sha256 take seconds for a model that needs a
 * swarm (2.1–2.7 s at a stretch for the SmolLM-135M-shaped one on the main thread, bench/stage-files.ts); here they hold no
 * event loop that serves sockets and votes.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { ModelError } from '../../shared/model/errors.js';
import { ensureStages, loadStageSet } from './model-folder.js';
import type { StageFilesReply, StageFilesRequest } from './stage-files.js';

async function answer(request: StageFilesRequest): Promise<{ reply: StageFilesReply; transfer: ArrayBuffer[] }> {
  switch (request.op) {
    case 'ensure': {
      const value = await ensureStages(request.modelDir, request.partition, request.cacheRoot, request.choice);
      return { reply: { ok: true, op: 'ensure', value }, transfer: [] };
    }
    case 'load': {
      const value = await loadStageSet(request.dir);
      // Each file's bytes are a buffer of their own (readWholeFile): moved, not copied, to the caller.
      const transfer = [...new Set(value.stageBytes.map((b) => b.buffer as ArrayBuffer))];
      return { reply: { ok: true, op: 'load', value }, transfer };
    }
    default: {
      const never: never = request;
      throw new Error(`unknown request ${JSON.stringify(never)}`);
    }
  }
}

const port = parentPort;
if (port === null) throw new Error('stage-files-thread.ts runs only as a worker thread');
try {
  const { reply, transfer } = await answer((workerData as { request: StageFilesRequest }).request);
  port.postMessage(reply, transfer);
} catch (e) {
  const error = e instanceof ModelError ? { code: e.code, file: e.file, message: e.message } : { message: (e as Error).message ?? String(e) };
  port.postMessage({ ok: false, error } satisfies StageFilesReply);
}
