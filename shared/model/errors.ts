/**
 * Errors of model loading and stage building. Each names the file it is about
 * and carries a code from a closed union, so that callers (the CLI, the server,
 * tests) can tell the kinds apart without parsing messages.
 */
export type ModelErrorCode =
  | 'ERR_MODEL_FILE_MISSING'
  /** There, but not a regular file (a folder, a pipe), or the system will not open or read it (its errno named). */
  | 'ERR_MODEL_FILE_UNREADABLE'
  | 'ERR_MODEL_BAD_JSON'
  | 'ERR_MODEL_UNSUPPORTED'
  | 'ERR_MODEL_BAD_CONFIG'
  | 'ERR_MODEL_BAD_SAFETENSORS'
  | 'ERR_MODEL_TENSOR_MISSING'
  | 'ERR_MODEL_TENSOR_SHAPE'
  | 'ERR_MODEL_TENSOR_DTYPE'
  | 'ERR_MODEL_BAD_PARTITION'
  | 'ERR_MANIFEST_INVALID'
  | 'ERR_MANIFEST_SHA256'
  | 'ERR_MANIFEST_SIZE'
  | 'ERR_MODEL_BAD_TOKENIZER'
  | 'ERR_STAGE_DIR';

export class ModelError extends Error {
  readonly code: ModelErrorCode;
  /** The file the error is about, as the caller named it (a path or a manifest entry). */
  readonly file: string;

  constructor(code: ModelErrorCode, file: string, detail: string) {
    super(`${file}: ${detail} [${code}]`);
    this.name = 'ModelError';
    this.code = code;
    this.file = file;
  }
}
