/**
 * vLLM's tokenizer endpoints at the server's root: POST /tokenize, POST /detokenize and GET /tokenizer_info.
 * Evaluation tools use them to count a prompt's tokens as the server does; lm-evaluation-harness's
 * `local-completions` looks for them at its base URL and, when it finds them, needs no tokenizer of its own. The
 * ids are the ones /v1/completions runs for the same text, and for a chat (`messages`, vLLM's chat form) the ones
 * /v1/chat/completions runs: no special tokens are added, whatever `add_special_tokens` says (the completions add
 * none either). Keys as on /v1; the rate limit is their own (LIGHT_RATE_FACTOR times RATE_LIMIT_PER_MINUTE), so
 * that tokenizing does not spend the generations' allowance.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ChatMessage } from '../../shared/model/tokenizer.js';
import { MAX_PROMPT_CHARS } from '../../shared/protocol/validate.js';
import { GenerationError } from '../coordinator/generation-error.js';
import { sendJson } from '../http/static-files.js';
import {
  type ApiContext,
  admitOrRefuse,
  NO_BODY,
  readJsonBody,
  refuseOverAllowance,
  sendApiError,
  sendMethodNotAllowed,
} from './completions.js';
import {
  type BodyError,
  bad,
  isObject,
  MAX_PROMPT_IDS,
  modelRefused,
  NOT_AN_OBJECT,
  parseMessages,
  tokenIdsProblem,
} from './openai-params.js';

export const TOKENIZER_ROUTES = ['/tokenize', '/detokenize', '/tokenizer_info'] as const;
export type TokenizerRoute = (typeof TOKENIZER_ROUTES)[number];

export function isTokenizerRoute(path: string): path is TokenizerRoute {
  return (TOKENIZER_ROUTES as readonly string[]).includes(path);
}

/** What POST /tokenize tokenizes: a text, or a chat to render by the model's chat template. */
export type TokenizeInput =
  | { readonly prompt: string }
  | { readonly messages: readonly ChatMessage[]; readonly addGenerationPrompt: boolean };

/** vLLM's chat-form fields that would render the chat otherwise than /v1/chat/completions does: refused by name. */
const CHAT_OVERRIDES: Readonly<Record<string, string>> = {
  tools: 'the chat template is rendered without tools, as /v1/chat/completions renders it (it takes none)',
  chat_template: "the model's own chat template is the one rendered, the one /v1/chat/completions runs",
  chat_template_kwargs: "the model's chat template is rendered with the messages only, as /v1/chat/completions renders it",
  mm_processor_kwargs: 'the model reads text only',
};

const given = (v: unknown) => v !== undefined && v !== null;
/** A field of CHAT_OVERRIDES given a value that changes the rendering (no keyword arguments at all changes nothing). */
const overrides = (raw: Record<string, unknown>, param: string) =>
  given(raw[param]) && !(param === 'chat_template_kwargs' && isObject(raw[param]) && Object.keys(raw[param]).length === 0);

/**
 * POST /tokenize's body, vLLM's two forms: `prompt` (text, possibly empty), or `messages` (a chat, as
 * /v1/chat/completions takes it) with optional `add_generation_prompt` (default true) and `continue_final_message`
 * (false only); optional `model`, `add_special_tokens` and `return_token_strs` (false only) in both.
 */
export function parseTokenizeBody(raw: unknown, modelIds: readonly string[]): TokenizeInput | BodyError {
  if (!isObject(raw)) return NOT_AN_OBJECT;
  const model = modelRefused(raw, modelIds);
  if (model !== null) return model;
  if (raw.add_special_tokens !== undefined && typeof raw.add_special_tokens !== 'boolean')
    return bad('add_special_tokens', 'add_special_tokens must be a boolean');
  const strs = falseOnly(raw, 'return_token_strs', 'the tokens are given as ids only (POST /detokenize gives their text)');
  if (strs !== null) return strs;
  if (given(raw.messages)) {
    if (given(raw.prompt)) return bad('messages', 'send either prompt (a text) or messages (a chat), not both');
    return parseTokenizeChat(raw);
  }
  if (typeof raw.prompt !== 'string' || raw.prompt.length > MAX_PROMPT_CHARS)
    return bad('prompt', `prompt must be a string of at most ${MAX_PROMPT_CHARS} characters (or send messages, a chat)`);
  return { prompt: raw.prompt };
}

/** vLLM's chat form of POST /tokenize: the messages as /v1/chat/completions checks them, and the rendering's options. */
function parseTokenizeChat(raw: Record<string, unknown>): TokenizeInput | BodyError {
  const messages = parseMessages(raw.messages);
  if (!Array.isArray(messages)) return messages;
  for (const [param, why] of Object.entries(CHAT_OVERRIDES))
    if (overrides(raw, param)) return { status: 400, code: 'unsupported_parameter', param, message: `${param} is not supported: ${why}` };
  const addGenerationPrompt = raw.add_generation_prompt ?? true;
  if (typeof addGenerationPrompt !== 'boolean') return bad('add_generation_prompt', 'add_generation_prompt must be a boolean');
  const open = falseOnly(
    raw,
    'continue_final_message',
    '/v1/chat/completions never leaves the last message open, so neither does this (render such a chat with the template GET /tokenizer_info gives, and send its text as prompt)',
  );
  if (open !== null) return open;
  return { messages, addGenerationPrompt };
}

/** A boolean option of vLLM's of which only false (the default) is honoured here: null, or why not. */
function falseOnly(raw: Record<string, unknown>, param: string, why: string): BodyError | null {
  const v = raw[param] ?? false;
  if (typeof v !== 'boolean') return bad(param, `${param} must be a boolean`);
  return v ? { status: 400, code: 'unsupported_value', param, message: `${param} must be false: ${why}` } : null;
}

/** POST /detokenize's body: `tokens` (1..MAX_PROMPT_IDS ids), optional `model`. */
export function parseDetokenizeBody(raw: unknown, modelIds: readonly string[]): { tokens: number[] } | BodyError {
  if (!isObject(raw)) return NOT_AN_OBJECT;
  const model = modelRefused(raw, modelIds);
  if (model !== null) return model;
  const problem = tokenIdsProblem(raw.tokens, 'tokens', MAX_PROMPT_IDS);
  if (problem !== null) return bad('tokens', problem);
  return { tokens: [...(raw.tokens as number[])] };
}

/**
 * A call counts against the tokenizer routes' allowance as one, and one more for each TOKENIZER_CHARS_PER_CALL
 * characters (or token ids) it carries; a chat's characters twice, and TOKENIZER_CHARS_PER_MESSAGE more a message
 * (its template is rendered, then tokenized:
 * 83 ms against 40 for 8 000 characters of text on this 2-core machine). Before, any call counted one, and one
 * address's 20 calls a second of 8 000 characters each held the server's event loop (a red-team pass: /healthz
 * answered in 0.7 s instead of 3 ms, an 8-token completion took 6 s).
 */
export const TOKENIZER_CHARS_PER_CALL = 1000;

/**
 * What a chat's message weighs beyond its characters, in characters: its template renders each message whatever it
 * holds: 0.205 ms a message on austen-2m's, 105 ms for 512 empty ones, where 1 000 characters of text tokenize in
 * 0.37 ms (bench/stage-files.ts), so a message costs what about 550 characters do. Before, 512 empty messages
 * counted as 5 calls and held the event loop about 57 times longer per call than text does (a red-team find).
 */
export const TOKENIZER_CHARS_PER_MESSAGE = 512;

/** The calls one tokenizer call counts as: 1, and one more for each TOKENIZER_CHARS_PER_CALL of its size. */
export function tokenizerCalls(input: TokenizeInput | { readonly tokens: readonly number[] }): number {
  const size =
    'tokens' in input
      ? input.tokens.length
      : 'prompt' in input
        ? input.prompt.length
        : input.messages.reduce((a, m) => a + 2 * (m.role.length + m.content.length) + TOKENIZER_CHARS_PER_MESSAGE, 0);
  return 1 + Math.floor(size / TOKENIZER_CHARS_PER_CALL);
}

/** The allowance a large call takes beyond the one its request took already: null when it fits, else sent a 429. */
function chargeSize(res: ServerResponse, ctx: ApiContext, identity: string, calls: number, param: string): null | 'refused' {
  if (calls <= 1) return null;
  const more = ctx.access.take(identity, true, calls - 1);
  if (more.ok) return null;
  refuseOverAllowance(
    res,
    more,
    `this call counts as ${calls} tokenizer calls (one a ${TOKENIZER_CHARS_PER_CALL} characters or token ids)`,
    param,
  );
  return 'refused';
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
    return sendMethodNotAllowed(res, method === 'GET' ? ['GET', 'HEAD'] : [method], `use ${method} on ${route}`);
  }
  // Their own allowance, LIGHT_RATE_FACTOR times the API's: a tool tokenizes each request's parts apart.
  const identity = admitOrRefuse(req, res, ctx.access, true);
  if (identity === null) return;
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
    if (chargeSize(res, ctx, identity, tokenizerCalls(p), 'prompt' in p ? 'prompt' : 'messages') !== null) return;
    let text: string;
    try {
      // A chat is rendered as /v1/chat/completions renders it, a template error refused as it refuses one.
      text = 'prompt' in p ? p.prompt : swarm.chatPrompt(p.messages, p.addGenerationPrompt);
    } catch (e) {
      return sendApiError(res, 400, 'invalid_request_error', 'invalid_request', (e as Error).message, 'messages');
    }
    const tokens = swarm.encode(text);
    return sendJson(res, 200, { count: tokens.length, max_model_len: swarm.tokenizerInfo().maxPositions, tokens });
  }
  const p = parseDetokenizeBody(raw, ctx.modelIds);
  if ('status' in p) return sendApiError(res, p.status, 'invalid_request_error', p.code, p.message, p.param);
  if (chargeSize(res, ctx, identity, tokenizerCalls(p), 'tokens') !== null) return;
  try {
    return sendJson(res, 200, { prompt: swarm.promptText(p.tokens, 'tokens') });
  } catch (e) {
    if (!(e instanceof GenerationError)) throw e;
    // An id the model does not have: the message names it and its place.
    return sendApiError(res, 400, 'invalid_request_error', 'invalid_request', e.message, e.param);
  }
}
