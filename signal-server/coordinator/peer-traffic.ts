import type { StageManifest } from '../../shared/model/manifest.js';
import { describeValue } from '../../shared/protocol/json-shape.js';
import { isServerPeer, packFrameMessages, type StepDigest, type StepFailure } from '../../shared/protocol/messages.js';
import { MAX_FAILURE_MESSAGE } from '../../shared/protocol/validate.js';
import type { SessionReport } from './coordinator-types.js';
import { type FallbackOptions, ServerReplicas } from './fallback.js';
import type { GenerationSession } from './generation.js';
import { REPORT_EVENTS, reportTarget, sessionTarget } from './report-allowance.js';
import { refuse, type SwarmState } from './swarm-state.js';

/**
 * What volunteers send about sessions: signalling relayed between peers a
 * session links, frames to and from the server's own replicas (the fallback),
 * and step reports, to the session they name (or, in a cluster, its server).
 */
export class PeerTraffic {
  constructor(private readonly s: SwarmState) {}

  /** The server's replicas of a partition's stages, their messages delivered as a volunteer's would be. */
  serverReplicas(manifest: StageManifest, options: FallbackOptions): ServerReplicas {
    // Their messages come in as a volunteer's would, a turn later (never inside the call that caused them).
    const later = (f: () => void) => setImmediate(f);
    return new ServerReplicas(manifest, options, {
      frame: (from, to, messages) => later(() => this.deliverFrame(from, to, messages)),
      joined: (from, sessionId) => later(() => this.joined(from, sessionId)),
      digest: (from, m) => later(() => this.digest(from, m)),
      logits: (from, m) => later(() => this.logits(from, m.sessionId, m.step, new Float32Array(m.logits), m.resets ?? 0)),
      failed: (from, m) => later(() => this.failed(from, m)),
      // Late or early honest frames are no news; what a stranger or a broken peer sends is.
      rejected: (from, reason, sender) => {
        if (!/^ERR_(NOT_LINKED|STALE_STEP) /.test(reason))
          this.s.log(sender === null ? `${from}: ERR_BAD_FRAME ${reason}` : `${sender}: ERR_BAD_FRAME to ${from}: ${reason}`);
      },
    });
  }

  /** May `from` send signalling to `to`? Only between peers linked by a session. */
  relay(from: string, to: string, data: unknown): boolean {
    const target = this.s.members.get(to);
    if (target === undefined || !this.s.links.linked(from, to)) return false;
    target.link.send('signal', { from, data });
    return true;
  }

  /**
   * One data-channel message from volunteer `from` for the server replica `to`
   * (the fallback has no data channel): only between peers a live session links.
   */
  frame(from: string, to: string, messages: readonly Uint8Array[]): boolean {
    // With several servers, what is for a session another server coordinates goes to that server's replica.
    const here = this.s.cluster === null || !isServerPeer(to) ? messages : this.s.cluster.forwardFrames(from, to, messages);
    if (here.length === 0) return true;
    if (this.s.fallback === null || !isServerPeer(to) || !this.s.links.linked(from, to)) {
      refuse(this.s, from, 'ERR_NOT_LINKED', `frame: ${to} is not a server replica of any session of yours`);
      return false;
    }
    for (const m of here) this.s.fallback.frame(from, to, m);
    return true;
  }

  /** A server replica's messages for `to`: another server replica's, or a volunteer's over its socket. */
  private deliverFrame(from: string, to: string, messages: readonly Uint8Array[]): void {
    if (!this.s.links.linked(from, to)) return;
    if (isServerPeer(to)) for (const m of messages) this.s.fallback?.frame(from, to, m);
    else this.s.members.get(to)?.link.send('frame', { from, data: packFrameMessages(messages) });
  }

  /** The session a message names, if the sender is one of its replicas; otherwise the sender is told. */
  private member(volunteer: string, sessionId: number): GenerationSession | undefined {
    const session = this.s.sessions.get(sessionId) ?? this.s.finished.get(sessionId);
    if (session === undefined || session.stageOf(volunteer) === undefined) {
      refuse(this.s, volunteer, 'ERR_UNKNOWN_SESSION', `session ${sessionId} is not one of yours`);
      return undefined;
    }
    return session;
  }

  /** Another server coordinates the session: the cluster sends the report there. */
  private forwarded(id: string, report: SessionReport): boolean {
    const sid = report.m.sessionId;
    return !this.s.sessions.has(sid) && !this.s.finished.has(sid) && this.s.cluster?.forward(id, report) === true;
  }

  /**
   * Whether an inbound event is a step report its sender owes a live session
   * here (report-allowance.ts): read before the event's handler validates it,
   * so only the session and step are looked at.
   */
  owesReport(id: string | null, event: string, raw: unknown): boolean {
    // A replica's join of a running session opened on it and not joined yet: owed once (SessionJoin.admitFreeJoin; for
    // another server's session, the cluster's RemoteSessions.admitFreeJoin). Before, a busy replica whose other
    // events (signalling, relayed frames) had spent its budget lost its joins: a no-show strike, and a request failed
    // with ERR_NO_ROUTE when its stage had no majority left.
    if (event === 'session:joined') {
      const sessionId = sessionTarget(raw);
      if (id === null || sessionId === null) return false;
      const session = this.s.sessions.get(sessionId);
      if (session !== undefined) return session.admitFreeJoin(id);
      return this.s.cluster?.owesJoin(id, sessionId) ?? false;
    }
    const kind = REPORT_EVENTS.get(event);
    if (id === null || kind === undefined) return false;
    const target = reportTarget(raw);
    if (target === null) return false;
    // A session that just ended is still owed what its replicas computed up to its end (the mesh loop runs ahead of it).
    const session = this.s.sessions.get(target.sessionId) ?? this.s.finished.get(target.sessionId);
    if (session !== undefined) return session.owesReport(id, kind, target.step);
    // Another server's session (a cluster): owed as far as this server can tell, or a fast replica loses its reports.
    return this.s.cluster?.owesReport(id, kind, target.sessionId, target.step) ?? false;
  }

  joined(id: string, sessionId: number, unreached: readonly string[] = []): void {
    if (this.forwarded(id, { event: 'session:joined', m: unreached.length === 0 ? { sessionId } : { sessionId, unreached } })) return;
    this.member(id, sessionId)?.onJoined(id, unreached);
  }

  digest(id: string, m: StepDigest): void {
    if (this.forwarded(id, { event: 'step:digest', m })) return;
    const session = this.member(id, m.sessionId);
    if (session === undefined) return;
    if (session.stageOf(id) !== m.stage) {
      refuse(this.s, id, 'ERR_NOT_ASSIGNED', `step:digest: stage ${m.stage} is not yours`);
      return;
    }
    session.onDigest(id, m.step, [...m.digest], m.computeMs, [...m.input], m.received, m.resets);
  }

  logits(id: string, sessionId: number, step: number, logits: Float32Array, resets = 0): void {
    if (this.forwarded(id, { event: 'step:logits', m: { sessionId, step, logits, resets } })) return;
    this.member(id, sessionId)?.onLogits(id, step, logits, resets);
  }

  failed(id: string, m: StepFailure): void {
    // Its own server judges a refusal as full, whichever server's session it names (see OpenSessions).
    if (m.code === 'ERR_REPLICA_FULL') {
      const judged = this.s.members.get(id)?.opened?.refusedFull(m.sessionId);
      if (judged !== undefined) {
        for (const o of this.s.observers) o.onFullRefusal?.(judged.honest);
        this.s.log(
          `volunteer ${id} refused session ${m.sessionId} as full, holding ${judged.held} of ${judged.limit} sessions: ${judged.honest ? 'its due' : 'not so, a no-show'}`,
        );
      }
    }
    if (this.forwarded(id, { event: 'step:failed', m })) return;
    // Its message is its own text: quoted (JSON), whole (at most MAX_FAILURE_MESSAGE characters, as parsed).
    this.s.log(
      `volunteer ${id} failed step ${m.step} of session ${m.sessionId}: ${m.code} ${describeValue(m.message, MAX_FAILURE_MESSAGE)}`,
    );
    this.member(id, m.sessionId)?.onFailure(id, m.step, m.code, m.message, m.resets ?? 0);
  }
}
