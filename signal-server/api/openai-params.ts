import { randomInt } from 'node:crypto';
import { GREEDY, samplingError } from '../../shared/model/sampling.js';
import type { ChatMessage } from '../../shared/model/tokenizer.js';
import { describeValue } from '../../shared/protocol/json-shape.js';
import { MAX_GENERATE_TOKENS, MAX_PROMPT_CHARS } from '../../shared/protocol/validate.js';
import { MAX_COMPLETION_LOGPROBS, MAX_TOP_LOGPROBS } from './logprobs.js';
import { type Endpoint, unsupportedField } from './openai-unsupported.js';

/** OpenAI allows up to 4 stop sequences. */
export const MAX_STOP_SEQUENCES = 4;
export const MAX_STOP_CHARS = 64;
export const MAX_CHAT_MESSAGES = 512;
/** Most choices (`n`) a request may ask for: each is a generation of its own, and holds one of the client's concurrent ones. */
export const MAX_CHOICES = 8;
/** The largest top_k taken (any k at or above the vocabulary is no limit). */
export const MAX_TOP_K = 1 << 20;

/** What both endpoints take, checked. */
export interface GenerationParams {
  readonly maxTokens: number;
  /**
   * A chat request that named no max_tokens: as many tokens as the model's context leaves after the prompt, at most
   * `maxTokens` (MAX_GENERATE_TOKENS), as OpenAI's chat has no default cap (its completions' default is 16, as here).
   */
  readonly fitToContext: boolean;
  /** The cap's field as the client named it (or would have): errors say it in the endpoint's words. */
  readonly maxField: 'max_tokens' | 'max_completion_tokens' | 'max_output_tokens';
  readonly temperature: number;
  readonly topP: number;
  /**
   * top_k, an extension OpenAI lacks (vLLM and llama.cpp's servers take it): draw only among the k most likely
   * tokens; 0 (or vLLM's −1, or absent) for no limit.
   */
  readonly topK: number;
  readonly seed: number;
  /** logit_bias as [token id, bias] pairs (token ids are checked against the model's vocabulary by the coordinator). */
  readonly logitBias: readonly (readonly [number, number])[];
  readonly frequencyPenalty: number;
  readonly presencePenalty: number;
  /** Choices to generate (`n`), each a generation of its own; choice i samples with seed + i. */
  readonly n: number;
  readonly stop: readonly string[];
  readonly stream: boolean;
  /** stream_options.include_usage: a last chunk with the usage counts. */
  readonly streamUsage: boolean;
  /**
   * Log-probabilities asked for: how many of the most likely tokens to list at
   * each position (chat: `top_logprobs` with `logprobs: true`; completions:
   * `logprobs`), or null for none.
   */
  readonly logprobs: number | null;
}

/**
 * A completion's prompt: text, or the token ids of one (what evaluation harnesses send, e.g. lm-evaluation-harness's
 * `local-completions` with its default `tokenized_requests`), checked against the model's vocabulary by the coordinator.
 */
export type CompletionPrompt = { readonly text: string } | { readonly ids: readonly number[] };

/**
 * The most token ids the prompts of a request may hold together (each one's, and all of a batch's), and likewise the
 * most characters of text prompts (MAX_PROMPT_CHARS). The model's positions bound each prompt further (the
 * coordinator checks), so a batch may ask more of the swarm than one prompt: it counts as its prompts against the
 * rate limit (completions.ts).
 */
export const MAX_PROMPT_IDS = MAX_PROMPT_CHARS;

/**
 * The most prompts one request may hold (OpenAI's batch form: a list of strings or of lists of ids). Covers the
 * batch sizes evaluation tools send (lm-evaluation-harness's `batch_size`, 1 by default, 8–32 in practice) while
 * keeping a request small: it is answered whole, only once its last prompt has ended, holds its client's slots
 * until then, and fails whole if one prompt fails, so that a bigger batch risks more computed for nothing.
 */
export const MAX_PROMPTS = 32;

export interface CompletionParams extends GenerationParams {
  readonly kind: 'completion';
  /** The prompts, in order (one, or a batch of up to MAX_PROMPTS): each answered with `n` choices of its own. */
  readonly prompts: readonly CompletionPrompt[];
  /**
   * `echo`: the prompt comes back before the completion, and with `logprobs` each of its tokens after the first
   * with its log-probability, computed and voted on by the swarm position by position. `max_tokens` may then be 0.
   */
  readonly echo: boolean;
  /**
   * `best_of`: candidates generated (each a generation of its own, candidate i sampling with seed + i), of which
   * the `n` with the highest log-probability per token are returned, best first; `n` (the default) ranks nothing.
   */
  readonly bestOf: number;
}

export interface ChatParams extends GenerationParams {
  readonly kind: 'chat';
  readonly messages: readonly ChatMessage[];
}

/** A refused body: the message names the field; `param` is OpenAI's field name. */
export interface BodyError {
  readonly status: 400 | 404;
  readonly code: 'invalid_request' | 'model_not_found' | 'unsupported_parameter' | 'unsupported_value' | 'unknown_parameter';
  readonly param: string | null;
  readonly message: string;
}

export const bad = (param: string, message: string): BodyError => ({ status: 400, code: 'invalid_request', param, message });

/** A body that is no JSON object: no field is at fault (OpenAI's `param` null). */
export const NOT_AN_OBJECT: BodyError = { status: 400, code: 'invalid_request', param: null, message: 'the body must be a JSON object' };

const absent = (v: unknown) => v === undefined || v === null;

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Why a model the client named is none served here: one message for every route that names models (404). */
export function unknownModelMessage(name: string, modelIds: readonly string[]): string {
  return `The model ${describeValue(name, 100)} does not exist here (served: ${modelIds.join(', ')})`;
}

/**
 * A body's `model`, when it names one, must be a string (400 otherwise, as OpenAI answers a field of the wrong type)
 * naming a model served here (404 otherwise); absent or null (as every field), the served model.
 */
export function modelRefused(b: Record<string, unknown>, modelIds: readonly string[]): BodyError | null {
  if (b.model === undefined || b.model === null || (typeof b.model === 'string' && modelIds.includes(b.model))) return null;
  if (typeof b.model !== 'string')
    return bad('model', `model must be a string naming a served model (served: ${modelIds.join(', ')}), not ${describeValue(b.model)}`);
  return { status: 404, code: 'model_not_found', param: 'model', message: unknownModelMessage(b.model, modelIds) };
}

/** Fields that name the caller or a cache and change nothing here: each, where given, must be a string as OpenAI's. */
const NAMING_FIELDS = ['user', 'safety_identifier', 'prompt_cache_key'] as const;

/** A list of 1..`most` token ids, each an integer ≥ 0 (whether the model has it, the coordinator checks), or why not. */
export function tokenIdsProblem(v: unknown, field: string, most: number): string | null {
  if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === 'number'))
    return `${field} must be a list of 1..${most} token ids`;
  if (v.length > most) return `${field} holds ${v.length} token ids; at most ${most}`;
  const at = v.findIndex((id) => !Number.isSafeInteger(id) || id < 0);
  // The number itself: JSON.stringify would write an id past float64's range (1e400) as null.
  return at < 0 ? null : `${field}[${at}] is ${v[at]}: a token id is an integer ≥ 0`;
}

export type Common = Omit<GenerationParams, 'logprobs'>;

/** What every generation endpoint's body holds, checked (the Responses API's has fewer of them: the rest keep their defaults). */
export function common(b: Record<string, unknown>, modelIds: readonly string[], endpoint: Endpoint): Common | BodyError {
  const model = modelRefused(b, modelIds);
  if (model !== null) return model;
  const unsupported = unsupportedField(b, endpoint);
  if (unsupported !== null) return { status: 400, ...unsupported };
  for (const field of NAMING_FIELDS) if (!absent(b[field]) && typeof b[field] !== 'string') return bad(field, `${field} must be a string`);
  // With echo, a prompt may be scored and nothing generated (what evaluation harnesses ask for).
  const least = endpoint === 'completion' && b.echo === true ? 0 : 1;
  // Both given, and apart: which one was meant is not ours to guess (before, max_tokens was silently ignored).
  if (!absent(b.max_tokens) && !absent(b.max_completion_tokens) && b.max_tokens !== b.max_completion_tokens)
    return bad('max_tokens', 'max_tokens and max_completion_tokens say different things: give one of them');
  const asked = endpoint === 'responses' ? (b.max_output_tokens ?? null) : (b.max_completion_tokens ?? b.max_tokens ?? null);
  // Named as the client named it (chat's newer max_completion_tokens, or max_tokens; the Responses API's own).
  const field =
    endpoint === 'responses'
      ? 'max_output_tokens'
      : b.max_completion_tokens === undefined || b.max_completion_tokens === null
        ? 'max_tokens'
        : 'max_completion_tokens';
  // A conversation (chat, Responses) with no cap runs to the end of the context.
  const fitToContext = asked === null && endpoint !== 'completion';
  const maxTokens = asked ?? (fitToContext ? MAX_GENERATE_TOKENS : 16);
  if (typeof maxTokens !== 'number' || !Number.isInteger(maxTokens) || maxTokens < least || maxTokens > MAX_GENERATE_TOKENS)
    return bad(
      field,
      `${field} must be an integer in [${least}, ${MAX_GENERATE_TOKENS}]${endpoint === 'completion' && least === 1 && maxTokens === 0 ? ' (0 only with echo: true)' : ''}`,
    );
  const temperature = b.temperature ?? 1;
  if (typeof temperature !== 'number' || !(temperature >= 0 && temperature <= 2))
    return bad('temperature', 'temperature must be a number in [0, 2]');
  const rawTopP = b.top_p ?? 1;
  if (typeof rawTopP !== 'number' || !(rawTopP >= 0 && rawTopP <= 1)) return bad('top_p', 'top_p must be a number in [0, 1]');
  const rawTopK = b.top_k ?? 0;
  if (typeof rawTopK !== 'number' || !Number.isInteger(rawTopK) || rawTopK < -1 || rawTopK > MAX_TOP_K)
    return bad('top_k', `top_k must be an integer in [-1, ${MAX_TOP_K}] (0 or -1: no limit)`);
  // top_p 0 (OpenAI takes it) keeps the smallest nucleus there is, the most likely token alone: top_k 1.
  const topP = rawTopP === 0 ? 1 : rawTopP;
  const topK = rawTopP === 0 ? 1 : Math.max(0, rawTopK);
  // None given: one drawn for the request (as OpenAI's, a request asked again gives another draw); the response names it.
  const rawSeed = b.seed ?? randomInt(0, 2 ** 32);
  // OpenAI's seed is an int64 (clients send Date.now() or -1); the sampler's is 32 bits: the seed modulo 2^32.
  // JSON's numbers are doubles: int64's largest, 2^63 - 1, arrives as 2^63, so |seed| ≤ 2^63 is what an int64 can be.
  if (typeof rawSeed !== 'number' || !Number.isInteger(rawSeed) || Math.abs(rawSeed) > 2 ** 63)
    return bad('seed', 'seed must be a 64-bit integer (|seed| ≤ 2^63); the sampler uses it modulo 2^32');
  const seed = seedBits(rawSeed);
  const frequencyPenalty = penaltyOf(b, 'frequency_penalty');
  if (typeof frequencyPenalty !== 'number') return frequencyPenalty;
  const presencePenalty = penaltyOf(b, 'presence_penalty');
  if (typeof presencePenalty !== 'number') return presencePenalty;
  const n = b.n ?? 1;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_CHOICES)
    return bad('n', `n must be an integer in [1, ${MAX_CHOICES}]`);
  const logitBias = parseLogitBias(b.logit_bias ?? {});
  if (typeof logitBias === 'string') return bad('logit_bias', logitBias);
  // The ranges are the sampler's own rule, the one the coordinator checks again.
  const outOfRange = samplingError({ ...GREEDY, frequencyPenalty, presencePenalty, logitBias });
  if (outOfRange !== null) return bad(outOfRange.param, outOfRange.message);
  const rawStop = b.stop ?? [];
  const stop = typeof rawStop === 'string' ? [rawStop] : rawStop;
  if (
    !Array.isArray(stop) ||
    stop.length > MAX_STOP_SEQUENCES ||
    !stop.every((s): s is string => typeof s === 'string' && s.length > 0 && s.length <= MAX_STOP_CHARS)
  )
    return bad('stop', `stop must be a string or up to ${MAX_STOP_SEQUENCES} strings of 1..${MAX_STOP_CHARS} characters`);
  // A lone surrogate (JSON's "\uD800") is in no text the model can write: such a stop could never match (accepted
  // before, it was silently dead).
  const dead = stop.findIndex((x) => new RegExp(LONE_SURROGATE.source).test(x));
  if (dead >= 0)
    return bad(
      'stop',
      `${typeof rawStop === 'string' ? 'stop' : `stop[${dead}]`} holds a lone UTF-16 surrogate, which no generated text can contain`,
    );
  if (b.stream !== undefined && b.stream !== null && typeof b.stream !== 'boolean') return bad('stream', 'stream must be a boolean');
  const so = b.stream_options ?? null;
  if (so !== null && (!isObject(so) || (so.include_usage !== undefined && typeof so.include_usage !== 'boolean')))
    return bad('stream_options', 'stream_options must be an object with an optional boolean include_usage');
  // Refused, not ignored: a misspelt include_usage would otherwise leave the stream without its usage, and no word.
  // include_obfuscation (OpenAI's padding of stream events) is taken and changes nothing: no padding is sent.
  const soUnknown = so === null ? null : unknownProperty(so, STREAM_OPTIONS, 'stream_options');
  if (soUnknown !== null) return soUnknown;
  if (so !== null && so.include_obfuscation !== undefined && so.include_obfuscation !== null && typeof so.include_obfuscation !== 'boolean')
    return bad('stream_options.include_obfuscation', 'stream_options.include_obfuscation must be a boolean');
  const stream = b.stream === true;
  if (so !== null && !stream) return bad('stream_options', 'stream_options is only allowed with stream: true');
  return {
    maxTokens,
    fitToContext,
    maxField: field,
    temperature,
    topP,
    topK,
    seed,
    logitBias,
    frequencyPenalty,
    presencePenalty,
    n,
    stop,
    stream,
    streamUsage: so?.include_usage === true,
  };
}

/** The sampler's settings a body asked for, but its seed (each choice samples with its own: seed + its index). */
export function samplingOf(p: GenerationParams) {
  return {
    temperature: p.temperature,
    topK: p.topK,
    topP: p.topP,
    logitBias: p.logitBias,
    frequencyPenalty: p.frequencyPenalty,
    presencePenalty: p.presencePenalty,
  };
}

/**
 * An integer seed as the sampler's 32 bits: the seed modulo 2^32 (its two's complement's low bits), exact for the
 * integer given. JSON.parse has rounded one past 2^53 to a double before it comes here (README says so).
 */
export function seedBits(seed: number): number {
  return Number(BigInt.asUintN(32, BigInt(seed)));
}

function penaltyOf(b: Record<string, unknown>, name: 'frequency_penalty' | 'presence_penalty'): number | BodyError {
  const v = b[name] ?? 0;
  return typeof v === 'number' ? v : bad(name, `${name} must be a number in [-2, 2]`);
}

/** OpenAI's logit_bias: an object of token ids (as strings) to numbers; pairs, or a message naming the problem (ranges: samplingError). */
function parseLogitBias(raw: unknown): [number, number][] | string {
  if (!isObject(raw)) return 'logit_bias must be an object of token ids to biases';
  const pairs: [number, number][] = [];
  for (const [key, bias] of Object.entries(raw)) {
    if (!/^(0|[1-9][0-9]{0,8})$/.test(key)) return `logit_bias: ${JSON.stringify(key.slice(0, 32))} is not a token id`;
    if (typeof bias !== 'number') return `logit_bias: the bias of token ${key} must be a number in [-100, 100]`;
    pairs.push([Number(key), bias]);
  }
  return pairs;
}

const PROMPT_FORMS = `a string of 1..${MAX_PROMPT_CHARS} characters, a list of 1..${MAX_PROMPT_IDS} token ids, or a list of 1..${MAX_PROMPTS} of either (all strings or all lists of ids)`;

/**
 * OpenAI's four forms of `prompt`: a string, a list of strings, a list of token ids, a list of lists of token ids;
 * the lists of several are a batch, of up to MAX_PROMPTS prompts of one form, holding MAX_PROMPT_CHARS characters or
 * MAX_PROMPT_IDS ids in all. A token id here is an integer ≥ 0; whether the model has it, the coordinator checks.
 */
function parsePrompts(raw: unknown): CompletionPrompt[] | string {
  if (typeof raw === 'string') return textPrompts([raw]);
  if (!Array.isArray(raw) || raw.length === 0) return `prompt must be ${PROMPT_FORMS}`;
  // One prompt of ids.
  if (raw.every((x) => typeof x === 'number')) {
    const problem = tokenIdsProblem(raw, 'prompt', MAX_PROMPT_IDS);
    return problem ?? [{ ids: [...raw] }];
  }
  const strings = raw.every((x) => typeof x === 'string');
  const lists = raw.every((x) => Array.isArray(x));
  if (!strings && !lists) {
    if (raw.every((x) => typeof x === 'string' || Array.isArray(x)))
      return `prompt mixes strings and lists of token ids: the prompts of a batch are all strings or all lists of ids`;
    return `prompt must be ${PROMPT_FORMS}`;
  }
  if (raw.length > MAX_PROMPTS) return `prompt holds ${raw.length} prompts; at most ${MAX_PROMPTS} a request`;
  if (strings) return textPrompts(raw);
  const prompts: CompletionPrompt[] = [];
  let total = 0;
  for (const [i, ids] of raw.entries()) {
    // A list of one list names its ids as a plain list's (prompt[3]), a batch's by their prompt (prompt[1][3]).
    const problem = tokenIdsProblem(ids, raw.length === 1 ? 'prompt' : `prompt[${i}]`, MAX_PROMPT_IDS);
    if (problem !== null) return problem;
    total += (ids as number[]).length;
    prompts.push({ ids: [...(ids as number[])] });
  }
  if (total > MAX_PROMPT_IDS) return `prompt's ${raw.length} prompts hold ${total} token ids together; at most ${MAX_PROMPT_IDS}`;
  return prompts;
}

/** Text prompts: each of 1..MAX_PROMPT_CHARS characters, all of them together at most MAX_PROMPT_CHARS. */
function textPrompts(texts: readonly string[]): CompletionPrompt[] | string {
  const at = texts.findIndex((t) => t.length === 0 || t.length > MAX_PROMPT_CHARS);
  if (at >= 0)
    return `prompt must be ${PROMPT_FORMS}: ${texts.length === 1 ? 'the string' : `prompt[${at}]`} has ${texts[at]?.length} characters`;
  const total = texts.reduce((a, t) => a + t.length, 0);
  if (total > MAX_PROMPT_CHARS) return `prompt's ${texts.length} prompts hold ${total} characters together; at most ${MAX_PROMPT_CHARS}`;
  return texts.map((text) => ({ text: wellFormed(text) }));
}

/** A UTF-16 surrogate without its pair: JSON's \uD800 escapes carry one, which no UTF-8 (the tokenizer's) can. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * A text prompt as the model reads it: each lone surrogate as U+FFFD, which the tokenizer encodes it as. An echoed
 * prompt kept it, so the echo was not the text of its own tokens, and the answer's JSON carried a "\uD800" that
 * strict decoders (Rust's serde_json, Python's once it writes UTF-8) refuse.
 */
function wellFormed(text: string): string {
  return text.replace(LONE_SURROGATE, '\uFFFD');
}

/** POST /v1/completions's body. */
export function parseCompletionBody(raw: unknown, modelIds: readonly string[]): CompletionParams | BodyError {
  if (!isObject(raw)) return NOT_AN_OBJECT;
  const c = common(raw, modelIds, 'completion');
  if ('status' in c) return c;
  const logprobs = raw.logprobs ?? null;
  if (
    logprobs !== null &&
    (typeof logprobs !== 'number' || !Number.isInteger(logprobs) || logprobs < 0 || logprobs > MAX_COMPLETION_LOGPROBS)
  )
    return bad('logprobs', `logprobs must be an integer in [0, ${MAX_COMPLETION_LOGPROBS}]`);
  const prompts = parsePrompts(raw.prompt);
  if (typeof prompts === 'string') return bad('prompt', prompts);
  const echo = raw.echo ?? false;
  if (typeof echo !== 'boolean') return bad('echo', 'echo must be a boolean');
  const bestOf = raw.best_of ?? c.n;
  if (typeof bestOf !== 'number' || !Number.isInteger(bestOf) || bestOf < c.n || bestOf > MAX_CHOICES)
    return bad(
      'best_of',
      `best_of must be an integer in [n, ${MAX_CHOICES}] (here n = ${c.n}): the candidates generated, of which the n with the highest log-probability per token are returned`,
    );
  if (bestOf > c.n && c.stream)
    return bad('best_of', 'best_of > n cannot be streamed: the best candidates are known only once every one has ended');
  return { ...c, kind: 'completion', prompts, logprobs, echo, bestOf };
}

function contentText(c: unknown, assistant: boolean): string | null {
  if (typeof c === 'string') return c;
  // The list form: text parts only (the model reads text), and an assistant's refusal parts (OpenAI's own answers
  // carry them; a client replays them as they came), read as what it said.
  if (!Array.isArray(c)) return null;
  let out = '';
  for (const part of c) {
    if (isObject(part) && part.type === 'text' && typeof part.text === 'string') out += part.text;
    else if (assistant && isObject(part) && part.type === 'refusal' && typeof part.refusal === 'string') out += part.refusal;
    else return null;
  }
  return out;
}

/** POST /v1/chat/completions's body. */
export function parseChatBody(raw: unknown, modelIds: readonly string[]): ChatParams | BodyError {
  if (!isObject(raw)) return NOT_AN_OBJECT;
  const c = common(raw, modelIds, 'chat');
  if ('status' in c) return c;
  const logprobs = chatLogprobs(raw);
  if (typeof logprobs === 'object' && logprobs !== null) return logprobs;
  const messages = parseMessages(raw.messages);
  if (!Array.isArray(messages)) return messages;
  return { ...c, kind: 'chat', messages, logprobs };
}

/** stream_options' fields in OpenAI's completions and chat completions. */
const STREAM_OPTIONS: ReadonlySet<string> = new Set(['include_usage', 'include_obfuscation']);

/** The first property of `value` (at `at` in the body) that is not among `known`, refused as OpenAI refuses it; or null. */
export function unknownProperty(value: Record<string, unknown>, known: ReadonlySet<string>, at: string): BodyError | null {
  const unknown = Object.keys(value).find((k) => !known.has(k));
  if (unknown === undefined) return null;
  const name = unknown.slice(0, 64);
  return {
    status: 400,
    code: 'unknown_parameter',
    param: `${at}.${name}`,
    message: `Unrecognized request argument supplied: ${at}.${name} (${at} takes ${[...known].join(', ')})`,
  };
}

/** A message's properties in OpenAI's API (an assistant's tool calls and refusal, a tool message's call id among them). */
const MESSAGE_FIELDS: ReadonlySet<string> = new Set([
  'role',
  'content',
  'name',
  'refusal',
  'tool_calls',
  'function_call',
  'tool_call_id',
  'audio',
]);
/** The longest participant name taken. */
const MAX_NAME_CHARS = 64;

/** A chat's `messages` (chat completions', POST /tokenize's): 1..MAX_CHAT_MESSAGES of them, MAX_PROMPT_CHARS in all. */
export function parseMessages(raw: unknown): ChatMessage[] | BodyError {
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > MAX_CHAT_MESSAGES)
    return bad('messages', `messages must be a list of 1..${MAX_CHAT_MESSAGES} messages`);
  const messages: ChatMessage[] = [];
  let chars = 0;
  for (const [i, m] of raw.entries()) {
    if (!isObject(m)) return bad(`messages[${i}]`, `messages[${i}] must be an object`);
    // OpenAI refuses a message's other properties: taken, a typo (`nmae`) would change nothing and say nothing.
    const unknown = unknownProperty(m, MESSAGE_FIELDS, `messages[${i}]`);
    if (unknown !== null) return unknown;
    // "developer" is OpenAI's newer name for the system role.
    const role = m.role === 'developer' ? 'system' : m.role;
    // A tool call's history: the swarm calls no tools, so no conversation of its own has one to replay.
    if (role === 'tool' || role === 'function')
      return unsupportedMessage(`messages[${i}].role`, `messages[${i}] is a ${role} message: the swarm does not call tools`);
    for (const param of ['tool_calls', 'function_call'] as const)
      if (m[param] !== undefined && m[param] !== null && !(Array.isArray(m[param]) && m[param].length === 0))
        return unsupportedMessage(`messages[${i}].${param}`, `messages[${i}] holds ${param}: the swarm does not call tools`);
    if (role !== 'system' && role !== 'user' && role !== 'assistant')
      return bad(`messages[${i}].role`, `messages[${i}].role must be system, developer, user or assistant`);
    // An assistant's turn may have no content (OpenAI's own responses give null beside a refusal or a tool call; a
    // client replays them as they came): an empty turn.
    const assistant = role === 'assistant';
    const content = assistant && (m.content === null || m.content === undefined) ? '' : contentText(m.content, assistant);
    // An empty list of parts is no content (OpenAI refuses it); an assistant's may be null instead.
    if (content === null || (Array.isArray(m.content) && m.content.length === 0))
      return bad(
        `messages[${i}].content`,
        `messages[${i}].content must be a string or a non-empty list of text parts${assistant ? ' (and refusal parts)' : ''}`,
      );
    // An assistant's refusal (OpenAI's own answers give it with content null; a client replays them as they came) is
    // what it said, as a refusal part is: before, it was dropped without a word. Audio is none the swarm made.
    const refusal = m.refusal ?? null;
    if (refusal !== null && (!assistant || typeof refusal !== 'string'))
      return bad(`messages[${i}].refusal`, `messages[${i}].refusal must be a string, and only on an assistant message`);
    if (m.audio !== undefined && m.audio !== null)
      return unsupportedMessage(`messages[${i}].audio`, `messages[${i}] holds audio: the swarm does not produce or read audio`);
    const said = refusal === null ? content : content + refusal;
    const name = m.name ?? null;
    if (name !== null && (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME_CHARS))
      return bad(`messages[${i}].name`, `messages[${i}].name must be a string of 1..${MAX_NAME_CHARS} characters`);
    chars += said.length + (name?.length ?? 0);
    messages.push(name === null ? { role, content: said } : { role, content: said, name });
  }
  if (chars > MAX_PROMPT_CHARS) return bad('messages', `the messages hold ${chars} characters; at most ${MAX_PROMPT_CHARS}`);
  return messages;
}

const unsupportedMessage = (param: string, message: string): BodyError => ({ status: 400, code: 'unsupported_value', param, message });

/** Chat's `logprobs` (a boolean) and `top_logprobs` (0..20, only with logprobs: true). */
function chatLogprobs(b: Record<string, unknown>): number | null | BodyError {
  const on = b.logprobs ?? false;
  if (typeof on !== 'boolean') return bad('logprobs', 'logprobs must be a boolean');
  const top = b.top_logprobs ?? null;
  if (top === null) return on ? 0 : null;
  if (typeof top !== 'number' || !Number.isInteger(top) || top < 0 || top > MAX_TOP_LOGPROBS)
    return bad('top_logprobs', `top_logprobs must be an integer in [0, ${MAX_TOP_LOGPROBS}]`);
  if (!on) return bad('top_logprobs', 'top_logprobs needs logprobs: true');
  return top;
}
