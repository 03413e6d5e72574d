import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { constants } from 'node:buffer';
import { ModelError } from '../../shared/model/errors.js';

/** What one readSync call reads at most: below the 2 GiB that Node's single reads allow. */
const CHUNK_BYTES = 1 << 30;

/**
 * A whole file's bytes, read in chunks. `readFileSync` refuses files over
 * 2 GiB (ERR_FS_FILE_TOO_LARGE), and checkpoints people have are that big
 * (TinyLlama-1.1B's model.safetensors is 2.2 GB, Llama-3.2-1B's 2.5 GB); a
 * typed array holds up to buffer.constants.MAX_LENGTH bytes (4 GiB in Node 20).
 */
export function readWholeFile(path: string, chunkBytes = CHUNK_BYTES): Uint8Array {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    if (size > constants.MAX_LENGTH) {
      throw new ModelError(
        'ERR_MODEL_BAD_SAFETENSORS',
        path,
        `is ${size} bytes, more than one buffer holds here (${constants.MAX_LENGTH}); split it into shards with model.safetensors.index.json`,
      );
    }
    const out = new Uint8Array(size);
    let at = 0;
    while (at < size) {
      const n = readSync(fd, out, at, Math.min(chunkBytes, size - at), at);
      if (n === 0) throw new ModelError('ERR_MODEL_BAD_SAFETENSORS', path, `ended after ${at} of ${size} bytes`);
      at += n;
    }
    return out;
  } finally {
    closeSync(fd);
  }
}
