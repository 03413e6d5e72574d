/** Defaults shared by the server, the CLI tools and the tests. */
export const DEFAULT_MODEL = 'austen-2m';
export const DEFAULT_STAGES = 3;
export const STAGE_CACHE = '.cache/stages';
/** Positions served by default where a model states more (CONTEXT; llama.cpp's default context is 4 096, vLLM's the model's). */
export const DEFAULT_CONTEXT = 8192;

/** Resolves a model argument: a folder path (contains "/"), or the id of a model under models/. */
export function modelDir(model: string): string {
  return model.includes('/') ? model : `models/${model}`;
}
