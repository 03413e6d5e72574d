/**
 * OpenAI parameters that the swarm does not implement. Ignoring them would
 * give a client an answer it did not ask for (no tool call, no JSON), so
 * each is refused by name unless its value is the one that changes
 * nothing. (Penalties and logit_bias are not here: the sampler applies
 * them, the reference runner too, see shared/model/sampling.ts.)
 */

/** A refused field: `param` is OpenAI's name for it. */
export interface Unsupported {
  readonly code: 'unsupported_parameter' | 'unsupported_value' | 'unknown_parameter';
  readonly param: string;
  readonly message: string;
}

export type Endpoint = 'chat' | 'completion' | 'responses';

const absent = (v: unknown) => v === undefined || v === null;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const notSupported = (param: string, what: string): Unsupported => ({
  code: 'unsupported_parameter',
  param,
  message: `${param} is not supported: ${what}`,
});

const notThisValue = (param: string, message: string): Unsupported => ({ code: 'unsupported_value', param, message });

/** Fields no value of which (other than null) the swarm can honour. */
const NEVER: Record<Endpoint, Record<string, string>> = {
  chat: {
    tools: 'the swarm does not call tools',
    functions: 'the swarm does not call functions',
    audio: 'the swarm answers in text only',
    prediction: 'predicted outputs are not used',
    reasoning_effort: 'the model does not reason in hidden steps',
    web_search_options: 'the swarm does not search the web',
    verbosity: 'the model has no such setting',
  },
  completion: {},
  responses: {
    previous_response_id: 'responses are not stored here: send the whole conversation in input',
    conversation: 'conversations are not stored here: send the whole conversation in input',
    prompt: 'no stored prompt templates are served here',
    reasoning: 'the model does not reason in hidden steps',
    context_management: 'the context is not managed here: send what fits the model',
  },
};

/**
 * Every field of OpenAI's request bodies (its OpenAPI description, CreateChatCompletionRequest and
 * CreateCompletionRequest), and the extensions taken here: `top_k` (vLLM's and llama.cpp's), and
 * `max_completion_tokens` on completions too. Any other field is refused, as OpenAI refuses it: ignored, a typo
 * (`max_token`) or another server's extension (`repetition_penalty`, `min_tokens`) would give an answer that was not
 * asked for, with nothing to say so.
 */
const KNOWN: Record<Endpoint, ReadonlySet<string>> = {
  chat: new Set([
    ...'audio frequency_penalty function_call functions logit_bias logprobs max_completion_tokens max_tokens messages'.split(' '),
    ...'metadata modalities model moderation n parallel_tool_calls prediction presence_penalty prompt_cache_key'.split(' '),
    ...'prompt_cache_options prompt_cache_retention reasoning_effort response_format safety_identifier seed'.split(' '),
    ...'service_tier stop store stream stream_options temperature tool_choice tools top_logprobs top_p user verbosity'.split(' '),
    ...'web_search_options top_k'.split(' '),
  ]),
  completion: new Set([
    ...'best_of echo frequency_penalty logit_bias logprobs max_tokens model n presence_penalty prompt seed stop'.split(' '),
    ...'stream stream_options suffix temperature top_p user top_k max_completion_tokens'.split(' '),
  ]),
  // CreateResponse's fields, and `seed` and `top_k` as on the other endpoints.
  responses: new Set([
    ...'background context_management conversation include input instructions max_output_tokens max_tool_calls'.split(' '),
    ...'metadata model moderation parallel_tool_calls previous_response_id prompt prompt_cache_key prompt_cache_options'.split(' '),
    ...'prompt_cache_retention reasoning safety_identifier service_tier store stream stream_options temperature text'.split(' '),
    ...'tool_choice tools top_logprobs top_p truncation user seed top_k'.split(' '),
  ]),
};

/** The known field a misspelt one is closest to (an edit or two away), if any. */
function closest(field: string, endpoint: Endpoint): string | null {
  let best: string | null = null;
  let bestD = 3;
  for (const k of KNOWN[endpoint]) {
    const d = editDistance(field, k, bestD);
    if (d < bestD) [best, bestD] = [k, d];
  }
  return best;
}

/** Levenshtein distance of a and b, or `cap` once it is at least that (field names are short). */
function editDistance(a: string, b: string, cap: number): number {
  if (Math.abs(a.length - b.length) >= cap || a.length > 64) return cap;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++)
      row[j] = Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return Math.min(prev[b.length] as number, cap);
}

/** The first field of a body, not null, that OpenAI's API does not have (nor the extensions taken here), or null. */
export function unknownField(b: Record<string, unknown>, endpoint: Endpoint): Unsupported | null {
  for (const field of Object.keys(b)) {
    // null is "not given", for any field: what clients that write every field of both endpoints send.
    if (KNOWN[endpoint].has(field) || b[field] === null) continue;
    const name = JSON.stringify(field.length > 64 ? `${field.slice(0, 64)}…` : field);
    const near = closest(field, endpoint);
    return {
      code: 'unknown_parameter',
      param: field.slice(0, 64),
      message: `Unrecognized request argument supplied: ${name}${near === null ? '' : ` (did you mean ${near}?)`}`,
    };
  }
  return null;
}

/** The first field of a request body that asks for something the swarm does not do, or that no API has, or null. */
export function unsupportedField(b: Record<string, unknown>, endpoint: Endpoint): Unsupported | null {
  const unknown = unknownField(b, endpoint);
  if (unknown !== null) return unknown;
  for (const [param, what] of Object.entries(NEVER[endpoint])) if (!absent(b[param])) return notSupported(param, what);
  return endpoint === 'chat' ? chatOnly(b) : endpoint === 'completion' ? completionOnly(b) : responsesOnly(b);
}

function chatOnly(b: Record<string, unknown>): Unsupported | null {
  // "none" asks for what the swarm does anyway: no call.
  for (const param of ['tool_choice', 'function_call'] as const) {
    const v = b[param];
    if (!absent(v) && v !== 'none') return notThisValue(param, `${param} must be "none": the swarm does not call tools`);
  }
  if (b.parallel_tool_calls === true) return notThisValue('parallel_tool_calls', 'the swarm does not call tools');
  const rf = b.response_format;
  if (!absent(rf) && !(isObject(rf) && rf.type === 'text'))
    return notThisValue('response_format', 'response_format must be {"type": "text"}: the swarm does not constrain its output to JSON');
  const m = b.modalities;
  if (!absent(m) && !(Array.isArray(m) && m.every((x) => x === 'text')))
    return notThisValue('modalities', 'modalities must be ["text"]: the swarm answers in text only');
  return null;
}

function completionOnly(b: Record<string, unknown>): Unsupported | null {
  if (!absent(b.suffix) && b.suffix !== '') return notSupported('suffix', 'the model does not insert text before a suffix');
  return null;
}

function responsesOnly(b: Record<string, unknown>): Unsupported | null {
  if (!absent(b.tools) && !(Array.isArray(b.tools) && b.tools.length === 0)) return notSupported('tools', 'the swarm does not call tools');
  // With no tools, "auto" calls none either.
  if (!absent(b.tool_choice) && b.tool_choice !== 'none' && b.tool_choice !== 'auto')
    return notThisValue('tool_choice', 'tool_choice must be "none" or "auto": the swarm does not call tools');
  const text = b.text;
  if (!absent(text)) {
    if (!isObject(text)) return notThisValue('text', 'text must be an object: {"format": {"type": "text"}}');
    if (!absent(text.format) && !(isObject(text.format) && text.format.type === 'text'))
      return notThisValue('text.format', 'text.format must be {"type": "text"}: the swarm does not constrain its output to JSON');
    if (!absent(text.verbosity)) return notThisValue('text.verbosity', 'text.verbosity is not supported: the model has no such setting');
  }
  if (!absent(b.include) && !(Array.isArray(b.include) && b.include.length === 0))
    return notThisValue(
      'include',
      'include must be empty: nothing more is offered on this endpoint (log-probabilities are, on /v1/chat/completions)',
    );
  if (!absent(b.top_logprobs) && b.top_logprobs !== 0)
    return notThisValue('top_logprobs', 'top_logprobs is not offered on this endpoint: /v1/chat/completions gives log-probabilities');
  if (!absent(b.truncation) && b.truncation !== 'disabled')
    return notThisValue('truncation', 'truncation must be "disabled": the start of a conversation is never dropped silently here');
  if (b.store === true)
    return notThisValue('store', 'responses are not stored here (none can be retrieved later): send store: false or leave it out');
  if (b.background === true) return notThisValue('background', 'responses are not run in the background here: nothing is stored to poll');
  return null;
}
