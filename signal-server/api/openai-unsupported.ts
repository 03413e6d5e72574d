/**
 * OpenAI parameters that the swarm does not implement. Ignoring them would
 * give a client an answer it did not ask for (no tool call, no JSON), so
 * each is refused by name unless its value is the one that changes
 * nothing. (Penalties and logit_bias are not here: the sampler applies
 * them, the reference runner too, see shared/model/sampling.ts.)
 */

/** A refused field: `param` is OpenAI's name for it. */
export interface Unsupported {
  readonly code: 'unsupported_parameter' | 'unsupported_value';
  readonly param: string;
  readonly message: string;
}

export type Endpoint = 'chat' | 'completion';

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
  },
  completion: {},
};

/** The first field of a request body that asks for something the swarm does not do, or null. */
export function unsupportedField(b: Record<string, unknown>, endpoint: Endpoint): Unsupported | null {
  for (const [param, what] of Object.entries(NEVER[endpoint])) if (!absent(b[param])) return notSupported(param, what);
  return endpoint === 'chat' ? chatOnly(b) : completionOnly(b);
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
