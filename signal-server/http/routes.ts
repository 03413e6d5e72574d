import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import type { StageManifest } from '../../shared/model/manifest.js';
import { stageDownloadBytes, type TensorIndex } from '../../shared/model/tensor-index.js';
import type { ModelListing, SwarmListing } from '../../shared/protocol/http.js';
import { describeValue } from '../../shared/protocol/json-shape.js';
import type { AccessControl } from '../api/access.js';
import { type ApiRoutesContext, handleApi } from '../api/api-routes.js';
import type { ApiSwarm } from '../api/api-swarm.js';
import { answerPreflight, setCorsHeaders } from '../api/cors.js';
import type { TokenTexts } from '../api/token-text.js';
import { isTokenizerRoute } from '../api/tokenizer-routes.js';
import type { Logger } from '../log.js';
import { type LineFields, LogLimiter, REFUSAL_LOG_LIMIT } from '../log-limiter.js';
import type { SwarmMetrics } from '../metrics.js';
import { modelFolderFiles, readTensorIndex, sourceFolderOf, TENSOR_INDEX_FILE } from '../models/model-folder.js';
import { volunteersShown } from '../volunteers-shown.js';
import { MODEL_FOLDER_CORS, safeJoin, sendFile, sendFileRanged, sendJson, sendPreflight, serveWebApp } from './static-files.js';

export type { ModelListing } from '../../shared/protocol/http.js';

/** Everything the HTTP routes serve from; server.ts builds it. */
export interface RoutesContext {
  /** The coordinator of the first served model (null when none is served). */
  readonly swarm: ApiSwarm | null;
  readonly listings: readonly ModelListing[];
  readonly access: AccessControl;
  readonly metrics: SwarmMetrics;
  /** The built web app (vite build's outDir), or null to serve no pages. */
  readonly webRoot: string | null;
  /** URL path → file, for the model files that manifests name (modelFilesOf). */
  readonly modelFiles: ReadonlyMap<string, string>;
  /** URL path → file, for the Hugging Face model folders, served with range requests and CORS (folderFilesOf). */
  readonly folderFiles?: ReadonlyMap<string, string>;
  /** URL path → tensor index (tensors.json beside each manifest), with where volunteers fetch the weights (tensorIndexesOf). */
  readonly tensorIndexes?: ReadonlyMap<string, TensorIndex>;
  /** Each token's text and bytes of the first served model (null when none is served). */
  readonly tokenTexts: TokenTexts | null;
  readonly maxBodyBytes: number;
  /** How long an API request's body may take to arrive (absent: DEFAULT_BODY_TIMEOUT_MS). */
  readonly bodyTimeoutMs?: number;
  /** How far a streamed answer's reader may fall behind (absent: DEFAULT_STREAM_BEHIND_BYTES). */
  readonly streamBehindBytes?: number;
  /** Unix seconds when the server started: the `created` of the served models. */
  readonly startedS: number;
  readonly logger: Logger;
}

/**
 * What browsers read of a stage directory: the manifest and the tokenizer it
 * names (URL path → file). Not the stage files: volunteers build their stage
 * from the model folder's tensors (folderFilesOf, tensorIndexesOf).
 */
export function modelFilesOf(
  models: readonly { readonly manifest: StageManifest; readonly dir: string }[],
  listings: readonly { readonly baseUrl: string }[],
): Map<string, string> {
  const files = new Map<string, string>();
  for (const [i, m] of models.entries()) {
    const base = listings[i]?.baseUrl;
    if (base === undefined) continue;
    const names = ['manifest.json', m.manifest.tokenizer.file];
    if (m.manifest.tokenizerConfig !== null) names.push(m.manifest.tokenizerConfig.file);
    for (const name of names) {
      const path = safeJoin(m.dir, name);
      if (path !== null) files.set(`${base}/${name}`, path);
    }
  }
  return files;
}

/** What routes need of a served model: its stage directory and, for volunteers that fetch their layers, its model folder. */
export interface RoutedModel {
  readonly manifest: StageManifest;
  readonly dir: string;
  /** The Hugging Face model folder, served under /models/<id>/files/ (absent: the one the stages were built from, if it is still there). */
  readonly modelDir?: string;
  /** Where volunteers fetch the model folder from instead (a mirror with range requests and CORS). */
  readonly weightsUrl?: string;
}

/** Where a model's folder is served on this server. */
export function folderUrlOf(modelId: string): string {
  return `/models/${encodeURIComponent(modelId)}/files/`;
}

/** The model folders' files that volunteers read, with range requests: URL path → file. */
export function folderFilesOf(models: readonly RoutedModel[]): Map<string, string> {
  const files = new Map<string, string>();
  for (const m of models) {
    const folder = m.modelDir ?? sourceFolderOf(m.dir);
    if (folder === null) continue;
    for (const name of modelFolderFiles(folder)) {
      const path = safeJoin(folder, name);
      if (path !== null) files.set(`${folderUrlOf(m.manifest.modelId)}${name}`, path);
    }
  }
  return files;
}

/** A stage set's entry in GET /api/models: `index` is its tensor index (what each stage's volunteers download). */
export function listingOf(manifest: StageManifest, baseUrl: string, index: TensorIndex): ModelListing {
  return {
    modelId: manifest.modelId,
    stages: manifest.stages.length,
    baseUrl,
    stageBytes: stageDownloadBytes(manifest.model, manifest.stages, index),
  };
}

/** Each stage set's tensor index (read from its directory), telling volunteers where the weights are: URL path → index. */
export function tensorIndexesOf(
  models: readonly RoutedModel[],
  listings: readonly { readonly baseUrl: string }[],
): Map<string, TensorIndex> {
  const out = new Map<string, TensorIndex>();
  for (const [i, m] of models.entries()) {
    const base = listings[i]?.baseUrl;
    if (base === undefined) continue;
    const weightsUrl = m.weightsUrl ?? ((m.modelDir ?? sourceFolderOf(m.dir)) === null ? null : folderUrlOf(m.manifest.modelId));
    out.set(`${base}/${TENSOR_INDEX_FILE}`, { ...readTensorIndex(m.dir), weightsUrl });
  }
  return out;
}

/** The served OpenAI paths without their /v1 (a client's base URL set to the origin alone asks for these). */
const OPENAI_PATHS = new Set(['/chat/completions', '/completions', '/models', '/responses']);

/** The server's request handler: the API, /metrics, the status routes, model files and the web app. */
export function createRequestHandler(ctx: RoutesContext): (req: IncomingMessage, res: ServerResponse) => void {
  const log = (line: string, fields?: LineFields) => (fields === undefined ? ctx.logger.info(line) : ctx.logger.info(fields, line));
  // A client's paths are its own to choose: their lines are limited per address and cut short (a 15 KB path a
  // thousand times a second wrote 15 MB of log a second before; under /v1 too, until a red-team pass found it).
  const refusals = new LogLimiter(REFUSAL_LOG_LIMIT, log);
  // Keyed by the client as the rate limits know it (behind a trusted proxy, its X-Forwarded-For): keyed by the socket's
  // address, one client's refusals behind a proxy used up every client's lines (a red-team find).
  // The line names the client as the limits do (an operator reads who guesses keys or hits a limit there; before, a
  // refused request's line named nobody, though the docs said refusals name their address).
  const refusal = (req: IncomingMessage, line: string, fields: LineFields) =>
    refusals.line(ctx.access.clientOf(req), line, { ...fields, from: ctx.access.addressOf(req) });
  /** A request's fields in a refusal's line: its method and path (cut short: the client's to choose), and the status. */
  const requestFields = (req: IncomingMessage, path: string, status: number) => ({
    method: req.method ?? '?',
    path: describeValue(path, 200),
    status,
  });
  const api: ApiRoutesContext = {
    swarm: ctx.swarm,
    modelIds: ctx.listings.map((m) => m.modelId),
    tokenTexts: ctx.tokenTexts,
    access: ctx.access,
    maxBodyBytes: ctx.maxBodyBytes,
    ...(ctx.bodyTimeoutMs === undefined ? {} : { bodyTimeoutMs: ctx.bodyTimeoutMs }),
    ...(ctx.streamBehindBytes === undefined ? {} : { streamBehindBytes: ctx.streamBehindBytes }),
    log,
    createdS: ctx.startedS,
    countRequest: (route, status) => ctx.metrics.countRequest(route, status),
    logger: ctx.logger,
    refusal,
  };
  const notFound = (req: IncomingMessage, res: ServerResponse, path: string, message: string) => {
    refusal(req, 'http request', requestFields(req, path, 404));
    sendJson(res, 404, { error: { code: 'ERR_NOT_FOUND', message: message.length > 300 ? `${message.slice(0, 300)}…` : message } });
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    let url: URL;
    try {
      // The target is a path: "//v1/…" as a relative URL would name a host ("v1") and drop a part of the path.
      const target = req.url ?? '/';
      url = new URL(target.startsWith('/') ? `http://localhost${target}` : target, 'http://localhost');
    } catch {
      refusal(req, 'http request', { ...requestFields(req, req.url ?? '', 400), error: 'not a URL path' });
      sendJson(res, 400, { error: { code: 'ERR_BAD_REQUEST', message: 'the request target is not a URL path' } });
      return;
    }
    const path = url.pathname;
    // /v1 itself too: an OpenAI-shaped 404 (a client's base URL with the path cut off), as under it.
    if (path === '/v1' || path.startsWith('/v1/') || isTokenizerRoute(path)) {
      handleApi(req, res, path, api);
      return;
    }
    if (path === '/metrics' && (req.method === 'GET' || req.method === 'HEAD')) {
      ctx.metrics.registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': ctx.metrics.registry.contentType, 'cache-control': 'no-cache' });
          res.end(text);
        },
        (e: unknown) => sendJson(res, 500, { error: { code: 'ERR_INTERNAL', message: `metrics failed: ${(e as Error).message}` } }),
      );
      return;
    }
    if (path === '/api/swarm') {
      const apiKeyRequired = ctx.access.requiresKey;
      const body: SwarmListing =
        ctx.swarm === null
          ? { volunteers: 0, replicasPerStage: [], routablePerStage: [], redundancy: 0, list: [], apiKeyRequired, fallback: 'off' }
          : (() => {
              // At most DASHBOARD_REPLICAS_SHOWN a stage: an anonymous GET must not cost what the swarm's size is.
              const status = ctx.swarm.status();
              return {
                ...status,
                routablePerStage: ctx.swarm.routablePerStage(),
                list: volunteersShown(ctx.swarm.volunteers(), status.replicasPerStage.length).shown,
                apiKeyRequired,
              };
            })();
      sendJson(res, 200, body);
      return;
    }
    if (path === '/api/status' && (req.method === 'GET' || req.method === 'HEAD')) {
      // A public status page reads it from anywhere.
      res.setHeader('access-control-allow-origin', '*');
      if (ctx.swarm === null) sendJson(res, 503, { error: { code: 'ERR_NO_ROUTE', message: 'no model is served' } });
      else sendJson(res, 200, ctx.swarm.serviceStatus());
      return;
    }
    // An OpenAI client whose base URL lacks /v1 asks for /chat/completions: told where the API is, in OpenAI's shape.
    if (OPENAI_PATHS.has(path)) {
      setCorsHeaders(res);
      // A browser asks first (its client sends an Authorization header): refused there, the page would see a bare
      // network error rather than the 404 below that says where the API is.
      if (req.method === 'OPTIONS') {
        answerPreflight(req, res);
        return;
      }
      sendJson(res, 404, {
        error: {
          message: `the OpenAI-compatible API is under /v1: ${path} is /v1${path} (set the client's base URL to this server's origin + /v1)`,
          type: 'invalid_request_error',
          param: null,
          code: 'not_found',
        },
      });
      return;
    }
    if (req.method === 'OPTIONS' && ctx.folderFiles?.has(path) === true) {
      sendPreflight(res);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendJson(res, 405, { error: { code: 'ERR_METHOD', message: `${req.method} is not allowed on ${path}` } });
      return;
    }
    if (path === '/healthz') {
      sendJson(res, 200, { status: 'ok', models: ctx.listings.length });
      return;
    }
    if (path === '/api/models') {
      const body: readonly ModelListing[] = ctx.listings;
      sendJson(res, 200, body);
      return;
    }
    if (path.startsWith('/models/')) {
      const index = ctx.tensorIndexes?.get(path);
      if (index !== undefined) {
        res.setHeader('cache-control', 'no-cache');
        sendJson(res, 200, index);
        return;
      }
      const folderFile = ctx.folderFiles?.get(path);
      // A model folder's files are named by the checkpoint, not by content: revalidated, never kept stale.
      if (folderFile !== undefined && sendFileRanged(req, res, folderFile, 'no-cache', MODEL_FOLDER_CORS)) return;
      const file = ctx.modelFiles.get(path);
      // The tokenizer is named with its sha256 by the manifest: safe to cache a while; the manifest is not.
      if (file !== undefined && sendFile(res, file, path.endsWith('/manifest.json') ? 'no-cache' : 'public, max-age=3600')) return;
      notFound(req, res, path, `${path} is not a served model file`);
      return;
    }
    // embed.js is loaded by other sites' pages: it must be loadable cross-origin.
    if (path === '/embed.js' && ctx.webRoot !== null) {
      if (sendFile(res, join(ctx.webRoot, 'embed.js'), 'no-cache', { 'cross-origin-resource-policy': 'cross-origin' })) return;
    }
    if (ctx.webRoot !== null && serveWebApp(res, ctx.webRoot, path)) return;
    notFound(req, res, path, `${path} not found`);
  };

  return (req, res) => {
    try {
      handle(req, res);
    } catch (e) {
      refusal(req, 'http request failed', { ...requestFields(req, req.url ?? '', 500), error: (e as Error).message });
      if (!res.headersSent) sendJson(res, 500, { error: { code: 'ERR_INTERNAL', message: 'internal error' } });
      else res.destroy();
    }
  };
}
