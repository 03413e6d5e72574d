import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../shared/model/sampling.js';
import { encodeFrame } from '../../shared/protocol/frames.js';
import { encodeWant } from '../../shared/swarm/fanout.js';
import {
  decode,
  decodeInbox,
  encodeMessage,
  floatBytes,
  type InboxMessage,
  MAX_LINKS_LISTED,
  MAX_OPEN_LISTED,
  ownArrayBuffer,
  parseBusMessage,
  parseInboxMessage,
  parsePartitionPlan,
  parseVolunteerState,
  procOfSession,
  SESSIONS_PER_PROC,
  sessionOfMessage,
} from './messages.js';

const state = {
  id: 'v1',
  keys: ['key:abc', 'addr:10.0.0.1'],
  backend: 'wasm',
  adapter: null,
  stage: 2,
  ready: true,
  stepMs: 1.5,
  proven: true,
  joinedAt: 1_700_000_000_000,
  agreed: 12,
  disagreed: 1,
  sessions: 2,
  partition: '0-2,2-4',
  vouched: true,
};

describe("the cluster's messages", () => {
  it('reads what a server publishes', () => {
    expect(parseVolunteerState(state)).toEqual(state);
    // A session limit its ready gave (a stage with graph capture): mirrored with it, so no server routes it more.
    expect(parseVolunteerState({ ...state, sessionLimit: 3 })).toEqual({ ...state, sessionLimit: 3 });
    // Not ready past its load deadline: no process counts it as a seat.
    expect(parseVolunteerState({ ...state, ready: false, stale: true })).toEqual({ ...state, ready: false, stale: true });
    // What it offers to hold: every server plans the cluster's moves with it.
    const capacity = { memoryBytes: 2 ** 30, bufferLimitBytes: 100_000 };
    expect(parseVolunteerState({ ...state, ...capacity })).toEqual({ ...state, ...capacity });
    expect(parseVolunteerState({ ...state, memoryBytes: 2 ** 30, bufferLimitBytes: null })).toEqual({
      ...state,
      memoryBytes: 2 ** 30,
      bufferLimitBytes: null,
    });
    expect(parseBusMessage({ t: 'vol', proc: 3, v: state })).toEqual({ t: 'vol', proc: 3, v: state });
    expect(parseBusMessage({ t: 'ban', proc: 1, key: 'key:abc', untilMs: 5 })).toEqual({ t: 'ban', proc: 1, key: 'key:abc', untilMs: 5 });
    expect(
      parseInboxMessage({ t: 'send', proc: 2, to: 'v1', event: 'step:input', m: { sessionId: 1, step: 0, tokens: [1] } }),
    ).not.toBeNull();
    expect(parseInboxMessage({ t: 'audit', proc: 2, id: 'v1', agreed: false })).toEqual({ t: 'audit', proc: 2, id: 'v1', agreed: false });
    const noShow = { t: 'noshow', proc: 2, id: 'v1', sessionId: 131_073, why: 'absent' };
    expect(parseInboxMessage(noShow)).toEqual(noShow);
    // Refused as full: the volunteer's own process judges it.
    expect(parseInboxMessage({ ...noShow, why: 'full' })).toEqual({ ...noShow, why: 'full' });
    const progress = { t: 'progress', proc: 2, sessionId: 131_073, step: 8 };
    expect(parseInboxMessage(progress)).toEqual(progress);
  });

  it('refuses any other shape, field by field', () => {
    expect(parseVolunteerState({ ...state, backend: 'cuda' })).toBeNull();
    expect(parseVolunteerState({ ...state, keys: ['a', 'b', 'c', 'd', 'e'] })).toBeNull();
    expect(parseVolunteerState({ ...state, stage: -1 })).toBeNull();
    expect(parseVolunteerState({ ...state, agreed: 1.5 })).toBeNull();
    expect(parseVolunteerState({ ...state, sessions: -1 })).toBeNull();
    for (const sessionLimit of [0, 17, 2.5, '3', null]) expect(parseVolunteerState({ ...state, sessionLimit })).toBeNull();
    for (const memoryBytes of [-1, 1.5, '1', null]) expect(parseVolunteerState({ ...state, memoryBytes })).toBeNull();
    for (const bufferLimitBytes of [-1, 1.5, '1']) expect(parseVolunteerState({ ...state, bufferLimitBytes })).toBeNull();
    for (const stale of [false, 1, 'yes', null]) expect(parseVolunteerState({ ...state, stale })).toBeNull();
    expect(parseVolunteerState({ ...state, id: 'x'.repeat(300) })).toBeNull();
    expect(parseBusMessage({ t: 'vol', proc: 0, v: state })).toBeNull();
    expect(parseBusMessage({ t: 'vol', proc: 70_000, v: state })).toBeNull();
    expect(parseBusMessage({ t: 'nope', proc: 1 })).toBeNull();
    expect(parseBusMessage([1, 2])).toBeNull();
    // Only the events a coordinator sends a volunteer in a session are relayed: never a challenge or an assignment.
    expect(parseInboxMessage({ t: 'send', proc: 2, to: 'v1', event: 'volunteer:assign', m: {} })).toBeNull();
    expect(parseInboxMessage({ t: 'send', proc: 2, to: 'v1', event: 'volunteer:challenge', m: {} })).toBeNull();
    expect(parseInboxMessage({ t: 'send', proc: 2, to: 'v1', event: 'step:input', m: 'text' })).toBeNull();
    expect(parseInboxMessage({ t: 'report', proc: 2, from: 'v1', event: 'chat:generate', m: {} })).toBeNull();
    expect(parseInboxMessage({ t: 'link', proc: 2, a: 'v1', b: 'v1' })).toBeNull();
    expect(parseInboxMessage({ t: 'audit', proc: 2, id: 'v1', agreed: 'yes' })).toBeNull();
    // With the client's record after the sender counted it (Roster.judge): whole counts only.
    const summed = { t: 'audit', proc: 2, id: 'v1', agreed: false, sum: { agreed: 4, disagreed: 1 } };
    expect(parseInboxMessage(summed)).toEqual(summed);
    for (const sum of [null, 3, { agreed: 4 }, { agreed: -1, disagreed: 0 }, { agreed: 1.5, disagreed: 0 }, { agreed: '4', disagreed: 0 }])
      expect(parseInboxMessage({ t: 'audit', proc: 2, id: 'v1', agreed: false, sum })).toBeNull();
    expect(parseInboxMessage({ t: 'noshow', proc: 2, id: 'v1', sessionId: 1, why: 'asleep' })).toBeNull();
    expect(parseInboxMessage({ t: 'noshow', proc: 2, id: 'v1', sessionId: -1, why: 'absent' })).toBeNull();
    for (const step of [-1, 1.5, '8', null, 2 ** 32]) expect(parseInboxMessage({ t: 'progress', proc: 2, sessionId: 1, step })).toBeNull();
    expect(parseInboxMessage({ t: 'progress', proc: 2, sessionId: -1, step: 0 })).toBeNull();
  });

  it("reads a process's sessions open on the receiver's volunteers: session ids with volunteer ids, bounded", () => {
    const open = {
      t: 'open',
      proc: 2,
      sessions: [
        [131_073, ['v1', 'v2']],
        [131_074, []],
      ],
    };
    expect(parseInboxMessage(open)).toEqual(open);
    expect(parseInboxMessage({ t: 'open', proc: 2, sessions: [] })).toEqual({ t: 'open', proc: 2, sessions: [] });
    for (const sessions of [
      null,
      {},
      [[1]],
      [[-1, ['v1']]],
      [[1.5, ['v1']]],
      [[1, 'v1']],
      [[1, ['']]],
      [[1, [7]]],
      [[1, Array.from({ length: 257 }, (_, i) => `v${i}`)]],
      Array.from({ length: MAX_OPEN_LISTED + 1 }, (_, i) => [i, []]),
    ])
      expect(parseInboxMessage({ t: 'open', proc: 2, sessions })).toBeNull();
  });

  it("reads a process's links with the receiver's volunteers: two volunteer ids and a count each, bounded", () => {
    const links = {
      t: 'links',
      proc: 2,
      pairs: [
        ['v1', 'v2', 1],
        ['v3', 'v1', 4],
      ],
    };
    expect(parseInboxMessage(links)).toEqual(links);
    expect(parseInboxMessage({ t: 'links', proc: 2, pairs: [] })).toEqual({ t: 'links', proc: 2, pairs: [] });
    for (const pairs of [
      null,
      {},
      [['v1', 'v2']],
      [['v1', 'v1', 1]],
      [['v1', 'v2', 0]],
      [['v1', 'v2', 1.5]],
      [['v1', 'v2', MAX_OPEN_LISTED + 1]],
      [['', 'v2', 1]],
      [['v1', 7, 1]],
      [['v1', 'v2', 1, 'x']],
      Array.from({ length: MAX_LINKS_LISTED + 1 }, (_, i) => [`a${i}`, `b${i}`, 1]),
    ])
      expect(parseInboxMessage({ t: 'links', proc: 2, pairs })).toBeNull();
  });

  it("reads a leader's re-partition plan: contiguous ranges from layer 0, each volunteer once on one of their stages", () => {
    const plan = {
      t: 'plan',
      proc: 2,
      n: 7,
      ranges: [
        [0, 3],
        [3, 4],
      ],
      stageOf: [
        ['v1', 0],
        ['v2', 1],
      ],
    };
    expect(parseBusMessage(plan)).toEqual(plan);
    expect(parsePartitionPlan({ n: 1, ranges: [[0, 4]], stageOf: [] })).toEqual({ n: 1, ranges: [[0, 4]], stageOf: [] });
    for (const bad of [
      { ranges: [[1, 4]] },
      {
        ranges: [
          [0, 2],
          [3, 4],
        ],
      },
      {
        ranges: [
          [0, 2],
          [2, 2],
        ],
      },
      { ranges: [] },
      { ranges: [[0, 2, 4]] },
      { ranges: 'r0-4' },
      { stageOf: [['v1', 2]] },
      {
        stageOf: [
          ['v1', 0],
          ['v1', 1],
        ],
      },
      { stageOf: [['', 0]] },
      { stageOf: [['v1', -1]] },
      { stageOf: { v1: 0 } },
      { n: -1 },
      { n: 1.5 },
    ])
      expect(parseBusMessage({ ...plan, ...bad }), JSON.stringify(bad)).toBeNull();
    // Without the partition its stage is of, or whether it proved one once: not read (protocol 4).
    const { partition: _p, ...noPartition } = state;
    const { vouched: _v, ...noVouched } = state;
    expect(parseVolunteerState(noPartition)).toBeNull();
    expect(parseVolunteerState(noVouched)).toBeNull();
    expect(parseVolunteerState({ ...state, vouched: 'yes' })).toBeNull();
  });

  it('decodes JSON only, within a size', () => {
    expect(decode('{"t":"bye","proc":4}', parseBusMessage)).toEqual({ t: 'bye', proc: 4 });
    expect(decode('{"t":"bye",', parseBusMessage)).toBeNull();
    expect(decode(`{"t":"bye","proc":4,"x":"${'a'.repeat(5 * 1024 * 1024)}"}`, parseBusMessage)).toBeNull();
  });

  it('carries logits as raw bytes after a JSON header, and session ids with their process', () => {
    const f = new Float32Array([1.5, -2, 3.25]);
    const report: InboxMessage = {
      t: 'report',
      proc: 2,
      from: 'v1',
      event: 'step:logits',
      m: { sessionId: 2 * SESSIONS_PER_PROC + 1, step: 3, resets: 0 },
      bytes: floatBytes(f),
    };
    const sent = encodeMessage(report) as Buffer;
    // The 12 bytes of logits follow the header as they are (base64 in JSON would be 16, and 4.5 × the CPU).
    expect(sent.subarray(sent.byteLength - 12)).toEqual(Buffer.from(f.buffer));
    const back = decodeInbox(sent);
    expect(back).toMatchObject({ ...report, bytes: expect.anything() });
    expect(new Float32Array(ownArrayBuffer((back as { bytes: Uint8Array }).bytes))).toEqual(f);
    // A message without bytes stays JSON, and reads back the same.
    const audit: InboxMessage = { t: 'audit', proc: 2, id: 'v1', agreed: true };
    expect(encodeMessage(audit)).toBe(JSON.stringify(audit));
    expect(decodeInbox(Buffer.from(encodeMessage(audit)))).toEqual(audit);
    expect(procOfSession(7 * SESSIONS_PER_PROC + 123)).toBe(7);
    expect(procOfSession(5)).toBe(0);
  });

  it('refuses a message with bytes that is cut short, too long, lies about its header, or has bytes where none belong (or none where they must)', () => {
    const f = floatBytes(new Float32Array(4));
    const report: InboxMessage = { t: 'report', proc: 2, from: 'v1', event: 'step:logits', m: { sessionId: 1, step: 0 }, bytes: f };
    const sent = encodeMessage(report) as Buffer;
    expect(decodeInbox(sent.subarray(0, 3))).toBeNull();
    expect(decodeInbox(sent.subarray(0, 20))).toBeNull();
    const lying = Buffer.from(sent);
    lying.writeUInt32LE(sent.byteLength, 1);
    expect(decodeInbox(lying)).toBeNull();
    expect(decodeInbox(Buffer.concat([sent, Buffer.alloc(5 * 1024 * 1024)]))).toBeNull();
    // Bytes on a message that has none, and a step:logits or frames without them.
    const digest = encodeMessage({ ...report, event: 'step:digest' }) as Buffer;
    expect(decodeInbox(digest)).toBeNull();
    const { bytes: _, ...bare } = report;
    expect(decodeInbox(Buffer.from(encodeMessage(bare)))).toBeNull();
    expect(parseInboxMessage({ t: 'frame', proc: 3, from: 'v1', to: 'server:1', data: 'AAAA' })).toBeNull();
    expect(decodeInbox(Buffer.from('{"t":"audit"'))).toBeNull();
  });

  it('never throws on a message with bytes mutated or cut anywhere, and gives bytes to a step:logits report or frames only', () => {
    const random = seededRandom(7);
    const sent = [
      encodeMessage({ t: 'report', proc: 2, from: 'v1', event: 'step:logits', m: { sessionId: 1, step: 0 }, bytes: new Uint8Array(16) }),
      encodeMessage({ t: 'frame', proc: 3, from: 'v1', to: 'server:1', data: Uint8Array.of(1, 2, 3) }),
    ] as Buffer[];
    for (let i = 0; i < 5_000; i++) {
      const b = Buffer.from(sent[i % 2] as Buffer);
      for (let k = 0; k < 1 + (i % 3); k++) b[Math.floor(random() * b.byteLength)] = Math.floor(random() * 256);
      const m = decodeInbox(random() < 0.3 ? b.subarray(0, Math.floor(random() * b.byteLength)) : b);
      if (m !== null) expect(m.t === 'frame' || (m.t === 'report' && m.event === 'step:logits' && m.bytes !== undefined)).toBe(true);
    }
  });

  it("reads a frame message between a server replica and another server's volunteer, and the session a message names", () => {
    const m: InboxMessage = { t: 'frame', proc: 3, from: 'v1', to: 'server:1', data: Uint8Array.of(1, 2, 3) };
    expect(decodeInbox(encodeMessage(m) as Buffer)).toEqual({ ...m, data: Buffer.from([1, 2, 3]) });
    expect(decodeInbox(encodeMessage({ ...m, from: '' }) as Buffer)).toBeNull();
    const sessionId = 5 * SESSIONS_PER_PROC + 9;
    const [chunk] = encodeFrame({ sessionId, step: 4, stage: 1, replica: 0, dims: [1, 2], data: Float32Array.of(1, 2) });
    expect(sessionOfMessage(chunk as Uint8Array)).toBe(sessionId);
    expect(sessionOfMessage(encodeWant({ kind: 'frames', sessionId, fromStep: 0, stage: 2, replica: 1, era: 0 }))).toBe(sessionId);
    expect(procOfSession(sessionId)).toBe(5);
    // Anything else names no session (it stays with the server it came to, whose replica refuses it).
    expect(sessionOfMessage(new Uint8Array(64))).toBeNull();
    expect(sessionOfMessage(new Uint8Array(8))).toBeNull();
  });
});
