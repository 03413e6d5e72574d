// A volunteer in Node for integration tests, benchmarks and attacks: a real
// socket.io client speaking the real protocol to a real server, the real
// replica (ReplicaCore) on real onnxruntime sessions of the stage it builds
// as a browser tab does (web/compute/: only its tensors, fetched from the model
// folder by range requests and checked by sha256; the stage checked against
// the manifest). One thing differs from a
// browser tab, and only because Node has no WebRTC here: activation frames
// travel as `signal` messages through the server's relay (which relays only
// between linked peers, exactly as for WebRTC signalling). The e2e specs cover
// the data channels. Options turn it hostile: wrong or no challenge answers,
// sessions taken and never joined, outputs changed — without announcing a
// fault, as an attacker would not.
import { io, type Socket } from 'socket.io-client';
import { parseManifest, type StageManifest } from '../../shared/model/manifest.js';
import { CachingExecutor, hostOnly } from '../../shared/model/pipeline.js';
import {
  type Backend,
  type ClientToServerEvents,
  isServerPeer,
  packFrameMessages,
  type ServerToClientEvents,
  type SessionOpen,
  type StageChallenge,
  type StepDigest,
  type StepLogits,
  type VolunteerCapacity,
  type VolunteerScore,
} from '../../shared/protocol/messages.js';
import { parseChallenge, parseFrameMessage } from '../../shared/protocol/validate.js';
import { PROTOCOL_VERSION } from '../../shared/protocol/version.js';
import { decodeWant, isWant } from '../../shared/swarm/fanout.js';
import type { FaultBehaviour } from '../../shared/swarm/faults.js';
import { FrameBatcher } from '../../shared/swarm/frame-batcher.js';
import { isSessionLimit, MAX_SESSIONS_PER_REPLICA, ReplicaCore } from '../../shared/swarm/replica-core.js';
import { buildVerifiedStage, type StageTensors } from '../../web/compute/stage-build.js';
import { fetchStageWeights } from '../../web/compute/stage-weights.js';
import { OrtExecutor } from '../reference/ort-executor.js';

/** A liar's outputs: the logits of the last stage spell `tokens`, one-hot, whatever the input (other stages pass through). */
export function spellingLogits(tokens: readonly number[], vocabSize?: number): FaultBehaviour {
  return {
    delayMs: 0,
    output: (step, d, isLogits) => {
      if (!isLogits) return d;
      // Rows of `vocabSize` (a prompt's first positions scored in one step): row r is the prompt's position step + r + 1.
      const vocab = vocabSize ?? d.length;
      const out = new Float32Array(d.length).fill(-50);
      for (let r = 0; r * vocab < d.length; r++) out[r * vocab + ((tokens[step + r] ?? 1) % vocab)] = 50;
      return out;
    },
  };
}

export type NodeSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

export interface NodeVolunteerOptions {
  /** The address to connect from (127.0.0.x: distinct clients on one machine). */
  readonly localAddress?: string;
  /** Headers of its WebSocket handshake (an X-Forwarded-For, say). */
  readonly extraHeaders?: Readonly<Record<string, string>>;
  readonly clientKey?: string | null;
  /** How it answers challenge steps: computed, a made-up fingerprint, never, or computed only the first time. */
  readonly challenges?: 'honest' | 'garbage' | 'never' | 'honest-once';
  /**
   * False: takes sessions but never says it joined (a silent joiner); a function: whether it joins the
   * `n`th session opened on it (0 first), say one in eleven missed.
   */
  readonly joins?: boolean | ((m: SessionOpen, n: number) => boolean);
  /** The neighbours its session:joined says it could not reach (true or not); none when absent. */
  readonly unreached?: (m: SessionOpen) => readonly string[];
  /** Changes its outputs (not announced to the server). */
  readonly fault?: FaultBehaviour | null;
  /** Says it is ready right after its assignment, without downloading anything. */
  readonly readyAtOnce?: boolean;
  /** Changes its reports to the coordinator before they are sent (a liar about what it received, say). */
  readonly tamper?: (m: StepDigest) => StepDigest;
  /** Changes its step:logits before they are sent (other rows, a row's argmax moved), its digests left as they were. */
  readonly tamperLogits?: (m: StepLogits) => StepLogits;
  /** Runs these stage bytes instead of the file it downloaded (another weight precision, say), and says nothing. */
  readonly stageFile?: (stage: number) => Uint8Array;
  /**
   * Where to connect again when the server goes away (as a page behind a load balancer
   * reconnects to another server of a cluster); null or absent: it stays away.
   */
  readonly reconnect?: () => string | null;
  /** The capacity report of its hello (absent: none, as a browser that says nothing); a hostile one may send anything. */
  readonly capacity?: unknown;
  /** The backend its hello claims (it computes with onnxruntime's WASM in Node whatever it says): 'wasm' when absent. */
  readonly backend?: Backend;
  /** Holds its answer to a challenge (computed at once) until this resolves: an answer sent late, on purpose. */
  readonly holdProof?: (stage: number) => Promise<void>;
  /**
   * What its ready says of the sessions it keeps open at once (StageReady.sessions; any value, for hostile tests);
   * its replica holds that many where it is a session limit (1..16), else MAX_SESSIONS_PER_REPLICA. Absent: not said.
   */
  readonly sessions?: unknown;
}

/** How long a volunteer whose server went away waits before connecting again. */
const RECONNECT_DELAY_MS = 200;

/** Frames relayed as signalling: { f: base64 of one data-channel message }. */
interface RelayedFrame {
  readonly f: string;
}

function isRelayedFrame(d: unknown): d is RelayedFrame {
  return typeof d === 'object' && d !== null && typeof (d as { f?: unknown }).f === 'string';
}

/** Downloads tried this many times: a reused keep-alive connection may be reset on a machine starved of CPU. */
const FETCH_ATTEMPTS = 3;

async function fetchRetrying(url: string): Promise<Response> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fetch(url);
    } catch (e) {
      if (attempt >= FETCH_ATTEMPTS) throw e;
      await new Promise((r) => setTimeout(r, 100 * attempt));
    }
  }
}

export class NodeVolunteer {
  socket: NodeSocket;
  /** Connections made after the first (its server went away). */
  reconnections = 0;
  id: string | null = null;
  stage: number | null = null;
  ready = false;
  steps = 0;
  /** Why its last stage load failed, if it did. */
  loadError: string | null = null;
  readonly errors: { code: string; message: string }[] = [];
  /** The last score the coordinator sent it (its record as the page shows it), or null before one. */
  lastScore: VolunteerScore | null = null;
  /** Sessions opened on it so far (joined or not). */
  sessionsOpened = 0;
  /** Steps it began (as stage 0) on the last stage's token, before the coordinator's: the mesh loop at work. */
  meshSteps = 0;
  /** Inputs the coordinator sent for a step beyond the one after the last it reported (a scored prompt's, sent ahead). */
  inputsAhead = 0;
  /** Per session, the last step it reported. */
  private readonly reportedUpTo = new Map<number, number>();
  /** Wants (fan-out: shared/swarm/fanout.ts) its replica sent, as `to kind`. */
  readonly wants: string[] = [];
  /** Why its replica dropped frames (the last 200): what a hostile peer's frames met. */
  readonly rejections: string[] = [];
  private core: ReplicaCore | null = null;
  /** Sessions its replica holds now (opened, not closed), and the most it held at once. */
  readonly openNow = new Set<number>();
  mostOpen = 0;
  /** Sessions its replica refused as full (ERR_REPLICA_FULL). */
  fullRefusals = 0;
  /** The partition of its last assignment (null: the server names none). */
  partition: string | null = null;
  /** Assignments received, and the chain of their loads. */
  private assigned = 0;
  private loading: Promise<void> = Promise.resolve();
  private manifest: StageManifest | null = null;
  private challengesAnswered = 0;
  private executor: OrtExecutor | null = null;
  private leaveAt: number | null = null;
  /** Frames for the server's replicas, batched as the page batches them. */
  private readonly toServer = new FrameBatcher((to, batch) => this.socket.emit('frame', { to, data: packFrameMessages(batch) }));

  /** Leaves (its socket disconnects) once it has computed `steps` more session steps. */
  leaveAfter(steps: number): void {
    this.leaveAt = this.steps + steps;
  }

  private closed = false;

  constructor(
    public url: string,
    private readonly options: NodeVolunteerOptions = {},
  ) {
    this.socket = this.connect(url);
  }

  private connect(url: string): NodeSocket {
    const options = this.options;
    const socket = io(url, {
      auth: { protocol: PROTOCOL_VERSION, role: 'volunteer' },
      transports: ['websocket'],
      reconnection: false,
      forceNew: true,
      ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }),
      ...(options.extraHeaders === undefined ? {} : { extraHeaders: { ...options.extraHeaders } }),
    }) as NodeSocket;
    const s = socket;
    s.on('disconnect', (reason) => {
      const next = reason === 'io client disconnect' || this.closed ? null : (options.reconnect?.() ?? null);
      if (next === null) return;
      setTimeout(() => {
        if (this.closed) return;
        this.reconnections += 1;
        this.url = next;
        this.socket = this.connect(next);
      }, RECONNECT_DELAY_MS);
    });
    s.on('connect', () =>
      s.emit('volunteer:hello', {
        backend: options.backend ?? 'wasm',
        adapter: null,
        fault: null,
        clientKey: options.clientKey ?? null,
        ...(options.capacity === undefined ? {} : { capacity: options.capacity as VolunteerCapacity }),
      }),
    );
    s.on('volunteer:welcome', ({ volunteerId }) => {
      this.id = volunteerId;
    });
    // A load cut off (the server closed while it downloaded) is kept, not thrown into nowhere.
    // One load after another, as a tab loads them: the last assignment wins (a re-partition sends a new one).
    s.on('volunteer:assign', (a) => {
      this.assigned += 1;
      const mine = this.assigned;
      this.loading = this.loading.then(() =>
        mine !== this.assigned
          ? undefined
          : this.load(a.baseUrl, a.stage, a.modelId, a.partition).catch((e: unknown) => {
              this.loadError = (e as Error).message;
            }),
      );
    });
    s.on('volunteer:challenge', (raw) => void this.answer(raw));
    s.on('server:error', (e) => this.errors.push(e));
    s.on('volunteer:score', (m) => {
      this.lastScore = m;
    });
    s.on('session:open', (m) => {
      if (this.core === null || !this.core.open(m)) return;
      this.openNow.add(m.sessionId);
      this.mostOpen = Math.max(this.mostOpen, this.openNow.size);
      const unreached = options.unreached?.(m) ?? [];
      // As the page does: the fan-out asks around an assigned sender it joined without.
      if (unreached.length > 0) this.core.unreached(m.sessionId, unreached);
      const n = this.sessionsOpened++;
      if (typeof options.joins === 'function' ? options.joins(m, n) : options.joins !== false)
        s.emit('session:joined', unreached.length === 0 ? { sessionId: m.sessionId } : { sessionId: m.sessionId, unreached });
    });
    s.on('session:update', (m) => this.core?.update(m));
    s.on('session:close', ({ sessionId }) => {
      this.openNow.delete(sessionId);
      this.core?.close(sessionId);
    });
    s.on('step:input', (m) => {
      if (m.step > (this.reportedUpTo.get(m.sessionId) ?? -1) + 1) this.inputsAhead += 1;
      this.core?.input(m);
    });
    s.on('signal', ({ from, data }) => {
      if (isRelayedFrame(data)) this.core?.frame(from, new Uint8Array(Buffer.from(data.f, 'base64')));
    });
    // The server's own replica of a neighbouring stage (the fallback) sends its frames as the page gets them.
    s.on('frame', (raw) => {
      const m = parseFrameMessage(raw, 'from');
      if (m.ok) for (const d of m.value.data) this.core?.frame(m.value.peer, new Uint8Array(d));
    });
    return socket;
  }

  private async load(baseUrl: string, stage: number, modelId: string, partition: string | undefined): Promise<void> {
    this.stage = stage;
    this.ready = false;
    this.partition = partition ?? null;
    const echo = partition === undefined ? {} : { partition };
    if (this.options.readyAtOnce === true) {
      this.socket.emit('volunteer:ready', { modelId, stage, stepMs: 0.01, ...echo });
      return;
    }
    const base = new URL(baseUrl, this.url).toString();
    const socket = this.socket;
    const manifest: StageManifest = parseManifest('manifest.json', await (await fetchRetrying(`${base}/manifest.json`)).json());
    const entry = manifest.stages[stage];
    if (entry === undefined) throw new Error(`no stage ${stage}`);
    // As a browser volunteer does: only the stage's tensors from the model folder, verified, built and checked against the manifest.
    const weights = await fetchStageWeights(base, manifest, [stage], undefined, null);
    const { bytes } = await buildVerifiedStage(manifest, weights.stages[0] as StageTensors);
    this.manifest = manifest;
    await this.executor?.release();
    // A one-stage executor answering for the stage index the replica asks for (a test may swap in a file of its own).
    const single = await OrtExecutor.create([this.options.stageFile?.(stage) ?? new Uint8Array(bytes)]);
    this.executor = single;
    this.core = new ReplicaCore(
      manifest,
      stage,
      new CachingExecutor(manifest, { run: (_stage, feeds, fetches) => single.run(0, hostOnly(feeds), fetches) }),
      {
        frames: (to, messages) => {
          for (const m of messages) {
            const w = isWant(m) ? decodeWant(m) : null;
            if (w !== null) this.wants.push(typeof w === 'string' ? w : `${to} ${w.kind}`);
          }
          if (isServerPeer(to)) this.toServer.push(to, messages);
          else for (const m of messages) socket.emit('signal', { to, data: { f: Buffer.from(m).toString('base64') } });
        },
        digest: (m) => {
          this.reportedUpTo.set(m.sessionId, Math.max(m.step, this.reportedUpTo.get(m.sessionId) ?? -1));
          socket.emit('step:digest', this.options.tamper?.(m) ?? m);
        },
        logits: (m) => socket.emit('step:logits', this.options.tamperLogits?.(m) ?? m),
        failed: (m) => {
          if (m.code === 'ERR_REPLICA_FULL') this.fullRefusals += 1;
          socket.emit('step:failed', m);
        },
        computed: () => {
          this.steps += 1;
          // The tab closes: its socket goes, and nothing more comes from it.
          if (this.leaveAt !== null && this.steps >= this.leaveAt) this.socket.disconnect();
        },
        meshStep: () => {
          this.meshSteps += 1;
        },
        rejected: (reason) => {
          this.rejections.push(reason);
          if (this.rejections.length > 200) this.rejections.shift();
        },
      },
      this.options.fault ?? null,
      undefined,
      undefined,
      isSessionLimit(this.options.sessions) ? this.options.sessions : MAX_SESSIONS_PER_REPLICA,
    );
    this.openNow.clear();
    const says = this.options.sessions === undefined ? {} : { sessions: this.options.sessions as number };
    socket.emit('volunteer:ready', { modelId, stage, stepMs: 1, ...echo, ...says });
    this.ready = true;
  }

  private async answer(raw: StageChallenge): Promise<void> {
    const how = this.options.challenges ?? 'honest';
    if (how === 'never') return;
    this.challengesAnswered += 1;
    const lie = how === 'garbage' || (how === 'honest-once' && this.challengesAnswered > 1);
    if (lie || this.core === null || this.manifest === null) {
      this.socket.emit('volunteer:proof', { challengeId: raw.challengeId, digest: Array.from({ length: 33 }, (_, i) => i) });
      return;
    }
    const m = parseChallenge(raw, this.manifest.model.hiddenSize, this.manifest.model.vocabSize);
    if (!m.ok) throw new Error(`challenge: ${m.reason}`);
    let digest: number[];
    try {
      digest = await this.core.challenge(m.value);
    } catch (e) {
      // A spot-check still computing when the test closes this volunteer (its runtime released): nobody to answer.
      if (this.closed) return;
      throw e;
    }
    await this.options.holdProof?.(m.value.stage);
    this.socket.emit('volunteer:proof', { challengeId: m.value.challengeId, digest });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.socket.disconnect();
    await this.executor?.release();
    this.executor = null;
  }
}
