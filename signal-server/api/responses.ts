// POST /v1/responses: OpenAI's Responses API over the swarm, streamed (its named events) or not. One answer a
// request (the API has no `n`), verified as a chat completion's: the same conversation, sampling and seed give the
// same tokens on either endpoint, and webswarm's extension carries each token's vote. Nothing is stored: GET
// /v1/responses/{id} answers 404 saying so, and what would need a stored response is refused (responses-params.ts).
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { wireErrorOf } from '../coordinator/generation.js';
import { sendJson } from '../http/static-files.js';
import type { ApiCompletion, ApiTokenUpdate } from './api-swarm.js';
import { ChoiceState, serverStagesOf } from './choice-state.js';
import {
  type ApiContext,
  admitGeneration,
  chargeChat,
  DEFAULT_STREAM_BEHIND_BYTES,
  failureOf,
  RETRY_AFTER_S,
  sendApiError,
} from './completions.js';
import { EventStream } from './event-stream.js';
import { codePoints } from './logprob-shapes.js';
import { samplingOf } from './openai-params.js';
import { parseResponsesBody, type ResponsesParams } from './responses-params.js';

type ResponseStatus = 'in_progress' | 'completed' | 'incomplete' | 'failed';

/** The answer's one output item: the assistant's message, its text one output_text part. */
function messageItem(id: string, status: 'in_progress' | 'completed' | 'incomplete', text: string | null) {
  return {
    id,
    type: 'message',
    status,
    role: 'assistant',
    content: text === null ? [] : [textPart(text)],
  };
}

function textPart(text: string) {
  return { type: 'output_text', text, annotations: [], logprobs: [] };
}

/** OpenAI's response object, as this server fills it: the request's settings said back, and what it has so far. */
function responseObject(
  ids: { readonly id: string; readonly createdAt: number; readonly model: string },
  p: ResponsesParams,
  status: ResponseStatus,
  more: { output?: unknown[]; usage?: unknown; error?: { code: string; message: string }; webswarm?: unknown } = {},
) {
  return {
    id: ids.id,
    object: 'response',
    created_at: ids.createdAt,
    status,
    ...(status === 'completed' ? { completed_at: Math.floor(Date.now() / 1000) } : {}),
    error: more.error ?? null,
    incomplete_details: status === 'incomplete' ? { reason: 'max_output_tokens' } : null,
    instructions: p.instructions,
    max_output_tokens: p.maxOutputTokens,
    model: ids.model,
    output: more.output ?? [],
    parallel_tool_calls: p.parallelToolCalls,
    previous_response_id: null,
    reasoning: null,
    store: false,
    temperature: p.temperature,
    text: { format: { type: 'text' } },
    tool_choice: p.toolChoice,
    tools: [],
    top_p: p.topP,
    truncation: 'disabled',
    usage: more.usage ?? null,
    ...(p.user === null ? {} : { user: p.user }),
    metadata: p.metadata ?? {},
    ...(more.webswarm === undefined ? {} : { webswarm: more.webswarm }),
  };
}

/** The usage of a finished answer: its prompt's tokens and its own. */
function usageOf(c: ApiCompletion) {
  return {
    input_tokens: c.promptTokens.length,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: c.tokens.length,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: c.promptTokens.length + c.tokens.length,
  };
}

/** GET /v1/responses/{id} and its sub-resources: nothing is stored here, so none is there to retrieve or cancel. */
export function answerNotStored(res: ServerResponse): void {
  sendApiError(
    res,
    404,
    'invalid_request_error',
    'not_found',
    'responses are not stored here: each POST /v1/responses answers in full (or streams) and keeps nothing to retrieve, cancel or delete later',
  );
}

/** POST /v1/responses through the swarm. */
export async function handleResponses(req: IncomingMessage, res: ServerResponse, ctx: ApiContext): Promise<void> {
  const admitted = await admitGeneration(req, res, ctx);
  if (admitted === null) return;
  const { identity, raw } = admitted;
  const p = parseResponsesBody(raw, ctx.modelIds);
  if ('status' in p) return sendApiError(res, p.status, 'invalid_request_error', p.code, p.message, p.param);
  if (!chargeChat(res, ctx, identity, p.chat.messages.length, 'input')) return;
  const swarm = ctx.swarm;
  const texts = ctx.tokenTexts;
  if (swarm === null || texts === null) return sendApiError(res, 503, 'server_error', 'ERR_NO_ROUTE', 'no model is served');
  let prompt: string;
  try {
    prompt = swarm.chatPrompt(p.chat.messages);
  } catch (e) {
    return sendApiError(res, 400, 'invalid_request_error', 'invalid_request', (e as Error).message, 'input');
  }

  const ids = {
    id: `resp_${randomUUID().replaceAll('-', '')}`,
    createdAt: Math.floor(Date.now() / 1000),
    model: ctx.modelIds[0] as string,
  };
  const itemId = `msg_${randomUUID().replaceAll('-', '')}`;
  const cancel = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) cancel.abort();
  });
  const behindBytes = ctx.streamBehindBytes ?? DEFAULT_STREAM_BEHIND_BYTES;
  const events = p.chat.stream ? new EventStream(res, behindBytes, () => cancel.abort()) : null;
  let sequence = 0;
  /**
   * One named event: its type and sequence number first, as OpenAI's; a number is spent only by an event written.
   * The deltas are what a reader falls behind on (`send`, dropped once it is behind); the groups before the first
   * and after the last, bounded by one answer's size (512 tokens at most), always go (`always`), so that a stream
   * always ends with its one final event: a burst of them written in one turn counted as a reader behind, and the
   * final event was dropped (a red-team find).
   */
  const send = (type: string, data: Record<string, unknown>, always = false) => {
    const event = { type, sequence_number: sequence, ...data };
    if (events !== null && (always ? events.last(event, type) : events.send(event, type))) sequence += 1;
  };
  const place = { item_id: itemId, output_index: 0, content_index: 0 };
  /** The events before the first delta, sent with it (not before: a request refused early keeps its HTTP status). */
  let opened = false;
  const open = () => {
    if (opened) return;
    opened = true;
    const begun = responseObject(ids, p, 'in_progress');
    send('response.created', { response: begun }, true);
    send('response.in_progress', { response: begun }, true);
    send('response.output_item.added', { output_index: 0, item: messageItem(itemId, 'in_progress', null) }, true);
    send('response.content_part.added', { ...place, part: textPart('') }, true);
  };
  /** The stream's last event once it failed: response.failed with the error (sent even to a reader behind). */
  const failed = (errorCode: string, errorMessage: string) => {
    open();
    send('response.failed', { response: responseObject(ids, p, 'failed', { error: { code: errorCode, message: errorMessage } }) }, true);
    res.end();
  };
  const endBehind = () => {
    ctx.log(`responses ${ids.id}: stopped after ${choice.votes.length} tokens: its reader fell ${res.writableLength} bytes behind`);
    failed(
      'ERR_SLOW_READER',
      `the stream's reader fell more than ${behindBytes} bytes behind; the generation stopped (read faster, or ask for fewer tokens)`,
    );
  };
  const seed = p.chat.seed >>> 0;
  const choice = new ChoiceState(0, 'chat', null, texts, codePoints(prompt));
  const t0 = performance.now();
  try {
    const c = await swarm.complete(
      {
        prompt,
        maxTokens: p.chat.maxTokens,
        ...(p.chat.fitToContext ? { fitToContext: true } : {}),
        sampling: { ...samplingOf(p.chat), seed },
        stop: [],
        signal: cancel.signal,
        ...(ctx.access.limitsClients ? { client: identity } : {}),
      },
      (u: ApiTokenUpdate) => {
        const { vote } = choice.add(u);
        if (events === null) return;
        open();
        send('response.output_text.delta', { ...place, delta: u.text, logprobs: [], webswarm: vote });
        choice.sent += u.text;
      },
    );
    // Behind at the last token: no generation was running to be cancelled.
    if (events?.isBehind === true) {
      endBehind();
      return;
    }
    const status = c.finishReason === 'length' ? 'incomplete' : 'completed';
    const item = messageItem(itemId, status, c.text);
    const webswarm = {
      redundancy: c.redundancy,
      verified: c.verified,
      seed,
      prompt_tokens: c.promptTokens,
      tokens: c.tokens,
      route: c.route,
      server_stages: serverStagesOf(choice.votes),
      votes: choice.votes,
    };
    const done = responseObject(ids, p, status, { output: [item], usage: usageOf(c), webswarm });
    ctx.log(
      `responses ${ids.id}: ${c.tokens.length} tokens, ${status}, ${(performance.now() - t0).toFixed(0)} ms${events === null ? '' : ', streamed'}`,
    );
    if (events === null) {
      sendJson(res, 200, done);
      return;
    }
    open();
    // What the deltas have not carried yet (none here: no stop sequence holds text back), then the parts' ends.
    if (c.text.length > choice.sent.length)
      send('response.output_text.delta', { ...place, delta: c.text.slice(choice.sent.length), logprobs: [] }, true);
    send('response.output_text.done', { ...place, text: c.text, logprobs: [] }, true);
    send('response.content_part.done', { ...place, part: textPart(c.text) }, true);
    send('response.output_item.done', { output_index: 0, item }, true);
    send(status === 'completed' ? 'response.completed' : 'response.incomplete', { response: done }, true);
    res.end();
  } catch (e) {
    const { code, message } = wireErrorOf(e);
    cancel.abort();
    if (code === 'ERR_CANCELLED' && events?.isBehind === true) {
      endBehind();
      return;
    }
    if (code === 'ERR_CANCELLED') {
      ctx.log(`responses ${ids.id}: cancelled by the client after ${choice.votes.length} tokens`);
      res.destroy();
      return;
    }
    ctx.log(`responses ${ids.id}: failed with ${code}: ${message}`);
    const f = failureOf(e, code, message, { prompt: 'input', max: 'max_output_tokens' });
    if (events?.isStarted === true) failed(f.apiCode, f.message);
    else {
      if (f.status === 503) res.setHeader('retry-after', String(RETRY_AFTER_S));
      sendApiError(res, f.status, f.type, f.apiCode, f.message, f.param);
    }
  }
}
