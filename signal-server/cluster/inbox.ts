// What another process sends this one (its inbox channel), past the parser:
// messages for our volunteers, and our volunteers' reports back to it.
import { isWireErrorCode } from '../../shared/protocol/errors.js';
import { packFrameMessages } from '../../shared/protocol/messages.js';
import { parseDigest, parseFailure, parseFrameMessage, parseLogits, parseSessionJoined } from '../../shared/protocol/validate.js';
import type { Coordinator } from '../coordinator/coordinator.js';
import { type InboxMessage, ownArrayBuffer, procOfSession, sessionOfMessage } from './messages.js';
import type { RemoteSessions } from './remote-sessions.js';

/** Emits another process's message to our volunteer, if it is ours and the message is that process's to send. */
export function deliverToVolunteer(
  c: Coordinator,
  m: Extract<InboxMessage, { t: 'send' }>,
  remote: RemoteSessions,
  log: (line: string) => void,
): void {
  const link = c.localLink(m.to);
  if (link === undefined) return;
  if (m.event === 'signal') {
    if (typeof m.m.from !== 'string' || !c.links.linked(m.m.from, m.to)) return;
    link.send('signal', { from: m.m.from, data: m.m.data });
    return;
  }
  if (m.event === 'server:error') {
    if (!isWireErrorCode(m.m.code) || typeof m.m.message !== 'string') return;
    link.send('server:error', { code: m.m.code, message: m.m.message.slice(0, 1000) });
    return;
  }
  const sessionId = m.m.sessionId;
  if (typeof sessionId !== 'number' || procOfSession(sessionId) !== m.proc) {
    log(`cluster: process ${m.proc} sent ${m.event} for a session that is not its own`);
    return;
  }
  if (m.event === 'session:open') remote.opened(m.proc, sessionId, m.to, stepsOf(m.m.steps), stepsRunOf(m.m.replayTo));
  else if (m.event === 'session:close') remote.closed(m.proc, sessionId, m.to, stepsRunOf(m.m.steps));
  // The volunteer's own parsers check the rest, as for messages of its own server.
  (link.send as (event: string, m: unknown) => void)(m.event, m.m);
}

/** The steps a session ran as its server said them in its close, or the step it is at in an open (an integer ≥ 0), or undefined. */
function stepsRunOf(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined;
}

/** A session's steps as its server said them in its open (a positive integer), or undefined. */
function stepsOf(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isSafeInteger(v) && v > 0 ? v : undefined;
}

/** A report of another process's volunteer about one of our sessions (process `proc`): parsed again, then the coordinator's. */
export function reportToCoordinator(c: Coordinator, m: Extract<InboxMessage, { t: 'report' }>, proc: number): void {
  const from = m.from;
  switch (m.event) {
    case 'session:joined': {
      const r = parseSessionJoined(m.m);
      if (r.ok && procOfSession(r.value.sessionId) === proc) c.joined(from, r.value.sessionId, r.value.unreached);
      return;
    }
    case 'step:digest': {
      const r = parseDigest(m.m);
      if (r.ok && procOfSession(r.value.sessionId) === proc) c.digest(from, r.value);
      return;
    }
    case 'step:logits': {
      const r = parseLogits({ ...m.m, logits: m.bytes === undefined ? null : ownArrayBuffer(m.bytes) }, c.vocabSize);
      if (r.ok && procOfSession(r.value.sessionId) === proc)
        c.logits(from, r.value.sessionId, r.value.step, r.value.logits, r.value.resets);
      return;
    }
    case 'step:failed': {
      const r = parseFailure(m.m);
      if (r.ok && procOfSession(r.value.sessionId) === proc) c.failed(from, r.value);
      return;
    }
    default:
      m.event satisfies never;
  }
}

/**
 * Data-channel messages between a server replica and a volunteer of two
 * processes (the fallback), past the parser: a server replica of process
 * `m.proc` to our volunteer, for sessions `m.proc` coordinates; or a volunteer
 * that `m.proc` owns (`owner`) to our server replica, for sessions we
 * coordinate. Anything else is dropped; the links are checked as for a local peer.
 */
export function frameFromPeer(
  c: Coordinator,
  m: Extract<InboxMessage, { t: 'frame' }>,
  proc: number,
  owner: number | undefined,
  log: (line: string) => void,
): void {
  const toVolunteer = c.localLink(m.to);
  const bytes = m.data;
  // The server replica at the other end is named: the sender's (to our volunteer), or ours (from theirs).
  const parsed =
    toVolunteer === undefined
      ? parseFrameMessage({ to: m.to, data: bytes }, 'to')
      : parseFrameMessage({ from: m.from, data: bytes }, 'from');
  if (!parsed.ok) {
    log(`cluster: process ${m.proc} sent frames that do not parse: ${parsed.reason}`);
    return;
  }
  const coordinating = toVolunteer === undefined ? proc : m.proc;
  const sessions = parsed.value.data.map(sessionOfMessage);
  if (sessions.some((s) => s === null || procOfSession(s) !== coordinating)) {
    log(`cluster: process ${m.proc} sent frames of a session that ${toVolunteer === undefined ? 'is not ours' : 'is not its own'}`);
    return;
  }
  if (toVolunteer !== undefined) {
    if (c.links.linked(m.from, m.to)) toVolunteer.send('frame', { from: m.from, data: packFrameMessages(parsed.value.data) });
    return;
  }
  // A volunteer of the sending process, for our server replica: the coordinator checks the link and refuses by name.
  if (owner === m.proc) c.frame(m.from, m.to, parsed.value.data);
}
