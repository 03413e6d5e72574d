import { randomUUID } from 'node:crypto';
import { defaultMaxListeners, setMaxListeners } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { WireErrorCode } from '../../shared/protocol/errors.js';
import { jsonShapeProblem } from '../../shared/protocol/json-shape.js';
import { wireErrorOf } from '../coordinator/generation.js';
import { checkPromptFits, GenerationError } from '../coordinator/generation-error.js';
import { sendJsonInPieces } from '../http/json-pieces.js';
import { sendJson } from '../http/static-files.js';
import type { AccessControl, AccessDecision } from './access.js';
import type { ApiCompletion, ApiSwarm } from './api-swarm.js';
import { ChoiceState, type ChunkLogprobs, serverStagesOf } from './choice-state.js';
import { EventStream } from './event-stream.js';
import { codePoints } from './logprob-shapes.js';
import { type BodyError, type ChatParams, type CompletionParams, parseChatBody, parseCompletionBody, samplingOf } from './openai-params.js';
import type { TokenTexts } from './token-text.js';
import { type Prompt, type PromptDone, wholeResponse } from './whole-response.js';

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
  /** How far a streamed answer's reader may fall behind (DEFAULT_STREAM_BEHIND_BYTES). */
  readonly streamBehindBytes?: number;
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

/** A 405 with the methods the route takes in `Allow` (RFC 9110 §15.5.6 asks for it), in OpenAI's error shape. */
export function sendMethodNotAllowed(res: ServerResponse, allow: readonly string[], message: string): void {
  res.setHeader('allow', allow.join(', '));
  sendApiError(res, 405, 'invalid_request_error', 'method_not_allowed', message);
}

/** Checks the key and the rate limit (the light routes' own, for `light`: tokenizer, listings); on refusal answers 401 or 429 (with Retry-After) and returns null, else the identity. */
export function admitOrRefuse(req: IncomingMessage, res: ServerResponse, access: AccessControl, light = false): string | null {
  const admitted = access.admit(req, light);
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

/**
 * Bytes of a streamed answer waiting in the server for its reader, past which the generation stops with
 * ERR_SLOW_READER: the swarm computes no faster than its slowest reader reads, and the server holds no more than this
 * for one (a reader at 64 KB/s of a 27.8 MB batch had left about 23 MB waiting).
 */
export const DEFAULT_STREAM_BEHIND_BYTES = 8 * 1024 * 1024;

class BodyTooLarge extends Error {}
class BodyTimeout extends Error {}
class BodyNotUtf8 extends Error {}

/** JSON text is UTF-8 (RFC 8259): a byte sequence that is not is refused, never replaced by U+FFFD and read. */
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

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
      // Before, bytes that are no UTF-8 were read as U+FFFD: the model answered a prompt the client never sent.
      try {
        resolve(UTF8.decode(Buffer.concat(chunks)));
      } catch {
        reject(new BodyNotUtf8('the body is not valid UTF-8 (JSON text is UTF-8)'));
      }
    });
    req.on('error', fail);
  });
}

/** Deepest nesting a request body may have (chat content parts are four levels deep). */
export const MAX_BODY_DEPTH = 32;

/** What readJsonBody gives when it has answered the request with an error itself. */
export const NO_BODY: unique symbol = Symbol('no body');

/**
 * A request's JSON body, read within the body limit and timeout; a body too large, too slow, unreadable or not
 * JSON is answered here (413, 408, 400) and NO_BODY returned.
 */
export async function readJsonBody(
  req: IncomingMessage,
  res: ServerResponse,
  ctx: Pick<ApiContext, 'maxBodyBytes' | 'bodyTimeoutMs'>,
): Promise<unknown> {
  // A compressed body is not read as JSON text: said by name (before, a gzip body was "not valid JSON").
  const encoding = req.headers['content-encoding']?.trim().toLowerCase();
  if (encoding !== undefined && encoding !== '' && encoding !== 'identity') {
    req.resume();
    sendApiError(
      res,
      415,
      'invalid_request_error',
      'unsupported_content_encoding',
      `Content-Encoding ${JSON.stringify(encoding.slice(0, 40))} is not taken: send the JSON body uncompressed`,
    );
    return NO_BODY;
  }
  let text: string;
  try {
    text = await readBody(req, ctx.maxBodyBytes, ctx.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS);
  } catch (e) {
    res.setHeader('connection', 'close');
    if (e instanceof BodyTooLarge) sendApiError(res, 413, 'invalid_request_error', 'body_too_large', e.message);
    else if (e instanceof BodyTimeout) sendApiError(res, 408, 'invalid_request_error', 'body_timeout', e.message);
    else if (e instanceof BodyNotUtf8) sendApiError(res, 400, 'invalid_request_error', 'invalid_json', e.message);
    else sendApiError(res, 400, 'invalid_request_error', 'invalid_request', `the body could not be read: ${(e as Error).message}`);
    return NO_BODY;
  }
  let body: unknown;
  try {
    body = JSON.parse(text) as unknown;
  } catch {
    sendApiError(res, 400, 'invalid_request_error', 'invalid_json', 'the body is not valid JSON');
    return NO_BODY;
  }
  // No request of the API nests deeper than a few levels; one nested thousands deep would overflow whatever walks it.
  const shape = jsonShapeProblem(body, { maxDepth: MAX_BODY_DEPTH, maxBytes: Number.POSITIVE_INFINITY, finiteOnly: false });
  if (shape !== null) {
    sendApiError(res, 400, 'invalid_request_error', 'invalid_request', `the body ${shape}`);
    return NO_BODY;
  }
  return body;
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

/**
 * How a generation's failure is answered: its HTTP status, OpenAI's error type and code, the field at fault and the
 * message, in the endpoint's words (`fields`: what it calls its prompt and its cap on tokens; the coordinator says
 * "prompt" and "max_tokens").
 */
export function failureOf(e: unknown, code: WireErrorCode, message: string, fields: { readonly prompt: string; readonly max: string }) {
  const status = statusOfGenerationError(code);
  const type: ErrorType = status === 400 ? 'invalid_request_error' : 'server_error';
  // A bad request found by the coordinator (a logit_bias id past the vocabulary) has the code of every other bad
  // body, so a client sees one code for one kind of mistake; one OpenAI names (a prompt too long), OpenAI's code.
  const apiCode = (e instanceof GenerationError ? e.apiCode : null) ?? (status === 400 ? 'invalid_request' : code);
  // The field at fault, streamed or not (a batch's prompt past the positions is found once the stream has begun).
  const given = e instanceof GenerationError ? e.param : null;
  const worded = message.replace(/^prompt (\(\d+ tokens\)) (\+ max_tokens )?/, (_, tokens: string, cap?: string) =>
    cap === undefined ? `${fields.prompt} ${tokens} ` : `${fields.prompt} ${tokens} + ${fields.max} `,
  );
  return { status, type, apiCode, param: given === 'prompt' ? fields.prompt : given, message: worded };
}

/** A prompt that ends on a whole character (text, or ids that finish their last one). */
const WHOLE = { ids: 0, bytes: [] } as const;

/**
 * The request's prompts (a chat's one conversation); throws on a template error or an id the model does not have,
 * and, in a batch, on a prompt too long for the model's positions: each is found before any prompt runs, named by
 * its place (a prompt found too long when its lane starts would come as an error event after others streamed).
 */
function preparePrompts(p: CompletionParams | ChatParams, swarm: ApiSwarm, texts: TokenTexts): Prompt[] {
  if (p.kind === 'chat') return [{ index: 0, text: swarm.chatPrompt(p.messages), unfinished: WHOLE }];
  const prompts = p.prompts.map((q, index): Prompt => {
    if ('text' in q) return { index, text: q.text, unfinished: WHOLE };
    // Each id checked before any prompt runs, named by its prompt in a batch.
    const text = swarm.promptText(q.ids, p.prompts.length === 1 ? 'prompt' : `prompt[${index}]`);
    // A character it leaves unfinished is the completion's text (its first tokens may finish it): echoed text
    // and offsets then read as the decoding of every id, not as two U+FFFD where the prompt ends.
    const ending = texts.unfinished(q.ids);
    if (ending.ids > 0 && text.endsWith('\uFFFD')) return { index, text: text.slice(0, -1), ids: q.ids, unfinished: ending };
    return { index, text, ids: q.ids, unfinished: WHOLE };
  });
  if (prompts.length > 1) {
    const { maxPositions } = swarm.tokenizerInfo();
    for (const q of prompts) {
      try {
        checkPromptFits(q.ids?.length ?? swarm.encode(q.text).length, p.maxTokens, maxPositions);
      } catch (e) {
        throw namedInBatch(e, q.index);
      }
    }
  }
  return prompts;
}

/** A batch's prompt the coordinator refused (too long for the model's positions), named by its place. */
function namedInBatch(e: unknown, index: number): unknown {
  if (!(e instanceof GenerationError) || e.param !== 'prompt') return e;
  return new GenerationError(e.code, `prompt[${index}]: ${e.message}`, e.param, e.apiCode);
}

/** A lane of a request: how many generations it runs at once, and the releases of those it holds beyond the request's own. */
interface Lane {
  readonly width: number;
  readonly spare: (() => void)[];
}

/**
 * The lanes a request runs its prompts through, and how many of a prompt's `candidates` generations (n choices, or
 * best_of candidates) a lane runs at once: its width, the client's concurrent generations it holds (the request
 * holds one already). The first lane takes as many as there is room for now, up to `candidates`, so a request never
 * waits for its own choices: the rest take turns (before, n over what was left was refused, and an n over
 * API_MAX_CONCURRENT could never be served). Another lane is taken, up to one a prompt, only where a whole one
 * fits now. With no limit, a lane a prompt, each running all its candidates at once.
 */
function holdLanes(res: ServerResponse, access: AccessControl, identity: string, candidates: number, prompts: number): Lane[] {
  const max = access.maxConcurrent;
  if (max <= 0) return Array.from({ length: prompts }, () => ({ width: candidates, spare: [] }));
  const width = Math.min(candidates, max);
  const wanted = Math.max(1, Math.min(prompts, Math.floor(max / width)));
  // Held to the response's end, or the client's going away: one listener for them all (a batch may hold dozens).
  const held: (() => void)[] = [];
  res.once('close', () => {
    for (const release of held) release();
  });
  const lanes: Lane[] = [];
  for (let lane = 0; lane < wanted; lane++) {
    const taken: (() => void)[] = [];
    for (let i = lane === 0 ? 1 : 0; i < width; i++) {
      const more = access.hold(identity);
      if (!more.ok) break;
      held.push(more.release);
      taken.push(more.release);
    }
    if (lane === 0) lanes.push({ width: 1 + taken.length, spare: taken });
    else if (taken.length === width) lanes.push({ width, spare: taken });
    else {
      // No room for another whole lane: the batch runs in those it has.
      for (const release of taken) release();
      held.splice(held.length - taken.length, taken.length);
      break;
    }
  }
  return lanes;
}

/**
 * Runs `run(0)` … `run(count − 1)` with at most `width` at once, each next one in order as one ends; their results in
 * order. Once one fails (or `signal` is aborted), none more begins, and the first failure is thrown. `idle` is called
 * as each of the `width` turns finds none left to begin (its generation slot may go back).
 */
async function inTurns<T>(
  count: number,
  width: number,
  signal: AbortSignal,
  run: (i: number) => Promise<T>,
  idle: () => void = () => {},
): Promise<T[]> {
  const results: T[] = [];
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (next < count && !failed && !signal.aborted) {
      const i = next++;
      try {
        results[i] = await run(i);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
    idle();
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(width, count)) }, worker));
  return results;
}

/**
 * The messages a chat may hold for the price of one request. Its template renders each on the event loop, whatever
 * it holds (0.205 ms a message on austen-2m's, 105 ms for 512: bench/stage-files.ts): before, a chat of 512 empty messages cost one
 * request, so one client's allowance could hold the event loop for seconds a minute (a red-team find).
 */
export const MESSAGES_PER_REQUEST = 64;

/**
 * A chat of more than MESSAGES_PER_REQUEST messages counts as one request more for each MESSAGES_PER_REQUEST (its
 * request took one already), as a batch counts as its prompts; false once refused (answered 429, naming `param`).
 */
export function chargeChat(res: ServerResponse, ctx: ApiContext, identity: string, messages: number, param: string): boolean {
  const requests = Math.ceil(messages / MESSAGES_PER_REQUEST);
  if (requests <= 1) return true;
  const more = ctx.access.takeBatch(identity, requests);
  if (more.ok) return true;
  refuseOverAllowance(
    res,
    more,
    `a chat of ${messages} messages counts as ${requests} requests (one a ${MESSAGES_PER_REQUEST} messages: the chat template renders each)`,
    param,
  );
  return false;
}

/** A request whose size took more of its allowance than was left: 429, saying what it counted as and when to retry. */
export function refuseOverAllowance(
  res: ServerResponse,
  refusal: Extract<AccessDecision, { ok: false }>,
  countedAs: string,
  param: string,
): void {
  if (refusal.retryAfterS !== undefined) res.setHeader('retry-after', String(refusal.retryAfterS));
  sendApiError(res, 429, 'rate_limit_error', refusal.code, `${countedAs}: ${refusal.message}`, param);
}

/**
 * A generation's request taken in: a POST, its key and rate limit checked, one of its client's concurrent
 * generations held until the response ends (or the client goes away), its JSON body read. Null once it was answered
 * (refused).
 */
export async function admitGeneration(
  req: IncomingMessage,
  res: ServerResponse,
  ctx: ApiContext,
): Promise<{ readonly identity: string; readonly raw: unknown } | null> {
  if (req.method !== 'POST') {
    sendMethodNotAllowed(res, ['POST'], 'use POST');
    return null;
  }
  const identity = admitOrRefuse(req, res, ctx.access);
  if (identity === null) return null;
  const slot = ctx.access.hold(identity);
  if (!slot.ok) {
    req.resume();
    res.setHeader('retry-after', String(slot.retryAfterS));
    sendApiError(res, slot.status, 'rate_limit_error', slot.code, slot.message);
    return null;
  }
  // Held from the body's first byte to the response's end, or the client's going away.
  res.once('close', slot.release);
  const raw = await readJsonBody(req, res, ctx);
  return raw === NO_BODY ? null : { identity, raw };
}

/** POST /v1/completions and POST /v1/chat/completions through the swarm, streamed or not. */
export async function handleOpenAiGeneration(
  req: IncomingMessage,
  res: ServerResponse,
  kind: 'completion' | 'chat',
  ctx: ApiContext,
): Promise<void> {
  const admitted = await admitGeneration(req, res, ctx);
  if (admitted === null) return;
  const { identity, raw } = admitted;
  const p: CompletionParams | ChatParams | BodyError =
    kind === 'chat' ? parseChatBody(raw, ctx.modelIds) : parseCompletionBody(raw, ctx.modelIds);
  if ('status' in p) return sendApiError(res, p.status, 'invalid_request_error', p.code, p.message, p.param);
  if (p.kind === 'chat' && !chargeChat(res, ctx, identity, p.messages.length, 'messages')) return;
  const swarm = ctx.swarm;
  const texts = ctx.tokenTexts;
  if (swarm === null || texts === null) return sendApiError(res, 503, 'server_error', 'ERR_NO_ROUTE', 'no model is served');
  const modelId = ctx.modelIds[0] as string;
  let prompts: Prompt[];
  try {
    prompts = preparePrompts(p, swarm, texts);
  } catch (e) {
    const param = p.kind === 'chat' ? 'messages' : 'prompt';
    const code = (e instanceof GenerationError ? e.apiCode : null) ?? 'invalid_request';
    return sendApiError(res, 400, 'invalid_request_error', code, (e as Error).message, param);
  }
  // A batch counts as its prompts sent one by one against the rate limit (the request itself took one already):
  // else one request of 32 prompts would ask the swarm for 32 requests' work.
  if (prompts.length > 1) {
    const more = ctx.access.takeBatch(identity, prompts.length);
    if (!more.ok)
      return refuseOverAllowance(res, more, `a batch of ${prompts.length} prompts counts as ${prompts.length} requests`, 'prompt');
  }

  const candidates = p.kind === 'completion' ? p.bestOf : p.n;
  const ranked = candidates > p.n;
  const lanes = holdLanes(res, ctx.access, identity, candidates, prompts.length);

  const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID()}`;
  const created = Math.floor(Date.now() / 1000);
  const object = kind === 'chat' ? (p.stream ? 'chat.completion.chunk' : 'chat.completion') : 'text_completion';
  const head = { id, object, created, model: modelId, ...(kind === 'chat' ? { system_fingerprint: null } : {}) };
  const choiceOf = (index: number, piece: string, finish: 'stop' | 'length' | null, logprobs: ChunkLogprobs) =>
    kind === 'chat'
      ? { index, delta: finish !== null ? {} : { content: piece }, logprobs, finish_reason: finish }
      : { index, text: piece, logprobs, finish_reason: finish };
  /** Every prompt's tokens (each counted once, whatever its choices) and every choice's. */
  const usageOf = (ds: readonly PromptDone[]) => {
    const prompt = ds.reduce((a, d) => a + (d.done[0]?.promptTokens.length ?? 0), 0);
    const completion = ds.reduce((a, d) => a + d.done.reduce((b, c) => b + c.tokens.length, 0), 0);
    return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
  };

  // A client that goes away cancels its generations, so that the swarm does not compute for nobody.
  const cancel = new AbortController();
  // Each generation running listens for it (a session's own listener): a batch's lanes may run dozens at once, which
  // is no leak.
  setMaxListeners(
    Math.max(
      defaultMaxListeners,
      lanes.reduce((a, l) => a + l.width, 0),
    ),
    cancel.signal,
  );
  res.on('close', () => {
    if (!res.writableFinished) cancel.abort();
  });
  const behindBytes = ctx.streamBehindBytes ?? DEFAULT_STREAM_BEHIND_BYTES;
  // A reader that falls that far behind stops the generation: it ends with ERR_SLOW_READER, after what it has not read.
  const events = p.stream ? new EventStream(res, behindBytes, () => cancel.abort()) : null;
  const sampling = samplingOf(p);
  /** Whether a choice's tokens and the prompt it echoes were all verified (a choice after the first scored none itself). */
  const verifiedOf = (c: ApiCompletion, choice: ChoiceState) => c.verified && choice.promptVotes.every((v) => v.verified);
  const echo = p.kind === 'completion' && p.echo;
  /** Every prompt's choices begun so far (a cancelled request's log counts their tokens). */
  const begun: ChoiceState[] = [];

  /** One prompt's choices (best_of candidates), each a generation of its own, `width` at once, streamed as they come. */
  const runPrompt = async (prompt: Prompt, width: number, idle: () => void): Promise<PromptDone> => {
    const choices = Array.from(
      { length: candidates },
      (_, i) => new ChoiceState(i, kind, p.logprobs, texts, codePoints(prompt.text), ranked, prompt.unfinished.bytes),
    );
    begun.push(...choices);
    /**
     * One chunk of the stream, for one choice. A chat choice's first is the assistant's role alone, as OpenAI's:
     * clients that add up a stream (the openai package's) take the first chunk's content and log-probabilities once
     * more, so a token sent with the role came out twice in their log-probabilities.
     */
    const sendChunk = (
      stream: EventStream,
      choice: ChoiceState,
      piece: string,
      finish: 'stop' | 'length' | null,
      extra: Record<string, unknown> = {},
      logprobs: ChunkLogprobs = null,
    ) => {
      // Each prompt's n choices follow the prompts' before (OpenAI's index: prompt × n + choice).
      const index = prompt.index * p.n + choice.index;
      const usage = p.streamUsage ? { usage: null } : {};
      if (kind === 'chat' && !choice.started)
        stream.send({
          ...head,
          choices: [{ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }],
          ...usage,
        });
      stream.send({ ...head, choices: [choiceOf(index, piece, finish, logprobs)], ...usage, ...extra });
      choice.started = true;
    };
    // echo: the prompt comes back first, scored by the swarm position by position (its first chunk when streamed).
    const echoed = new Set<ChoiceState>();
    const sendEcho = (stream: EventStream, choice: ChoiceState) => {
      if (!echo || echoed.has(choice)) return;
      echoed.add(choice);
      sendChunk(stream, choice, prompt.text, null, { webswarm: { prompt_votes: choice.promptVotes } }, choice.promptLogprobs());
    };
    // n choices with echo: the prompt is scored once, by choice 0's session; the others run alongside without scoring
    // it and echo its scores. Their chunks wait for the scores (each choice's first chunk is the echoed prompt), and
    // with max_tokens 0 there is nothing more to run.
    const scoring: { resolve: () => void; reject: (e: unknown) => void } = { resolve: () => {}, reject: () => {} };
    const promptScored = new Promise<void>((resolve, reject) => Object.assign(scoring, { resolve, reject }));
    // Nobody waits with n = 1; a failure of choice 0 is the request's own (Promise.all below).
    promptScored.catch(() => {});
    /** Stream sends of the choices after the first, held until the prompt is scored. */
    let held: (() => void)[] | null = [];
    const scored = () => {
      const sends = held;
      if (sends === null) return;
      held = null;
      scoring.resolve();
      for (const send of sends) send();
    };
    const sharesScores = (choice: ChoiceState) => echo && choice.index > 0;
    /** One choice's generation. */
    const generate = (choice: ChoiceState): Promise<ApiCompletion> =>
      swarm
        .complete(
          {
            prompt: prompt.text,
            ...(prompt.ids === undefined ? {} : { promptIds: prompt.ids, unfinishedIds: prompt.unfinished.ids }),
            maxTokens: p.maxTokens,
            // A chat that named no max_tokens runs to the end of the context (the coordinator knows the prompt's tokens).
            ...(p.fitToContext ? { fitToContext: true } : {}),
            // Choice i samples with seed + i: n draws of one request differ, and each is reproducible alone.
            sampling: { ...sampling, seed: (p.seed + choice.index) >>> 0 },
            stop: p.stop,
            signal: cancel.signal,
            ...(ctx.access.limitsClients ? { client: identity } : {}),
            ...(echo && !sharesScores(choice) ? { scorePrompt: true } : {}),
          },
          (u) => {
            // Choice 0's first token comes after every position of the prompt.
            if (echo && choice.index === 0) scored();
            const { vote, logprobs } = choice.add(u);
            if (events === null) return;
            const send = () => {
              sendEcho(events, choice);
              sendChunk(events, choice, u.text, null, { webswarm: vote }, logprobs);
              choice.sent += u.text;
            };
            if (sharesScores(choice) && held !== null) held.push(send);
            else send();
          },
          (u) => {
            for (const c of echo ? choices : [choice]) c.addPrompt(u);
          },
        )
        .then(
          (c) => {
            if (echo && choice.index === 0) scored();
            return c;
          },
          (e: unknown) => {
            if (echo && choice.index === 0) scoring.reject(e);
            throw e;
          },
        );
    let first: Promise<ApiCompletion> | null = null;
    /** One choice; streamed, its last chunks go as soon as it ends (after the prompt's scores, for a choice after the first). */
    const run = async (choice: ChoiceState): Promise<ApiCompletion> => {
      let c: ApiCompletion;
      if (choice.index === 0) {
        first = generate(choice);
        c = await first;
      } else if (sharesScores(choice) && p.maxTokens === 0) c = await (first as Promise<ApiCompletion>);
      else c = await generate(choice);
      // The end-of-text draw that ended it counts in its mean log-probability (best_of), as its tokens do.
      if (ranked && c.end !== undefined && !(sharesScores(choice) && p.maxTokens === 0)) choice.ended(c.end);
      if (sharesScores(choice)) await promptScored;
      if (events !== null) {
        sendEcho(events, choice);
        // What was held back (a possible start of a stop sequence that was not one) goes out before the end.
        if (c.text.length > choice.sent.length) sendChunk(events, choice, c.text.slice(choice.sent.length), null);
        sendChunk(events, choice, '', c.finishReason, {
          webswarm: {
            redundancy: c.redundancy,
            seed: (p.seed + choice.index) >>> 0,
            verified: verifiedOf(c, choice),
            route: c.route,
            server_stages: serverStagesOf([...choice.promptVotes, ...choice.votes]),
          },
        });
      }
      return c;
    };
    try {
      // In index order: choice 0, which scores an echoed prompt for the others, begins first.
      const done = await inTurns(choices.length, width, cancel.signal, (i) => run(choices[i] as ChoiceState), idle);
      return { prompt, choices, done };
    } catch (e) {
      throw prompts.length > 1 ? namedInBatch(e, prompt.index) : e;
    }
  };

  /** The prompts through the lanes: each lane runs the next prompt not begun, until none is left (or one failed). */
  const runAll = async (): Promise<PromptDone[]> => {
    const results: PromptDone[] = [];
    let next = 0;
    const lane = async ({ width, spare }: Lane) => {
      // A turn that ends with no prompt left to begin gives its slot back (before, held to the response's end): the
      // client's other requests may run meanwhile.
      const idle = () => {
        if (next >= prompts.length) spare.pop()?.();
      };
      while (next < prompts.length && !cancel.signal.aborted) {
        const prompt = prompts[next++] as Prompt;
        results[prompt.index] = await runPrompt(prompt, width, idle);
      }
      for (const release of spare.splice(0)) release();
    };
    await Promise.all(lanes.map(lane));
    return results;
  };

  /** The end of a stream whose reader fell behind: its error, after what it has not read yet. */
  const endBehind = (stream: EventStream) => {
    const tokens = begun.reduce((a, c) => a + c.votes.length, 0);
    ctx.log(`${kind} ${id}: stopped after ${tokens} tokens: its reader fell ${res.writableLength} bytes behind`);
    stream.last({
      error: {
        message: `the stream's reader fell more than ${behindBytes} bytes behind; the generation stopped (read faster, or ask for fewer tokens, choices or log-probabilities at once)`,
        type: 'server_error',
        param: null,
        code: 'ERR_SLOW_READER',
      },
    });
    res.end();
  };

  const t0 = performance.now();
  try {
    const finished = await runAll();
    // Behind at the last token, or between prompts (no generation was running to be cancelled).
    if (events?.isBehind === true) {
      endBehind(events);
      return;
    }
    const all = finished.flatMap((d) => d.done);
    const tokens = all.reduce((a, c) => a + c.tokens.length, 0);
    const batch = prompts.length > 1 ? ` for ${prompts.length} prompts in ${lanes.length} lane${lanes.length === 1 ? '' : 's'}` : '';
    ctx.log(
      `${kind} ${id}: ${tokens} tokens${batch}${candidates > 1 ? ` in ${candidates} ${ranked ? `candidates, the best ${p.n} returned` : 'choices'}${batch === '' ? '' : ' each'}` : ''}, ${all.map((c) => c.finishReason).join('/')}, ${(performance.now() - t0).toFixed(0)} ms${p.stream ? ', streamed' : ''}`,
    );
    if (events === null) {
      const whole = wholeResponse(finished, p, kind, echo, verifiedOf);
      // In parts: with echo, log-probabilities and n choices of a batch, tens of MB that one JSON.stringify made on the event loop.
      await sendJsonInPieces(res, 200, { ...head, choices: whole.choices, usage: usageOf(finished), webswarm: whole.webswarm });
      return;
    }
    if (p.streamUsage) events.send({ ...head, choices: [], usage: usageOf(finished) });
    // Always: the stream's end, even after a burst of closing chunks counted as a reader behind.
    events.last('[DONE]');
    res.end();
  } catch (e) {
    const { code, message } = wireErrorOf(e);
    // The other choices (and prompts) are not wanted any more.
    cancel.abort();
    if (code === 'ERR_CANCELLED' && events?.isBehind === true) {
      endBehind(events);
      return;
    }
    if (code === 'ERR_CANCELLED') {
      ctx.log(`${kind} ${id}: cancelled by the client after ${begun.reduce((a, c) => a + c.votes.length, 0)} tokens`);
      res.destroy();
      return;
    }
    ctx.log(`${kind} ${id}: failed with ${code}: ${(e as Error).message}`);
    const f = failureOf(e, code, message, { prompt: kind === 'chat' ? 'messages' : 'prompt', max: p.maxField });
    if (f.status === 503 && !res.headersSent) res.setHeader('retry-after', String(RETRY_AFTER_S));
    if (events?.isStarted === true) {
      // The status line has gone out: the error travels as an event, as OpenAI's streams carry one.
      events.last({ error: { message: f.message, type: f.type, param: f.param, code: f.apiCode } });
      res.end();
    } else sendApiError(res, f.status, f.type, f.apiCode, f.message, f.param);
  }
}
