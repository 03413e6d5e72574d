/**
 * vLLM's tokenizer endpoints at the server's root: POST /tokenize, POST /detokenize and GET /tokenizer_info.
 * Evaluation tools use them to count a prompt's tokens as the server does; lm-evaluation-harness's
 * `local-completions` looks for them at its base URL and, when it finds them, needs no tokenizer of its own. The
 * ids are the ones /v1/completions runs for the same text: no special tokens are added, whatever
 * `add_special_tokens` says (the completions add none either). Keys as on /v1; the rate limit is their own
 * (TOKENIZER_RATE_FACTOR times RATE_LIMIT_PER_MINUTE), so that tokenizing does not spend the generations' allowance.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { MAX_PROMPT_CHARS } from '../../shared/protocol/validate.js';
import { GenerationError } from '../coordinator/generation-error.js';
import { sendJson } from '../http/static-files.js';
import { type ApiContext, admitOrRefuse, NO_BODY, readJsonBody, sendApiError } from './completions.js';
import { type BodyError, bad, isObject, MAX_PROMPT_IDS, modelRefused, tokenIdsProblem } from './openai-params.js';

export const TOKENIZER_ROUTES = ['/tokenize', '/detokenize', '/tokenizer_info'] as const;
export type TokenizerRoute = (typeof TOKENIZER_ROUTES)[number];

export function isTokenizerRoute(path: string): path is TokenizerRoute {
  return (TOKENIZER_ROUTES as readonly string[]).includes(path);
}

/** POST /tokenize's body: `prompt` (text, possibly empty), optional `model` and `add_special_tokens`. */
export function parseTokenizeBody(raw: unknown, modelIds: readonly string[]): { prompt: string } | BodyError {
  if (!isObject(raw)) return bad('', 'the body must be a JSON object');
  const model = modelRefused(raw, modelIds);
  if (model !== null) return model;
  if (raw.messages !== undefined)
    return {
      status: 400,
      code: 'unsupported_parameter',
      param: 'messages',
      message: 'messages are not tokenized here: send the chat as `prompt` text (GET /tokenizer_info gives the chat template)',
    };
  if (raw.add_special_tokens !== undefined && typeof raw.add_special_tokens !== 'boolean')
    return bad('add_special_tokens', 'add_special_tokens must be a boolean');
  if (typeof raw.prompt !== 'string' || raw.prompt.length > MAX_PROMPT_CHARS)
    return bad('prompt', `prompt must be a string of at most ${MAX_PROMPT_CHARS} characters`);
  return { prompt: raw.prompt };
}

/** POST /detokenize's body: `tokens` (1..MAX_PROMPT_IDS ids), optional `model`. */
export function parseDetokenizeBody(raw: unknown, modelIds: readonly string[]): { tokens: number[] } | BodyError {
  if (!isObject(raw)) return bad('', 'the body must be a JSON object');
  const model = modelRefused(raw, modelIds);
  if (model !== null) return model;
  const problem = tokenIdsProblem(raw.tokens, 'tokens', MAX_PROMPT_IDS);
  if (problem !== null) return bad('tokens', problem);
  return { tokens: [...(raw.tokens as number[])] };
}

/** Answers one of the tokenizer routes: keys and rate limits as on /v1, then the served model's tokenizer. */
export async function handleTokenizerRoute(
  req: IncomingMessage,
  res: ServerResponse,
  route: TokenizerRoute,
  ctx: ApiContext,
): Promise<void> {
  const method = route === '/tokenizer_info' ? 'GET' : 'POST';
  if (req.method !== method && !(method === 'GET' && req.method === 'HEAD')) {
    req.resume();
    return sendApiError(res, 405, 'invalid_request_error', 'method_not_allowed', `use ${method} on ${route}`);
  }
  // Their own allowance, TOKENIZER_RATE_FACTOR times the API's: a tool tokenizes each request's parts apart.
  if (admitOrRefuse(req, res, ctx.access, true) === null) return;
  const swarm = ctx.swarm;
  if (swarm === null) {
    req.resume();
    return sendApiError(res, 503, 'server_error', 'ERR_NO_ROUTE', 'no model is served');
  }
  if (route === '/tokenizer_info') {
    const { specials, vocabSize, maxPositions } = swarm.tokenizerInfo();
    return sendJson(res, 200, {
      model: ctx.modelIds[0],
      eos_token: specials.eos,
      bos_token: specials.bos,
      pad_token: specials.pad,
      ...(specials.chatTemplate === null ? {} : { chat_template: specials.chatTemplate }),
      vocab_size: vocabSize,
      model_max_length: maxPositions,
      add_special_tokens: false,
    });
  }
  const raw = await readJsonBody(req, res, ctx);
  if (raw === NO_BODY) return;
  if (route === '/tokenize') {
    const p = parseTokenizeBody(raw, ctx.modelIds);
    if ('status' in p) return sendApiError(res, p.status, 'invalid_request_error', p.code, p.message, p.param);
    const tokens = swarm.encode(p.prompt);
    return sendJson(res, 200, { count: tokens.length, max_model_len: swarm.tokenizerInfo().maxPositions, tokens });
  }
  const p = parseDetokenizeBody(raw, ctx.modelIds);
  if ('status' in p) return sendApiError(res, p.status, 'invalid_request_error', p.code, p.message, p.param);
  try {
    return sendJson(res, 200, { prompt: swarm.promptText(p.tokens, 'tokens') });
  } catch (e) {
    if (!(e instanceof GenerationError)) throw e;
    // An id the model does not have: the message names it and its place.
    return sendApiError(res, 400, 'invalid_request_error', 'invalid_request', e.message, e.param);
  }
}
