// A streamed answer always ends with its final event, whatever the server's bound on unread bytes: a reader that
// keeps up is never taken for one behind. Before (a red-team find), with the bound low, a burst of events written in
// one turn counted as unread: /v1/responses lost its closing events (the SDK's finalResponse() gave an in_progress
// response) and skipped sequence numbers; a chat stream could lose its [DONE]. A real server, real Node volunteers.
import type OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiSwarm, postRaw, startApiSwarm } from '../testing/api-swarm.js';

let s: ApiSwarm;
beforeAll(async () => {
  // Above one event, below the burst of a long answer's closing events (or a response's opening ones, 1 200).
  s = await startApiSwarm('webswarm-stream-ends-', { redundancy: 1, apiMaxConcurrent: 0, streamBehindBytes: 4096 });
});
afterAll(() => s?.close());

/** A Responses stream's events, each with the name its `event:` line gave. */
function namedEvents(raw: string): { event: string; data: { type: string; sequence_number: number } }[] {
  return raw
    .split('\n\n')
    .filter((e) => e.startsWith('event: '))
    .map((e) => {
      const [head, data] = e.split('\n');
      return { event: (head as string).slice(7), data: JSON.parse((data as string).slice(6)) };
    });
}

describe('a stream with a low bound on unread bytes, read as it comes', () => {
  it('/v1/responses: ends with its final event, numbered without gaps, each event named as its type', async () => {
    // No cap: the answer runs to the end of the context, hundreds of tokens, so its closing events are a large burst.
    const a = await postRaw(`${s.server.address().url}/v1/responses`, { input: 'Emma', temperature: 0, stream: true });
    const events = namedEvents(a.raw);
    expect(['response.completed', 'response.incomplete']).toContain(events.at(-1)?.data.type);
    expect(events.map((e) => e.data.sequence_number)).toEqual(events.map((_, i) => i));
    expect(events.every((e) => e.event === e.data.type)).toBe(true);
    const final = await s.client.responses
      .stream({ model: 'austen-2m', input: 'Emma', temperature: 0 } as OpenAI.Responses.ResponseCreateParamsStreaming)
      .finalResponse();
    expect(['completed', 'incomplete']).toContain(final.status);
    expect(final.usage?.output_tokens).toBeGreaterThan(100);
  });

  it('/v1/chat/completions: ends with [DONE]', async () => {
    const a = await postRaw(`${s.server.address().url}/v1/chat/completions`, {
      messages: [{ role: 'user', content: 'Emma' }],
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(a.raw.trimEnd().endsWith('data: [DONE]')).toBe(true);
    expect(a.raw).not.toContain('ERR_SLOW_READER');
  });
});
