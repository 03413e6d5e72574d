// POST /v1/responses's body (OpenAI's Responses API), checked and read as the chat it asks for: `instructions` a
// system message before `input`'s messages. What the swarm cannot honour is refused by name (openai-unsupported.ts).
import type { ChatMessage } from '../../shared/model/tokenizer.js';
import { describeValue } from '../../shared/protocol/json-shape.js';
import { MAX_PROMPT_CHARS } from '../../shared/protocol/validate.js';
import {
  type BodyError,
  bad,
  type ChatParams,
  common,
  isObject,
  MAX_CHAT_MESSAGES,
  NOT_AN_OBJECT,
  unknownProperty,
} from './openai-params.js';

/** The most metadata pairs, and their keys' and values' lengths (OpenAI's limits). */
export const MAX_METADATA_PAIRS = 16;
const MAX_METADATA_KEY = 64;
const MAX_METADATA_VALUE = 512;

export interface ResponsesParams {
  /** The conversation to answer, with the sampling asked for (one choice, no stop sequences, no log-probabilities). */
  readonly chat: ChatParams;
  /** What the response object says back. */
  readonly instructions: string | null;
  readonly metadata: Readonly<Record<string, string>> | null;
  /** max_output_tokens as given (null: none, the context's end). */
  readonly maxOutputTokens: number | null;
  readonly user: string | null;
  /** temperature and top_p as given (their defaults, 1, when not): the sampler's own may differ (top_p 0 is top_k 1). */
  readonly temperature: number;
  readonly topP: number;
  readonly parallelToolCalls: boolean;
  readonly toolChoice: 'none' | 'auto';
}

const unsupportedValue = (param: string, message: string): BodyError => ({ status: 400, code: 'unsupported_value', param, message });

/**
 * A content part's text: input_text (anyone's); for the assistant also output_text and a refusal (an earlier answer
 * replayed), as OpenAI takes them.
 */
function partText(part: unknown, role: ChatMessage['role']): string | null {
  if (!isObject(part)) return null;
  if (part.type === 'input_text' && typeof part.text === 'string') return part.text;
  if (role !== 'assistant') return null;
  if (part.type === 'output_text' && typeof part.text === 'string') return part.text;
  if (part.type === 'refusal' && typeof part.refusal === 'string') return part.refusal;
  return null;
}

/** An input message's properties: a message's, and those of an output message replayed (its id, status and phase). */
const ITEM_FIELDS: ReadonlySet<string> = new Set(['type', 'role', 'content', 'id', 'status', 'phase']);

/** One item of `input` as a chat message: a message (EasyInputMessage, or an output message replayed), or why not. */
function inputMessage(item: unknown, i: number): ChatMessage | BodyError {
  const at = `input[${i}]`;
  if (!isObject(item)) return bad(at, `${at} must be an object`);
  const type = item.type ?? 'message';
  // Function calls and their outputs, reasoning, tool results: the swarm calls no tools, and holds no such items.
  if (type !== 'message') return unsupportedValue(`${at}.type`, `${at} is a ${describeValue(type, 40)} item: only messages are taken here`);
  // As on chat completions: a typo (`nmae`) would change nothing and say nothing.
  const unknown = unknownProperty(item, ITEM_FIELDS, at);
  if (unknown !== null) return unknown;
  const role = item.role === 'developer' ? 'system' : item.role;
  if (role !== 'system' && role !== 'user' && role !== 'assistant')
    return bad(`${at}.role`, `${at}.role must be system, developer, user or assistant`);
  const content = item.content;
  if (typeof content === 'string') return { role, content };
  if (!Array.isArray(content) || content.length === 0)
    return bad(`${at}.content`, `${at}.content must be a string or a non-empty list of text parts`);
  let text = '';
  for (const [j, part] of content.entries()) {
    const t = partText(part, role);
    if (t !== null) {
      text += t;
      continue;
    }
    const kind = isObject(part) && typeof part.type === 'string' ? part.type : null;
    if (kind !== null && /^input_(image|file|audio)$/.test(kind))
      return unsupportedValue(`${at}.content[${j}].type`, `${at}.content[${j}] is an ${kind} part: the model reads text only`);
    return bad(
      `${at}.content[${j}]`,
      `${at}.content[${j}] must be an input_text part with its text${role === 'assistant' ? ' (or an output_text or a refusal: an earlier answer)' : ''}`,
    );
  }
  return { role, content: text };
}

/** `input`: a string (one user message) or 1..MAX_CHAT_MESSAGES items. */
function inputMessages(raw: unknown): ChatMessage[] | BodyError {
  if (typeof raw === 'string') return raw.length === 0 ? bad('input', 'input must not be empty') : [{ role: 'user', content: raw }];
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > MAX_CHAT_MESSAGES)
    return bad('input', `input must be a string or a list of 1..${MAX_CHAT_MESSAGES} messages`);
  const messages: ChatMessage[] = [];
  for (const [i, item] of raw.entries()) {
    const m = inputMessage(item, i);
    if ('status' in m) return m;
    messages.push(m);
  }
  return messages;
}

/** A refusal rather than a value (metadata's values are strings, a refusal's status a number). */
function isBodyError(v: unknown): v is BodyError {
  return isObject(v) && typeof v.status === 'number' && typeof v.message === 'string';
}

/** metadata: up to 16 string pairs, keys of 1..64 characters, values of at most 512. */
function parseMetadata(raw: unknown): Record<string, string> | null | BodyError {
  if (raw === undefined || raw === null) return null;
  const shape = `metadata must be an object of up to ${MAX_METADATA_PAIRS} string values (keys of 1..${MAX_METADATA_KEY} characters, values of at most ${MAX_METADATA_VALUE})`;
  if (!isObject(raw)) return bad('metadata', shape);
  const pairs = Object.entries(raw);
  if (pairs.length > MAX_METADATA_PAIRS) return bad('metadata', `${shape}: it holds ${pairs.length}`);
  for (const [k, v] of pairs)
    if (k.length === 0 || k.length > MAX_METADATA_KEY || typeof v !== 'string' || v.length > MAX_METADATA_VALUE)
      return bad('metadata', `${shape}: ${JSON.stringify(k.slice(0, MAX_METADATA_KEY))} is not`);
  return Object.fromEntries(pairs) as Record<string, string>;
}

const SERVICE_TIERS = ['auto', 'default', 'flex', 'scale', 'priority'];

/** Settings that change nothing here, checked all the same (a typo among them would otherwise say nothing). */
function settingsProblem(raw: Record<string, unknown>): BodyError | null {
  const tier = raw.service_tier ?? null;
  if (tier !== null && !SERVICE_TIERS.includes(tier as string))
    return bad('service_tier', `service_tier must be one of ${SERVICE_TIERS.join(', ')}`);
  const calls = raw.max_tool_calls ?? null;
  if (calls !== null && !(typeof calls === 'number' && Number.isSafeInteger(calls) && calls >= 1))
    return bad('max_tool_calls', 'max_tool_calls must be an integer ≥ 1');
  const nested: [string, unknown, ReadonlySet<string>][] = [
    ['text', raw.text, new Set(['format', 'verbosity'])],
    ['text.format', isObject(raw.text) ? raw.text.format : undefined, new Set(['type'])],
    // OpenAI's Responses API has include_obfuscation here; include_usage is chat's (the usage always comes).
    ['stream_options', raw.stream_options, new Set(['include_obfuscation'])],
  ];
  for (const [field, value, known] of nested) {
    const unknown = isObject(value) ? unknownProperty(value, known, field) : null;
    if (unknown !== null) return unknown;
  }
  const obfuscation = isObject(raw.stream_options) ? raw.stream_options.include_obfuscation : undefined;
  if (obfuscation !== undefined && obfuscation !== null && typeof obfuscation !== 'boolean')
    return bad('stream_options.include_obfuscation', 'stream_options.include_obfuscation must be a boolean');
  return null;
}

/** POST /v1/responses's body. */
export function parseResponsesBody(raw: unknown, modelIds: readonly string[]): ResponsesParams | BodyError {
  if (!isObject(raw)) return NOT_AN_OBJECT;
  const c = common(raw, modelIds, 'responses');
  if ('status' in c) return c;
  if (raw.input === undefined || raw.input === null) return bad('input', 'input is required: a string or a list of messages');
  const input = inputMessages(raw.input);
  if (!Array.isArray(input)) return input;
  const instructions = raw.instructions ?? null;
  if (instructions !== null && typeof instructions !== 'string') return bad('instructions', 'instructions must be a string');
  const messages: ChatMessage[] =
    instructions === null || instructions === '' ? input : [{ role: 'system', content: instructions }, ...input];
  const chars = messages.reduce((a, m) => a + m.content.length, 0);
  if (chars > MAX_PROMPT_CHARS) return bad('input', `instructions and input hold ${chars} characters; at most ${MAX_PROMPT_CHARS}`);
  const metadata = parseMetadata(raw.metadata);
  if (isBodyError(metadata)) return metadata;
  if (raw.parallel_tool_calls !== undefined && raw.parallel_tool_calls !== null && typeof raw.parallel_tool_calls !== 'boolean')
    return bad('parallel_tool_calls', 'parallel_tool_calls must be a boolean');
  const fields = settingsProblem(raw);
  if (fields !== null) return fields;
  return {
    chat: { ...c, kind: 'chat', messages, logprobs: null },
    instructions: typeof instructions === 'string' ? instructions : null,
    metadata,
    maxOutputTokens: c.fitToContext ? null : c.maxTokens,
    user: typeof raw.user === 'string' ? raw.user : null,
    temperature: c.temperature,
    topP: typeof raw.top_p === 'number' ? raw.top_p : 1,
    parallelToolCalls: raw.parallel_tool_calls !== false,
    toolChoice: raw.tool_choice === 'none' ? 'none' : 'auto',
  };
}
