import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { WireErrorCode } from '../../shared/protocol/errors.js';
import { wireErrorOf } from '../coordinator/generation.js';
import { GenerationError } from '../coordinator/generation-error.js';
import { ISOLATION_HEADERS, sendJson } from '../http/static-files.js';
import type { AccessControl } from './access.js';
import type { ApiCompletion, ApiSwarm, ApiTokenUpdate } from './api-swarm.js';
import {
  appendCompletionLogprobs,
  type ChatLogprob,
  type CompletionLogprobs,
  CompletionLogprobsBuilder,
  chatLogprob,
  emptyCompletionLogprobs,
} from './logprob-shapes.js';
import { tokenLogprob } from './logprobs.js';
import { type BodyError, type ChatParams, type CompletionParams, parseChatBody, parseCompletionBody } from './openai-params.js';
import type { TokenTexts } from './token-text.js';

/** What the OpenAI-compatible endpoints need from the server. */
export interface ApiContext {
  readonly swarm: ApiSwarm | null;
  readonly modelIds: readonly string[];
  /** Each token's text and bytes, for log-probabilities (null: no model served). */
  readonly tokenTexts: TokenTexts | null;
  readonly access: AccessControl;
  readonly maxBodyBytes: number;
  /** How long a request's body may take to arrive (DEFAULT_BODY_TIMEOUT_MS). */
  readonly bodyTimeoutMs?: number;
  readonly log: (line: string) => void;
}

type ErrorType = 'invalid_request_error' | 'authentication_error' | 'rate_limit_error' | 'server_error';

/** An error in OpenAI's shape: { error: { message, type, param, code } }. */
export function sendApiError(
  res: ServerResponse,
  status: number,
  type: ErrorType,
  code: string,
  message: string,
  param: string | null = null,
): void {
  sendJson(res, status, { error: { message, type, param, code } });
}

/** Checks the key and the rate limit; on refusal answers 401 or 429 (with Retry-After) and returns null, else the identity. */
export function admitOrRefuse(req: IncomingMessage, res: ServerResponse, access: AccessControl): string | null {
  const admitted = access.admit(req);
  if (admitted.ok) return admitted.identity;
  if (admitted.retryAfterS !== undefined) res.setHeader('retry-after', String(admitted.retryAfterS));
  req.resume();
  sendApiError(
    res,
    admitted.status,
    admitted.status === 401 ? 'authentication_error' : 'rate_limit_error',
    admitted.code,
    admitted.message,
  );
  return null;
}

/**
 * How long a body may take to arrive: a client that sends its headers and
 * then a byte now and then (slowloris) held its request, and its place among
 * its concurrent ones, for Node's 300 s request timeout.
 */
export const DEFAULT_BODY_TIMEOUT_MS = 10_000;

class BodyTooLarge extends Error {}
class BodyTimeout extends Error {}

function readBody(req: IncomingMessage, limit: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      req.off('data', onData);
      reject(new BodyTimeout(`the body did not arrive within ${timeoutMs} ms`));
    }, timeoutMs);
    const fail = (e: Error) => {
      clearTimeout(timer);
      reject(e);
    };
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      req.resume();
      fail(new BodyTooLarge(`the body is ${declared} bytes; at most ${limit}`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.byteLength;
      if (size > limit) {
        // Stop keeping the body but let it drain, so that the 413 reaches the client.
        req.off('data', onData);
        req.resume();
        fail(new BodyTooLarge(`the body is over ${limit} bytes`));
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.on('end', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', fail);
  });
}

/** HTTP status of a generation failure: the client's fault 400, the swarm's state 503. */
export function statusOfGenerationError(code: WireErrorCode): number {
  if (code === 'ERR_BAD_REQUEST') return 400;
  if (
    code === 'ERR_NO_ROUTE' ||
    code === 'ERR_NO_QUORUM' ||
    code === 'ERR_STEP_TIMEOUT' ||
    code === 'ERR_SHUTTING_DOWN' ||
    code === 'ERR_BUSY'
  )
    return 503;
  return 500;
}

/** Seconds a client should wait before sending again after a 503: the swarm is busy or short of volunteers. */
export const RETRY_AFTER_S = 5;

/** The vote behind one verified token, as every chunk and response carries it (webswarm's extension). */
function voteOf(u: ApiTokenUpdate) {
  return {
    index: u.index,
    token: u.token,
    verified: u.verified,
    votes: u.votes,
    // The stages the server computed itself for this token (the fallback), not volunteers.
    server_stages: u.votes.filter((v) => v.server).map((v) => v.stage),
    step_ms: Math.round(u.stepMs * 100) / 100,
  };
}

/** The stages the server computed for any token of a completion (the fallback). */
function serverStagesOf(votes: readonly ReturnType<typeof voteOf>[]): number[] {
  return [...new Set(votes.flatMap((v) => v.server_stages))].sort((a, b) => a - b);
}

/** A chunk's or a choice's `logprobs`: chat's entries, completions' arrays, or null when not asked for (or no token). */
type ChunkLogprobs = { content: ChatLogprob[]; refusal: null } | CompletionLogprobs | null;

/** Server-sent events, with the status line held back until the first event so that early failures keep their HTTP status. */
class EventStream {
  private started = false;
  constructor(private readonly res: ServerResponse) {}
  send(data: unknown): void {
    if (!this.started) {
      this.started = true;
      this.res.writeHead(200, {
        ...ISOLATION_HEADERS,
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        'x-accel-buffering': 'no',
      });
    }
    this.res.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
  }
  get isStarted(): boolean {
    return this.started;
  }
}

/** POST /v1/completions and POST /v1/chat/completions through the swarm, streamed or not. */
export async function handleOpenAiGeneration(
  req: IncomingMessage,
  res: ServerResponse,
  kind: 'completion' | 'chat',
  ctx: ApiContext,
): Promise<void> {
  if (req.method !== 'POST') return sendApiError(res, 405, 'invalid_request_error', 'method_not_allowed', 'use POST');
  const identity = admitOrRefuse(req, res, ctx.access);
  if (identity === null) return;
  const slot = ctx.access.hold(identity);
  if (!slot.ok) {
    req.resume();
    res.setHeader('retry-after', String(slot.retryAfterS));
    return sendApiError(res, slot.status, 'rate_limit_error', slot.code, slot.message);
  }
  // Held from the body's first byte to the response's end, or the client's going away.
  res.once('close', slot.release);
  let text: string;
  try {
    text = await readBody(req, ctx.maxBodyBytes, ctx.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS);
  } catch (e) {
    res.setHeader('connection', 'close');
    if (e instanceof BodyTooLarge) return sendApiError(res, 413, 'invalid_request_error', 'body_too_large', e.message);
    if (e instanceof BodyTimeout) return sendApiError(res, 408, 'invalid_request_error', 'body_timeout', e.message);
    return sendApiError(res, 400, 'invalid_request_error', 'invalid_request', `the body could not be read: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return sendApiError(res, 400, 'invalid_request_error', 'invalid_json', 'the body is not valid JSON');
  }
  const p: CompletionParams | ChatParams | BodyError =
    kind === 'chat' ? parseChatBody(raw, ctx.modelIds) : parseCompletionBody(raw, ctx.modelIds);
  if ('status' in p) return sendApiError(res, p.status, 'invalid_request_error', p.code, p.message, p.param);
  const swarm = ctx.swarm;
  const texts = ctx.tokenTexts;
  if (swarm === null || texts === null) return sendApiError(res, 503, 'server_error', 'ERR_NO_ROUTE', 'no model is served');
  const modelId = ctx.modelIds[0] as string;
  let prompt: string;
  try {
    prompt = p.kind === 'chat' ? swarm.chatPrompt(p.messages) : p.prompt;
  } catch (e) {
    return sendApiError(res, 400, 'invalid_request_error', 'invalid_request', (e as Error).message, 'messages');
  }

  const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID()}`;
  const created = Math.floor(Date.now() / 1000);
  const object = kind === 'chat' ? (p.stream ? 'chat.completion.chunk' : 'chat.completion') : 'text_completion';
  const head = { id, object, created, model: modelId, ...(kind === 'chat' ? { system_fingerprint: null } : {}) };
  const choiceOf = (piece: string, finish: 'stop' | 'length' | null, first: boolean, logprobs: ChunkLogprobs) =>
    kind === 'chat'
      ? {
          index: 0,
          delta: first ? { role: 'assistant', content: piece } : finish !== null ? {} : { content: piece },
          logprobs,
          finish_reason: finish,
        }
      : { index: 0, text: piece, logprobs, finish_reason: finish };
  const usageOf = (c: ApiCompletion) => ({
    prompt_tokens: c.promptTokens.length,
    completion_tokens: c.tokens.length,
    total_tokens: c.promptTokens.length + c.tokens.length,
  });

  // A client that goes away cancels its generation, so that the swarm does not compute for nobody.
  const cancel = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) cancel.abort();
  });
  const events = p.stream ? new EventStream(res) : null;
  /** One chunk of the stream; the first one sent carries the assistant's role. */
  const sendChunk = (
    stream: EventStream,
    piece: string,
    finish: 'stop' | 'length' | null,
    extra: Record<string, unknown> = {},
    logprobs: ChunkLogprobs = null,
  ) =>
    stream.send({
      ...head,
      choices: [choiceOf(piece, finish, !stream.isStarted, logprobs)],
      ...(p.streamUsage ? { usage: null } : {}),
      ...extra,
    });
  const votes: ReturnType<typeof voteOf>[] = [];
  // Log-probabilities, when asked for: chat's entries, or completions' arrays (offsets count the prompt).
  const chatEntries: ChatLogprob[] = [];
  const completionArrays = emptyCompletionLogprobs();
  const offsets = new CompletionLogprobsBuilder(texts, prompt.length);
  /** This token's log-probabilities in the request's shape (null when none were asked for). */
  const logprobsOf = (u: ApiTokenUpdate): ChunkLogprobs => {
    if (p.logprobs === null) return null;
    const lp = tokenLogprob(u.logits, u.token, p.logprobs);
    if (kind === 'chat') {
      const entry = chatLogprob(lp, texts);
      chatEntries.push(entry);
      return { content: [entry], refusal: null };
    }
    const arrays = offsets.next(lp);
    appendCompletionLogprobs(completionArrays, arrays);
    return arrays;
  };
  const wholeLogprobs = (): ChunkLogprobs =>
    p.logprobs === null ? null : kind === 'chat' ? { content: chatEntries, refusal: null } : completionArrays;
  let sent = '';
  const t0 = performance.now();
  try {
    const c = await swarm.complete(
      {
        prompt,
        maxTokens: p.maxTokens,
        sampling: {
          temperature: p.temperature,
          topK: 0,
          topP: p.topP,
          seed: p.seed,
          logitBias: p.logitBias,
          frequencyPenalty: p.frequencyPenalty,
          presencePenalty: p.presencePenalty,
        },
        stop: p.stop,
        signal: cancel.signal,
        ...(ctx.access.limitsClients ? { client: identity } : {}),
      },
      (u) => {
        const v = voteOf(u);
        votes.push(v);
        const logprobs = logprobsOf(u);
        if (events === null) return;
        sendChunk(events, u.text, null, { webswarm: v }, logprobs);
        sent += u.text;
      },
    );
    ctx.log(
      `${kind} ${id}: ${c.tokens.length} tokens, ${c.finishReason}, ${(performance.now() - t0).toFixed(0)} ms${p.stream ? ', streamed' : ''}`,
    );
    if (events === null) {
      const choice =
        kind === 'chat'
          ? {
              index: 0,
              message: { role: 'assistant', content: c.text, refusal: null },
              logprobs: wholeLogprobs(),
              finish_reason: c.finishReason,
            }
          : { index: 0, text: c.text, logprobs: wholeLogprobs(), finish_reason: c.finishReason };
      sendJson(res, 200, {
        ...head,
        choices: [choice],
        usage: usageOf(c),
        // webswarm's extension: the token ids, the route and every token's vote.
        webswarm: {
          redundancy: c.redundancy,
          verified: c.verified,
          prompt_tokens: c.promptTokens,
          tokens: c.tokens,
          route: c.route,
          server_stages: serverStagesOf(votes),
          votes,
        },
      });
      return;
    }
    // What was held back (a possible start of a stop sequence that was not one) goes out before the end.
    if (c.text.length > sent.length) sendChunk(events, c.text.slice(sent.length), null);
    sendChunk(events, '', c.finishReason, {
      webswarm: { redundancy: c.redundancy, verified: c.verified, route: c.route, server_stages: serverStagesOf(votes) },
    });
    if (p.streamUsage) events.send({ ...head, choices: [], usage: usageOf(c) });
    events.send('[DONE]');
    res.end();
  } catch (e) {
    const { code, message } = wireErrorOf(e);
    if (code === 'ERR_CANCELLED') {
      ctx.log(`${kind} ${id}: cancelled by the client after ${votes.length} tokens`);
      res.destroy();
      return;
    }
    ctx.log(`${kind} ${id}: failed with ${code}: ${(e as Error).message}`);
    const status = statusOfGenerationError(code);
    if (status === 503 && !res.headersSent) res.setHeader('retry-after', String(RETRY_AFTER_S));
    const type = status === 400 ? 'invalid_request_error' : 'server_error';
    if (events?.isStarted === true) {
      // The status line has gone out: the error travels as an event, as OpenAI's streams carry one.
      events.send({ error: { message, type, param: null, code } });
      res.end();
    } else sendApiError(res, status, type, code, message, e instanceof GenerationError ? e.param : null);
  }
}
