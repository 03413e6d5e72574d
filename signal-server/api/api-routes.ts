import type { IncomingMessage, ServerResponse } from 'node:http';
import { describeValue } from '../../shared/protocol/json-shape.js';
import { INTERNAL_ERROR_MESSAGE } from '../coordinator/generation-error.js';
import { sendJson } from '../http/static-files.js';
import type { Logger } from '../log.js';
import type { LineFields } from '../log-limiter.js';
import { type ApiContext, admitOrRefuse, handleOpenAiGeneration, sendApiError, sendMethodNotAllowed } from './completions.js';
import { answerPreflight, setCorsHeaders } from './cors.js';
import { unknownModelMessage } from './openai-params.js';
import { answerNotStored, handleResponses } from './responses.js';
import { handleTokenizerRoute, isTokenizerRoute, type TokenizerRoute } from './tokenizer-routes.js';

/** The API's routes as metric labels: a fixed set, so that nobody can grow the metrics without bound. */
export type ApiRoute =
  | '/v1/models'
  | '/v1/models/{id}'
  | '/v1/completions'
  | '/v1/chat/completions'
  | '/v1/responses'
  | '/v1/responses/{id}'
  | TokenizerRoute
  | 'other';

export interface ApiRoutesContext extends ApiContext {
  /** Unix seconds: the `created` of every served model. */
  readonly createdS: number;
  /** Counts one answered request (the metrics). */
  readonly countRequest: (route: ApiRoute, status: number) => void;
  readonly logger: Logger;
  /** Writes a line about a refused request, within its address's allowance of lines (LogLimiter). */
  /** Logs a refused (or failed) request, limited per client: the message, and the request's fields (`from` added). */
  readonly refusal: (req: IncomingMessage, line: string, fields: LineFields) => void;
}

const MODEL_PREFIX = '/v1/models/';
const RESPONSE_PREFIX = '/v1/responses/';

/** The route a path is, and the model id of /v1/models/{id} (URL-decoded; null when it does not decode). */
export function apiRouteOf(path: string): { route: ApiRoute; modelId: string | null } {
  if (
    path === '/v1/models' ||
    path === '/v1/completions' ||
    path === '/v1/chat/completions' ||
    path === '/v1/responses' ||
    isTokenizerRoute(path)
  )
    return { route: path, modelId: null };
  // A stored response's (and its input items', its cancel's): none is stored here.
  if (path.startsWith(RESPONSE_PREFIX) && path.length > RESPONSE_PREFIX.length) return { route: '/v1/responses/{id}', modelId: null };
  if (path.startsWith(MODEL_PREFIX) && path.length > MODEL_PREFIX.length) {
    try {
      return { route: '/v1/models/{id}', modelId: decodeURIComponent(path.slice(MODEL_PREFIX.length)) };
    } catch {
      return { route: '/v1/models/{id}', modelId: null };
    }
  }
  return { route: 'other', modelId: null };
}

/** OpenAI's model object. */
function modelObject(id: string, createdS: number) {
  return { id, object: 'model', created: createdS, owned_by: 'webswarm' };
}

/**
 * The OpenAI-compatible API under /v1 and vLLM's tokenizer routes at the root (tokenizer-routes.ts): CORS-open (its callers are other
 * sites and tools), keys and rate limits in front of every route.
 */
export function handleApi(req: IncomingMessage, res: ServerResponse, path: string, ctx: ApiRoutesContext): void {
  setCorsHeaders(res);
  if (req.method === 'OPTIONS') {
    answerPreflight(req, res);
    return;
  }
  const t0 = performance.now();
  const { route, modelId } = apiRouteOf(path);
  res.once('finish', () => {
    ctx.countRequest(route, res.statusCode);
    const ms = Math.round(performance.now() - t0);
    // The path as the client wrote it is cut short; a refusal's line counts against its address's lines (a 15 KB
    // path under /v1, 2 000 times, wrote 30 MB of log in 2.8 s before).
    const shown = describeValue(path, 200);
    // The same fields either way, so that a JSON log's reader finds every status in one field (before, a refusal's
    // line was a sentence with no fields).
    const fields = { method: req.method ?? '?', path: shown, status: res.statusCode, ms };
    if (res.statusCode >= 400) ctx.refusal(req, 'api request', fields);
    else ctx.logger.info(fields, 'api request');
  });
  // A route's own failure is answered (500, or the stream cut) and logged: it must not end the server's process.
  const failed = (e: unknown) => {
    ctx.log(`${route} failed: ${e instanceof Error ? e.message : String(e)}`);
    if (res.headersSent) res.destroy();
    else sendApiError(res, 500, 'server_error', 'ERR_INTERNAL', INTERNAL_ERROR_MESSAGE);
  };
  if (route === '/v1/completions' || route === '/v1/chat/completions') {
    handleOpenAiGeneration(req, res, route === '/v1/completions' ? 'completion' : 'chat', ctx).catch(failed);
    return;
  }
  if (route === '/v1/responses') {
    handleResponses(req, res, ctx).catch(failed);
    return;
  }
  if (route === '/v1/responses/{id}') {
    if (admitOrRefuse(req, res, ctx.access, true) === null) return;
    req.resume();
    answerNotStored(res);
    return;
  }
  if (isTokenizerRoute(route)) {
    handleTokenizerRoute(req, res, route, ctx).catch(failed);
    return;
  }
  const get = req.method === 'GET' || req.method === 'HEAD';
  if (route === '/v1/models' && get) {
    if (admitOrRefuse(req, res, ctx.access, true) === null) return;
    // OpenAI's model list, so that existing clients can discover what is served.
    sendJson(res, 200, { object: 'list', data: ctx.modelIds.map((id) => modelObject(id, ctx.createdS)) });
    return;
  }
  if (route === '/v1/models/{id}' && get) {
    if (admitOrRefuse(req, res, ctx.access, true) === null) return;
    if (modelId !== null && ctx.modelIds.includes(modelId)) {
      sendJson(res, 200, modelObject(modelId, ctx.createdS));
      return;
    }
    sendApiError(
      res,
      404,
      'invalid_request_error',
      'model_not_found',
      unknownModelMessage(modelId ?? path.slice(MODEL_PREFIX.length), ctx.modelIds),
      'model',
    );
    return;
  }
  // The path as the client wrote it, cut short: a 15 KB path came back whole in the message before.
  const shownPath = path.length > 200 ? `${path.slice(0, 200)}…` : path;
  // What is left of the known routes are the model listings, asked with another method than theirs.
  if (route !== 'other') sendMethodNotAllowed(res, ['GET', 'HEAD'], `${req.method} is not allowed on ${shownPath}`);
  else sendApiError(res, 404, 'invalid_request_error', 'not_found', `${shownPath} is not an endpoint of this server`);
}
