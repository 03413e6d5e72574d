import { closeSync, constants as fsConstants, fstatSync, openSync, readSync } from 'node:fs';
import { constants } from 'node:buffer';
import { ModelError, type ModelErrorCode } from '../../shared/model/errors.js';

/** What one readSync call reads at most: below the 2 GiB that Node's single reads allow. */
const CHUNK_BYTES = 1 << 30;

/** The most a file of one kind may weigh, and what to say of one that weighs more. */
export interface SizeLimit {
  readonly maxBytes: number;
  readonly code: ModelErrorCode;
  readonly advice: string;
}

/** Weights (and stage files): as much as one buffer holds here. */
export const WEIGHTS_LIMIT: SizeLimit = {
  maxBytes: constants.MAX_LENGTH,
  code: 'ERR_MODEL_BAD_SAFETENSORS',
  advice: 'split it into shards with model.safetensors.index.json',
};

/** A JSON file of a model folder or a stage set (config, tokenizer, manifest, index): the largest tokenizers are tens of MB. */
export const JSON_LIMIT: SizeLimit = {
  maxBytes: 256 * 1024 * 1024,
  code: 'ERR_MODEL_BAD_JSON',
  advice: 'no JSON file of a model is that large',
};

/** What a file system call's error says in a log line: its errno code, or its message where it has none. */
export function errnoOf(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
}

/**
 * A whole file's bytes, read in chunks. `readFileSync` refuses files over
 * 2 GiB (ERR_FS_FILE_TOO_LARGE), and checkpoints people have are that big
 * (TinyLlama-1.1B's model.safetensors is 2.2 GB, Llama-3.2-1B's 2.5 GB); a
 * typed array holds up to buffer.constants.MAX_LENGTH bytes (4 GiB in Node 20).
 * Only a regular file is read: a folder, a pipe or a device in its place is
 * refused by name (opened without blocking, so that a pipe nobody writes to
 * cannot hang the start), as is a file over `limit` or one the system will not
 * open or read (its errno named).
 */
export function readWholeFile(path: string, chunkBytes = CHUNK_BYTES, limit: SizeLimit = WEIGHTS_LIMIT): Uint8Array {
  let fd: number;
  try {
    fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  } catch (e) {
    throw new ModelError('ERR_MODEL_FILE_UNREADABLE', path, `cannot be opened (${errnoOf(e)})`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new ModelError('ERR_MODEL_FILE_UNREADABLE', path, 'is not a regular file (a folder, a pipe or a device is in its place)');
    const size = st.size;
    if (size > limit.maxBytes) throw new ModelError(limit.code, path, `is ${size} bytes, more than ${limit.maxBytes}: ${limit.advice}`);
    const out = new Uint8Array(size);
    let at = 0;
    while (at < size) {
      let n: number;
      try {
        n = readSync(fd, out, at, Math.min(chunkBytes, size - at), at);
      } catch (e) {
        throw new ModelError('ERR_MODEL_FILE_UNREADABLE', path, `cannot be read (${errnoOf(e)}) after ${at} of ${size} bytes`);
      }
      if (n === 0) throw new ModelError(limit.code, path, `ended after ${at} of ${size} bytes`);
      at += n;
    }
    return out;
  } finally {
    closeSync(fd);
  }
}
