/** Defaults shared by the server, the CLI tools and the tests. */
export const DEFAULT_MODEL = 'austen-2m';
export const DEFAULT_STAGES = 3;
export const STAGE_CACHE = '.cache/stages';

/** Resolves a model argument: a folder path (contains "/"), or the id of a model under models/. */
export function modelDir(model: string): string {
  return model.includes('/') ? model : `models/${model}`;
}
