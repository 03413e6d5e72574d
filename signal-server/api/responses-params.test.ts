// POST /v1/responses's body read as the chat it asks for (responses-params.ts): what each form of input becomes.
import { describe, expect, it } from 'vitest';
import { MAX_GENERATE_TOKENS } from '../../shared/protocol/validate.js';
import { parseResponsesBody, type ResponsesParams } from './responses-params.js';

const parse = (body: Record<string, unknown>) => {
  const p = parseResponsesBody(body, ['austen-2m']);
  if ('status' in p) throw new Error(`refused: ${p.message}`);
  return p as ResponsesParams;
};

describe('parseResponsesBody', () => {
  it('a string input is one user message; no max_output_tokens runs to the end of the context', () => {
    const p = parse({ input: 'Emma' });
    expect(p.chat.messages).toEqual([{ role: 'user', content: 'Emma' }]);
    expect([p.chat.fitToContext, p.chat.maxTokens, p.maxOutputTokens]).toEqual([true, MAX_GENERATE_TOKENS, null]);
    expect([p.chat.n, p.chat.stop, p.chat.logprobs, p.chat.stream]).toEqual([1, [], null, false]);
    expect(parse({ input: 'Emma', max_output_tokens: 7 })).toMatchObject({
      maxOutputTokens: 7,
      chat: { maxTokens: 7, fitToContext: false },
    });
  });

  it('instructions come first as the system message; developer is system; text parts are joined; replayed outputs are the assistant turn', () => {
    const p = parse({
      instructions: 'Be brief.',
      input: [
        { type: 'message', role: 'developer', content: 'Speak as Emma.' },
        {
          role: 'user',
          content: [
            { type: 'input_text', text: 'Hello, ' },
            { type: 'input_text', text: 'Miss Woodhouse' },
          ],
        },
        {
          type: 'message',
          id: 'msg_1',
          status: 'completed',
          role: 'assistant',
          content: [{ type: 'output_text', text: 'Good day.', annotations: [] }],
        },
        { role: 'assistant', content: [{ type: 'refusal', refusal: 'I cannot say.' }] },
        { role: 'user', content: 'Why?' },
      ],
    });
    expect(p.chat.messages).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'system', content: 'Speak as Emma.' },
      { role: 'user', content: 'Hello, Miss Woodhouse' },
      { role: 'assistant', content: 'Good day.' },
      { role: 'assistant', content: 'I cannot say.' },
      { role: 'user', content: 'Why?' },
    ]);
    expect(p.instructions).toBe('Be brief.');
    // Empty instructions add no empty system turn.
    expect(parse({ instructions: '', input: 'x' }).chat.messages).toEqual([{ role: 'user', content: 'x' }]);
  });

  it("says back the request's settings: metadata, temperature and top_p as given, tool choice", () => {
    const p = parse({ input: 'x', metadata: { a: '1' }, temperature: 0.5, top_p: 0, tool_choice: 'none', tools: [], user: 'u' });
    expect(p).toMatchObject({ metadata: { a: '1' }, temperature: 0.5, topP: 0, toolChoice: 'none', user: 'u' });
    // top_p 0 is the most likely token alone for the sampler.
    expect([p.chat.topP, p.chat.topK]).toEqual([1, 1]);
    expect(
      parse({
        input: 'x',
        store: false,
        parallel_tool_calls: false,
        text: { format: { type: 'text' } },
        include: [],
        truncation: 'disabled',
      }),
    ).toMatchObject({
      parallelToolCalls: false,
      toolChoice: 'auto',
    });
  });

  it('refuses what it cannot read, naming the field', () => {
    const refused = (body: unknown) => {
      const p = parseResponsesBody(body, ['austen-2m']);
      return 'status' in p ? [p.code, p.param] : null;
    };
    expect(refused(null)).toEqual(['invalid_request', null]);
    expect(refused({ input: 7 })).toEqual(['invalid_request', 'input']);
    expect(refused({ input: [] })).toEqual(['invalid_request', 'input']);
    expect(refused({ input: ['x'] })).toEqual(['invalid_request', 'input[0]']);
    expect(refused({ input: [{ role: 'user' }] })).toEqual(['invalid_request', 'input[0].content']);
    expect(refused({ input: [{ role: 'user', content: [{ type: 'input_text' }] }] })).toEqual(['invalid_request', 'input[0].content[0]']);
    expect(refused({ input: [{ type: 'reasoning', summary: [] }] })).toEqual(['unsupported_value', 'input[0].type']);
    expect(refused({ input: 'x', instructions: 3 })).toEqual(['invalid_request', 'instructions']);
    expect(refused({ input: 'x', metadata: { k: 5 } })).toEqual(['invalid_request', 'metadata']);
    expect(refused({ input: 'x', metadata: { ['k'.repeat(65)]: 'v' } })).toEqual(['invalid_request', 'metadata']);
    expect(refused({ input: 'x', user: 5 })).toEqual(['invalid_request', 'user']);
    expect(refused({ input: 'x', tool_choice: 'required' })).toEqual(['unsupported_value', 'tool_choice']);
    expect(refused({ input: 'x', text: { verbosity: 'low' } })).toEqual(['unsupported_value', 'text.verbosity']);
    expect(refused({ input: 'x', background: true })).toEqual(['unsupported_value', 'background']);
    expect(refused({ input: 'x', reasoning: { effort: 'low' } })).toEqual(['unsupported_parameter', 'reasoning']);
    expect(refused({ input: 'x', top_logprobs: 3 })).toEqual(['unsupported_value', 'top_logprobs']);
    expect(refused({ input: 'x', stream_options: { include_obfuscation: false } })).toEqual(['invalid_request', 'stream_options']);
    // Red-team finds: an item type no string (was a 500), a property no message has, no parts, a user's output_text,
    // settings of the wrong type or with a typo inside, chat's stream option.
    for (const type of [{ toString: 1 }, [{ toString: 'x' }]])
      expect(refused({ input: [{ type, role: 'user', content: 'x' }] })).toEqual(['unsupported_value', 'input[0].type']);
    expect(refused({ input: [{ role: 'user', content: 'x', nmae: 'Emma' }] })).toEqual(['unknown_parameter', 'input[0].nmae']);
    expect(refused({ input: [{ role: 'user', content: [] }] })).toEqual(['invalid_request', 'input[0].content']);
    expect(refused({ input: [{ role: 'user', content: [{ type: 'output_text', text: 'x' }] }] })).toEqual([
      'invalid_request',
      'input[0].content[0]',
    ]);
    expect(refused({ input: 'x', service_tier: 12 })).toEqual(['invalid_request', 'service_tier']);
    expect(refused({ input: 'x', max_tool_calls: 'lots' })).toEqual(['invalid_request', 'max_tool_calls']);
    expect(refused({ input: 'x', text: { format: { type: 'text' }, fromat: 1 } })).toEqual(['unknown_parameter', 'text.fromat']);
    expect(refused({ input: 'x', text: { format: { type: 'text', strict: true } } })).toEqual(['unknown_parameter', 'text.format.strict']);
    expect(refused({ input: 'x', stream: true, stream_options: { include_usage: true } })).toEqual([
      'unknown_parameter',
      'stream_options.include_usage',
    ]);
    expect(refused({ input: 'x', stream: true, stream_options: { include_obfuscation: 'no' } })).toEqual([
      'invalid_request',
      'stream_options.include_obfuscation',
    ]);
    expect(
      refused({ input: 'x', stream: true, stream_options: { include_obfuscation: false }, service_tier: 'auto', max_tool_calls: 2 }),
    ).toBeNull();
    expect(refused({ input: 'x', instructions: 'i'.repeat(7000), max_output_tokens: 5 })).toBeNull();
    expect(refused({ input: 'x'.repeat(1001), instructions: 'i'.repeat(7000) })).toEqual(['invalid_request', 'input']);
  });
});
