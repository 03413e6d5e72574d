import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { MAX_GENERATE_TOKENS, MAX_PROMPT_CHARS } from '../../shared/protocol/validate.js';
import { GenerationError } from '../coordinator/generation.js';
import { sendJson } from '../http/static-files.js';
import type { SwarmCoordinator } from '../socket-handlers.js';

/** Largest request body accepted. */
export const MAX_BODY_BYTES = 64 * 1024;

interface CompletionBody {
  readonly prompt: string;
  readonly maxTokens: number;
  readonly temperature: number;
  readonly topP: number;
  readonly seed: number;
}

function errorBody(type: string, code: string, message: string) {
  return { error: { type, code, message } };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.byteLength;
      if (size > MAX_BODY_BYTES) {
        // Stop keeping the body but let it drain, so that the 413 reaches the client.
        req.off('data', onData);
        req.resume();
        reject(new Error(`the body is over ${MAX_BODY_BYTES} bytes`));
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** Checks a completion body in OpenAI's shape; returns the values or a message naming the bad field. */
export function parseCompletionBody(raw: unknown, modelId: string): CompletionBody | string {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return 'the body must be a JSON object';
  const b = raw as Record<string, unknown>;
  if (b.model !== undefined && b.model !== modelId) return `model ${JSON.stringify(b.model)} is not served here (served: ${modelId})`;
  if (typeof b.prompt !== 'string' || b.prompt.length === 0 || b.prompt.length > MAX_PROMPT_CHARS)
    return `prompt must be a string of 1..${MAX_PROMPT_CHARS} characters`;
  const maxTokens = b.max_tokens ?? 16;
  if (typeof maxTokens !== 'number' || !Number.isInteger(maxTokens) || maxTokens < 1 || maxTokens > MAX_GENERATE_TOKENS)
    return `max_tokens must be an integer in [1, ${MAX_GENERATE_TOKENS}]`;
  const temperature = b.temperature ?? 1;
  if (typeof temperature !== 'number' || !(temperature >= 0 && temperature <= 2)) return 'temperature must be a number in [0, 2]';
  const topP = b.top_p ?? 1;
  if (typeof topP !== 'number' || !(topP > 0 && topP <= 1)) return 'top_p must be a number in (0, 1]';
  const seed = b.seed ?? 0;
  if (typeof seed !== 'number' || !Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) return 'seed must be an integer in [0, 2^32)';
  if (b.stream === true) return 'stream is not supported yet on this endpoint';
  if (b.n !== undefined && b.n !== 1) return 'n must be 1';
  return { prompt: b.prompt, maxTokens, temperature, topP, seed };
}

/** POST /v1/completions: a minimal OpenAI-compatible completion through the swarm. */
export async function handleCompletions(
  req: IncomingMessage,
  res: ServerResponse,
  coordinator: SwarmCoordinator,
  modelId: string,
  log: (l: string) => void,
): Promise<void> {
  if (req.method !== 'POST') {
    sendJson(res, 405, errorBody('invalid_request_error', 'method_not_allowed', 'use POST'));
    return;
  }
  let body: CompletionBody | string;
  try {
    const text = await readBody(req);
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      raw = Symbol('not json');
    }
    body = typeof raw === 'symbol' ? 'the body is not valid JSON' : parseCompletionBody(raw, modelId);
  } catch (e) {
    res.setHeader('connection', 'close');
    sendJson(res, 413, errorBody('invalid_request_error', 'body_too_large', (e as Error).message));
    return;
  }
  if (typeof body === 'string') {
    sendJson(
      res,
      body.includes('is not served') ? 404 : 400,
      errorBody('invalid_request_error', body.includes('is not served') ? 'model_not_found' : 'invalid_request', body),
    );
    return;
  }
  try {
    const votes: unknown[] = [];
    const c = await coordinator.complete(
      {
        prompt: body.prompt,
        maxTokens: body.maxTokens,
        sampling: { temperature: body.temperature, topK: 0, topP: body.topP, seed: body.seed },
      },
      (u) => votes.push({ token: u.token, votes: u.votes }),
    );
    sendJson(res, 200, {
      id: `cmpl-${randomUUID()}`,
      object: 'text_completion',
      created: Math.floor(Date.now() / 1000),
      model: modelId,
      choices: [{ index: 0, text: c.text, logprobs: null, finish_reason: c.finishReason }],
      usage: {
        prompt_tokens: c.promptTokens.length,
        completion_tokens: c.tokens.length,
        total_tokens: c.promptTokens.length + c.tokens.length,
      },
      // webswarm's extension: the token ids, the route and every token's vote.
      webswarm: { prompt_tokens: c.promptTokens, tokens: c.tokens, route: c.route, votes },
    });
  } catch (e) {
    const code = e instanceof GenerationError ? e.code : 'ERR_INTERNAL';
    const status = code === 'ERR_BAD_REQUEST' ? 400 : code === 'ERR_INTERNAL' ? 500 : 503;
    log(`completion failed: ${code} ${(e as Error).message}`);
    sendJson(res, status, errorBody(status === 400 ? 'invalid_request_error' : 'server_error', code, (e as Error).message));
  }
}
