/**
 * Parsers for every inbound message: unknown in, a typed value or a reason out.
 * Socket handlers call these and drop what fails, with a logged reason.
 */

import { MAX_TOP_LOGITS, SCORED_ROW_LENGTH, scoredFormRows, scoredFormsFit, topCountOf, topFormFits } from '../vote/top-logits.js';
import { isSessionLimit, MAX_SESSIONS_PER_REPLICA, parseCapacity } from './capacity.js';
import { isWireErrorCode } from './errors.js';
import { FAULT_KINDS, isFaultKind } from './faults.js';
import { MAX_MESSAGE_BYTES } from './frames.js';
import { describeValue, jsonShapeProblem } from './json-shape.js';
import {
  type ChallengeProof,
  type GenerateRequest,
  type HandshakeAuth,
  ICE_TRANSPORT_POLICIES,
  type IceConfig,
  type IceServer,
  isServerPeer,
  MAX_FRAME_BATCH,
  MAX_FRAME_BATCH_BYTES,
  MAX_NET_DELAY_MS,
  maxScoreRows,
  type NetConditions,
  type ReceivedReport,
  type SessionJoined,
  type SignalOut,
  type StageReady,
  type StepDigest,
  type StepFailure,
  type VolunteerHello,
} from './messages.js';
import { PROTOCOL_VERSION } from './version.js';

export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: string };

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const bad = <T>(reason: string): Parsed<T> => ({ ok: false, reason });

/** Longest string field accepted from a peer (ids, adapter names, model ids). */
export const MAX_STRING = 256;
/** Largest signalling payload (an SDP with many candidates stays far below). */
export const MAX_SIGNAL_BYTES = 16 * 1024;
/** Deepest signalling payload: WebRTC's offers, answers and candidates are two or three levels deep. */
export const MAX_SIGNAL_DEPTH = 8;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function shortString(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && v.length <= MAX_STRING;
}

export function parseHandshake(raw: unknown): Parsed<HandshakeAuth> {
  if (!isObject(raw)) return bad('handshake auth must be an object');
  if (raw.protocol !== PROTOCOL_VERSION) return bad(`protocol ${describeValue(raw.protocol)} is not ${PROTOCOL_VERSION}`);
  if (raw.role !== 'volunteer' && raw.role !== 'requester') return bad('role must be volunteer or requester');
  return ok({ protocol: PROTOCOL_VERSION, role: raw.role });
}

export function parseHello(raw: unknown): Parsed<VolunteerHello> {
  if (!isObject(raw)) return bad('hello must be an object');
  if (raw.backend !== 'wasm' && raw.backend !== 'webgpu') return bad('backend must be wasm or webgpu');
  if (raw.adapter !== null && !shortString(raw.adapter)) return bad(`adapter must be null or a string of at most ${MAX_STRING} characters`);
  const fault = raw.fault ?? null;
  if (fault !== null && !isFaultKind(fault)) return bad(`fault must be null or one of ${FAULT_KINDS.join(', ')}`);
  const clientKey = raw.clientKey ?? null;
  if (clientKey !== null && (typeof clientKey !== 'string' || !/^[A-Za-z0-9-]{8,64}$/.test(clientKey)))
    return bad('clientKey must be null or 8..64 letters, digits and dashes');
  const capacity = parseCapacity(raw.capacity);
  if (!capacity.ok) return bad(capacity.reason);
  return ok({ backend: raw.backend, adapter: raw.adapter, fault, clientKey, capacity: capacity.value });
}

export function parseReady(raw: unknown): Parsed<StageReady> {
  if (!isObject(raw)) return bad('ready must be an object');
  if (!shortString(raw.modelId)) return bad('modelId must be a short string');
  if (typeof raw.stage !== 'number' || !Number.isInteger(raw.stage) || raw.stage < 0 || raw.stage > 4096)
    return bad('stage must be an integer in [0, 4096]');
  if (typeof raw.stepMs !== 'number' || !Number.isFinite(raw.stepMs) || raw.stepMs < 0 || raw.stepMs > 600_000)
    return bad('stepMs must be a number of ms in [0, 600000]');
  if (raw.partition !== undefined && !shortString(raw.partition))
    return bad('partition must be a short string (the key of the assignment)');
  if (raw.sessions !== undefined && !isSessionLimit(raw.sessions))
    return bad(`sessions must be an integer in [1, ${MAX_SESSIONS_PER_REPLICA}] (the most it keeps open at once)`);
  return ok({
    modelId: raw.modelId,
    stage: raw.stage,
    stepMs: raw.stepMs,
    ...(raw.partition === undefined ? {} : { partition: raw.partition }),
    ...(raw.sessions === undefined ? {} : { sessions: raw.sessions }),
  });
}

export function parseSignal(raw: unknown): Parsed<SignalOut> {
  if (!isObject(raw)) return bad('signal must be an object');
  if (!shortString(raw.to)) return bad('signal.to must be a peer id');
  if (raw.data === undefined) return bad('signal.data is missing');
  // WebRTC's offers, answers and candidates are objects; a peer's signalling library reads fields of whatever comes.
  if (!isObject(raw.data)) return bad(`signal.data must be an object, not ${describeValue(raw.data)}`);
  // Shape first, without recursion: a value nested thousands deep would overflow JSON.stringify here, or the relay's
  // encoder after it (either of which ended the server's process).
  const shape = jsonShapeProblem(raw.data, { maxDepth: MAX_SIGNAL_DEPTH, maxBytes: MAX_SIGNAL_BYTES });
  if (shape !== null) return bad(`signal.data ${shape}`);
  const size = JSON.stringify(raw.data).length;
  if (size > MAX_SIGNAL_BYTES) return bad(`signal.data is ${size} bytes, over ${MAX_SIGNAL_BYTES}`);
  return ok({ to: raw.to, data: raw.data });
}

/** Binary data as Socket.IO delivers it (an ArrayBuffer in a browser, a Buffer in Node), as bytes. */
function bytesOf(b: unknown): Uint8Array | null {
  if (b instanceof ArrayBuffer) return new Uint8Array(b);
  if (ArrayBuffer.isView(b)) return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  return null;
}

/**
 * Data-channel messages between a volunteer and a server replica (the
 * fallback), sent over the socket: `peer` is `to` or `from`, which must name a
 * server replica; `data` holds 1 to MAX_FRAME_BATCH messages of at most one
 * frame message each, MAX_FRAME_BATCH_BYTES in all.
 */
export function parseFrameMessage(raw: unknown, peer: 'to' | 'from'): Parsed<{ peer: string; data: Uint8Array[] }> {
  if (!isObject(raw)) return bad('frame must be an object');
  const id = raw[peer];
  if (!shortString(id) || !isServerPeer(id)) return bad(`frame.${peer} must name a server replica`);
  const packed = bytesOf(raw.data);
  if (packed === null) return bad('frame.data must be binary (packed messages)');
  if (packed.byteLength > MAX_FRAME_BATCH_BYTES + 4 * MAX_FRAME_BATCH)
    return bad(`frame.data is ${packed.byteLength} bytes, over ${MAX_FRAME_BATCH_BYTES + 4 * MAX_FRAME_BATCH}`);
  const view = new DataView(packed.buffer, packed.byteOffset, packed.byteLength);
  const data: Uint8Array[] = [];
  for (let at = 0; at < packed.byteLength; ) {
    if (data.length >= MAX_FRAME_BATCH) return bad(`frame.data packs more than ${MAX_FRAME_BATCH} messages`);
    if (at + 4 > packed.byteLength) return bad(`frame.data ends inside a length at byte ${at}`);
    const length = view.getUint32(at, true);
    if (length === 0 || length > MAX_MESSAGE_BYTES)
      return bad(`frame.data[${data.length}] is ${length} bytes; a frame message holds 1 to ${MAX_MESSAGE_BYTES}`);
    if (at + 4 + length > packed.byteLength) return bad(`frame.data[${data.length}] runs past the end`);
    data.push(packed.slice(at + 4, at + 4 + length));
    at += 4 + length;
  }
  if (data.length === 0) return bad('frame.data packs no message');
  return ok({ peer: id, data });
}

const MAX_SESSION_ID = 0xffffffff;
const MAX_STEPS = 1 << 20;

function uint(v: unknown, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;
}

export function parseSessionRef(raw: unknown): Parsed<{ sessionId: number }> {
  if (!isObject(raw) || !uint(raw.sessionId, MAX_SESSION_ID)) return bad('sessionId must be an unsigned 32-bit integer');
  return ok({ sessionId: raw.sessionId });
}

/**
 * Most replicas a stage may have (REDUNDANCY): a volunteer links to the
 * replicas of the stages before and after its own, each a WebRTC connection.
 */
export const MAX_REDUNDANCY = 32;

/** Most neighbours a session:joined may name as unreached: two stages' replicas. */
export const MAX_UNREACHED = 2 * MAX_REDUNDANCY;

export function parseSessionJoined(raw: unknown): Parsed<SessionJoined> {
  const ref = parseSessionRef(raw);
  if (!ref.ok || !isObject(raw) || raw.unreached === undefined) return ref;
  const u = raw.unreached;
  if (!Array.isArray(u) || u.length > MAX_UNREACHED || !u.every(shortString))
    return bad(`unreached must be at most ${MAX_UNREACHED} peer ids`);
  return ok({ sessionId: ref.value.sessionId, unreached: [...new Set(u)] });
}

/** Longest digest accepted (the sampled positions plus the norm). */
export const MAX_DIGEST_VALUES = 64;

export function parseDigest(raw: unknown): Parsed<StepDigest> {
  if (!isObject(raw)) return bad('digest must be an object');
  if (!uint(raw.sessionId, MAX_SESSION_ID) || !uint(raw.step, MAX_STEPS) || !uint(raw.stage, 4096))
    return bad('sessionId, step and stage must be unsigned integers');
  const d = raw.digest;
  if (!isFingerprint(d)) return bad(`digest must be 1..${MAX_DIGEST_VALUES} numbers`);
  if (!isFingerprint(raw.input)) return bad(`input must be 1..${MAX_DIGEST_VALUES} numbers`);
  const r = raw.received;
  if (!Array.isArray(r) || r.length > MAX_RECEIVED_REPORTS)
    return bad(`received must be a list of at most ${MAX_RECEIVED_REPORTS} reports`);
  const received: ReceivedReport[] = [];
  for (const x of r) {
    if (!isObject(x) || !shortString(x.from) || !isFingerprint(x.digest))
      return bad('each received report needs from (a peer id) and digest (numbers)');
    received.push({ from: x.from, digest: x.digest });
  }
  if (!uint(raw.resets, MAX_STEPS)) return bad('resets must be an unsigned integer');
  if (typeof raw.computeMs !== 'number' || !(raw.computeMs >= 0)) return bad('computeMs must be a number ≥ 0');
  return ok({
    resets: raw.resets,
    sessionId: raw.sessionId,
    step: raw.step,
    stage: raw.stage,
    digest: d,
    input: raw.input,
    received,
    computeMs: raw.computeMs,
  });
}

/** Most reports of received frames in one digest: one per previous-stage replica. */
export const MAX_RECEIVED_REPORTS = 16;

function isFingerprint(d: unknown): d is number[] {
  return Array.isArray(d) && d.length > 0 && d.length <= MAX_DIGEST_VALUES && d.every((x) => typeof x === 'number');
}

/** A challenge as a volunteer receives it: hidden states as floats (Node's socket.io client hands binary over as a Buffer). */
export interface ParsedChallenge {
  readonly challengeId: number;
  readonly stage: number;
  readonly tokens: readonly number[];
  readonly hidden: Float32Array;
}

/** Longest challenge input, in positions. */
export const MAX_CHALLENGE_POSITIONS = 64;

export function parseChallenge(raw: unknown, hiddenSize: number, vocabSize: number): Parsed<ParsedChallenge> {
  if (!isObject(raw) || !uint(raw.challengeId, MAX_SESSION_ID) || !uint(raw.stage, 4096))
    return bad('challenge needs challengeId and stage');
  const t = raw.tokens;
  if (!Array.isArray(t) || t.length > MAX_CHALLENGE_POSITIONS || !t.every((x) => uint(x, vocabSize - 1)))
    return bad(`tokens must be at most ${MAX_CHALLENGE_POSITIONS} token ids below ${vocabSize}`);
  const b = raw.hidden;
  const bytes =
    b instanceof ArrayBuffer ? new Uint8Array(b) : ArrayBuffer.isView(b) ? new Uint8Array(b.buffer, b.byteOffset, b.byteLength) : null;
  if (bytes === null) return bad('hidden must be binary');
  if (bytes.byteLength % (4 * hiddenSize) !== 0 || bytes.byteLength > 4 * hiddenSize * MAX_CHALLENGE_POSITIONS)
    return bad(
      `hidden holds ${bytes.byteLength} bytes: not a whole number of ${hiddenSize}-float positions (at most ${MAX_CHALLENGE_POSITIONS})`,
    );
  if ((t.length === 0) === (bytes.byteLength === 0)) return bad('a challenge has either tokens (stage 0) or hidden states');
  return ok({ challengeId: raw.challengeId, stage: raw.stage, tokens: t as number[], hidden: new Float32Array(bytes.slice().buffer) });
}

/** A volunteer's answer to a challenge step. */
export function parseProof(raw: unknown): Parsed<ChallengeProof> {
  if (!isObject(raw) || !uint(raw.challengeId, MAX_SESSION_ID)) return bad('challengeId must be an unsigned 32-bit integer');
  if (!isFingerprint(raw.digest)) return bad(`digest must be 1..${MAX_DIGEST_VALUES} numbers`);
  return ok({ challengeId: raw.challengeId, digest: raw.digest });
}

/**
 * Logits arrive as binary (Node's Buffer on the server). `vocabSize` is the
 * served model's: a length other than whole rows of it, up to maxScoreRows, or
 * a top form's (top-logits.ts) is refused (the session checks the row count or
 * the form its step asked for).
 */
export function parseLogits(
  raw: unknown,
  vocabSize: number,
): Parsed<{ sessionId: number; step: number; logits: Float32Array; resets: number }> {
  if (!isObject(raw)) return bad('logits message must be an object');
  if (!uint(raw.sessionId, MAX_SESSION_ID) || !uint(raw.step, MAX_STEPS)) return bad('sessionId and step must be unsigned integers');
  if (raw.resets !== undefined && !uint(raw.resets, MAX_STEPS)) return bad('resets must be an unsigned integer');
  const bytes = bytesOf(raw.logits);
  if (bytes === null) return bad('logits must be binary');
  const rows = bytes.byteLength / (vocabSize * 4);
  const k = bytes.byteLength % 4 === 0 ? topCountOf(bytes.byteLength / 4) : null;
  const top = k !== null && topFormFits(k, vocabSize);
  const scored = bytes.byteLength / (4 * SCORED_ROW_LENGTH);
  const forms = scoredFormsFit(vocabSize) && Number.isInteger(scored) && scored >= 1 && scored <= scoredFormRows(vocabSize);
  if (!top && !forms && (!Number.isInteger(rows) || rows < 1 || rows > maxScoreRows(vocabSize)))
    return bad(
      `logits hold ${bytes.byteLength} bytes, expected ${vocabSize * 4} (vocabulary ${vocabSize} × float32) times 1 to ${maxScoreRows(vocabSize)} rows, a top form of 1 to ${MAX_TOP_LOGITS} tokens, or scored forms of 1 to ${scoredFormRows(vocabSize)} rows`,
    );
  return ok({
    sessionId: raw.sessionId,
    step: raw.step,
    logits: new Float32Array(bytes.slice().buffer),
    resets: typeof raw.resets === 'number' ? raw.resets : 0,
  });
}

/** The longest step failure message kept (the rest is cut): a volunteer's own words, for the server's log. */
export const MAX_FAILURE_MESSAGE = 1000;

export function parseFailure(raw: unknown): Parsed<StepFailure> {
  if (!isObject(raw) || !uint(raw.sessionId, MAX_SESSION_ID) || !uint(raw.step, MAX_STEPS)) return bad('failure needs sessionId and step');
  if (!isWireErrorCode(raw.code)) return bad('failure code must be one of the wire error codes');
  if (raw.resets !== undefined && !uint(raw.resets, MAX_STEPS)) return bad('resets must be an unsigned integer');
  const message = typeof raw.message === 'string' ? raw.message.slice(0, MAX_FAILURE_MESSAGE) : '';
  return ok({
    sessionId: raw.sessionId,
    step: raw.step,
    code: raw.code,
    message,
    ...(raw.resets === undefined ? {} : { resets: raw.resets }),
  });
}

/** Bounds of a generation request, shared by the chat page and the HTTP API. */
export const MAX_PROMPT_CHARS = 8000;
export const MAX_GENERATE_TOKENS = 512;

export function parseGenerate(raw: unknown): Parsed<GenerateRequest> {
  if (!isObject(raw)) return bad('request must be an object');
  if (!shortString(raw.requestId)) return bad('requestId must be a short string');
  if (typeof raw.prompt !== 'string' || raw.prompt.length === 0 || raw.prompt.length > MAX_PROMPT_CHARS)
    return bad(`prompt must be 1..${MAX_PROMPT_CHARS} characters`);
  if (!uint(raw.maxTokens, MAX_GENERATE_TOKENS) || raw.maxTokens < 1)
    return bad(`maxTokens must be an integer in [1, ${MAX_GENERATE_TOKENS}]`);
  if (typeof raw.temperature !== 'number' || !(raw.temperature >= 0 && raw.temperature <= 2)) return bad('temperature must be in [0, 2]');
  if (typeof raw.topP !== 'number' || !(raw.topP > 0 && raw.topP <= 1)) return bad('topP must be in (0, 1]');
  if (!uint(raw.seed, 0xffffffff)) return bad('seed must be an unsigned 32-bit integer');
  const apiKey = raw.apiKey ?? null;
  if (apiKey !== null && !shortString(apiKey)) return bad('apiKey must be null or a short string');
  return ok({
    apiKey,
    requestId: raw.requestId,
    prompt: raw.prompt,
    maxTokens: raw.maxTokens,
    temperature: raw.temperature,
    topP: raw.topP,
    seed: raw.seed,
  });
}

/** Most ICE servers, and URLs per server, accepted (a deployment names a handful). */
export const MAX_ICE_SERVERS = 16;
export const MAX_ICE_URLS = 8;

const ICE_URL = /^(stun|stuns|turn|turns):[^\s]+$/;

/** A `turn:` or `turns:` URL: the ones that take a user name and credential. */
export function isTurnUrl(url: string): boolean {
  return url.startsWith('turn:') || url.startsWith('turns:');
}

/**
 * A list of RTCIceServer-shaped objects (`urls` a string or a list of
 * `stun:`/`stuns:`/`turn:`/`turns:` URLs, optional `username` and
 * `credential`); `urls` comes out as a list. Reasons never quote a user name
 * or credential, and number the servers from 1, as an operator counts them.
 */
export function parseIceServers(raw: unknown): Parsed<IceServer[]> {
  if (!Array.isArray(raw)) return bad('must be a list of {urls, username?, credential?}');
  if (raw.length > MAX_ICE_SERVERS) return bad(`has ${raw.length} servers, more than ${MAX_ICE_SERVERS}`);
  const servers: IceServer[] = [];
  for (const [i, s] of raw.entries()) {
    if (!isObject(s)) return bad(`server ${i + 1} must be an object {urls, username?, credential?}`);
    const extra = Object.keys(s).find((k) => k !== 'urls' && k !== 'username' && k !== 'credential');
    if (extra !== undefined) return bad(`server ${i + 1} has an unknown field ${JSON.stringify(extra.slice(0, 40))}`);
    const urls = typeof s.urls === 'string' ? [s.urls] : s.urls;
    if (!Array.isArray(urls) || urls.length === 0 || urls.length > MAX_ICE_URLS)
      return bad(`server ${i + 1}: urls must be a URL or a list of 1..${MAX_ICE_URLS} URLs`);
    for (const u of urls)
      if (typeof u !== 'string' || u.length > MAX_STRING || !ICE_URL.test(u))
        return bad(`server ${i + 1}: ${JSON.stringify(String(u).slice(0, 80))} is not a stun:, stuns:, turn: or turns: URL`);
    const server: { urls: string[]; username?: string; credential?: string } = { urls: urls as string[] };
    for (const k of ['username', 'credential'] as const) {
      const v = s[k];
      if (v === undefined) continue;
      if (!shortString(v)) return bad(`server ${i + 1}: ${k} must be a string of 1..${MAX_STRING} characters`);
      server[k] = v;
    }
    servers.push(server);
  }
  return ok(servers);
}

/** The bench's transport delay a volunteer is told (`volunteer:net`): whole milliseconds, 0 to MAX_NET_DELAY_MS. */
export function parseNetConditions(raw: unknown): Parsed<NetConditions> {
  if (!isObject(raw)) return bad('net conditions must be an object');
  const d = raw.delayMs;
  if (typeof d !== 'number' || !Number.isInteger(d) || d < 0 || d > MAX_NET_DELAY_MS)
    return bad(`delayMs must be an integer from 0 to ${MAX_NET_DELAY_MS}`);
  return ok({ delayMs: d });
}

/**
 * The ICE configuration a volunteer is sent (`volunteer:ice`). Every server
 * with a TURN URL must carry a user name and credential: a browser refuses
 * to make a peer connection with one that does not.
 */
export function parseIceConfig(raw: unknown): Parsed<IceConfig> {
  if (!isObject(raw)) return bad('ICE configuration must be an object');
  const servers = parseIceServers(raw.iceServers);
  if (!servers.ok) return bad(`iceServers ${servers.reason}`);
  const policy = raw.iceTransportPolicy;
  if (!(ICE_TRANSPORT_POLICIES as readonly unknown[]).includes(policy))
    return bad(`iceTransportPolicy must be one of ${ICE_TRANSPORT_POLICIES.join(', ')}`);
  const bare = servers.value.findIndex((s) => s.urls.some(isTurnUrl) && (s.username === undefined || s.credential === undefined));
  if (bare !== -1) return bad(`iceServers: server ${bare + 1} has a TURN URL but no username and credential`);
  return ok({ iceServers: servers.value, iceTransportPolicy: policy as IceConfig['iceTransportPolicy'] });
}
