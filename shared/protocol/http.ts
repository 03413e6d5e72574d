/**
 * The JSON bodies of the server's status routes, typed once: the server
 * (signal-server/http/routes.ts) writes them, the pages and tools read them
 * through these parsers, which refuse a body that is not the shape, naming
 * the field.
 */
import type { SwarmStatus, VolunteerView } from './messages.js';
import type { Parsed } from './validate.js';

/** `GET /api/models`: one entry per served model. */
export interface ModelListing {
  readonly modelId: string;
  /** How many stages the model is cut into. */
  readonly stages: number;
  /** Where its manifest.json and stage files are: `${baseUrl}/manifest.json`. */
  readonly baseUrl: string;
  /** Per stage, the bytes of weights a volunteer of it downloads the first time (its checkpoint tensors as served). */
  readonly stageBytes: readonly number[];
}

/** `GET /api/swarm`: the swarm as it stands. */
export interface SwarmListing extends SwarmStatus {
  /** The configured replicas per stage r (0 when no model is served). */
  readonly redundancy: number;
  /** Per stage, its ready volunteers from distinct clients: a route needs `redundancy` of them (one client's tabs count once). */
  readonly routablePerStage: readonly number[];
  /** The volunteers online, with their stage, backend, state and record: at most DASHBOARD_REPLICAS_SHOWN a stage (ready or computing first). */
  readonly list: readonly VolunteerView[];
  /** Generations need an API key (`API_KEYS` is set). */
  readonly apiKeyRequired: boolean;
  /**
   * FALLBACK: whether the server computes a stage short of r ready volunteers (`stage`), the whole request (`whole`),
   * or never (`off`): a swarm short of volunteers still answers, labelled, unless it is `off`.
   */
  readonly fallback: 'off' | 'stage' | 'whole';
}

/** `GET /api/status`: p50 / p95 / p99 of one figure over a window (null with no data). */
export interface Percentiles {
  readonly p50: number | null;
  readonly p95: number | null;
  readonly p99: number | null;
}

export interface WindowFigures {
  readonly windowS: number;
  readonly requests: number;
  /** Share of requests answered (null with no request). */
  readonly answered: number | null;
  readonly ttftMs: Percentiles;
  readonly msPerToken: Percentiles;
  readonly tokens: number;
  /** Share of tokens verified by volunteers (null with no token). */
  readonly verifiedByVolunteers: number | null;
  /** Share of tokens a stage of which the server computed itself, the fallback (null with no token). */
  readonly computedByServer: number | null;
}

/** GET /api/status: the figures a public status page shows. */
export interface ServiceStatus {
  readonly modelId: string;
  readonly redundancy: number;
  readonly volunteers: number;
  /** Volunteers ready (challenge passed) per stage now. */
  readonly readyPerStage: readonly number[];
  /**
   * Per stage, the ready volunteers a new route may take now: one per client, and only those this server can reach
   * (while a cluster's Redis is away, its own). A route needs `redundancy` of them; below, the fallback computes.
   */
  readonly routablePerStage: readonly number[];
  /** The fallback: its mode (FALLBACK), the sessions it may compute at once, and those it computes now. */
  readonly fallback: { readonly mode: 'off' | 'stage' | 'whole'; readonly maxSessions: number; readonly sessions: number };
  /** Over the last 5 minutes, then the last hour. */
  readonly windows: readonly WindowFigures[];
}

/** More entries than any listing this code reads (the server allows far fewer). */
const MAX_LISTED = 100_000;
/** Longest string field read from a listing (ids, adapter names, URLs). */
const MAX_FIELD = 2048;

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const bad = <T>(reason: string): Parsed<T> => ({ ok: false, reason });

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;
const isText = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= MAX_FIELD;

/** Reads `GET /api/models`'s body. */
export function parseModelListings(raw: unknown): Parsed<ModelListing[]> {
  if (!Array.isArray(raw) || raw.length > MAX_LISTED) return bad('/api/models: the body must be an array');
  const out: ModelListing[] = [];
  for (const [i, m] of raw.entries()) {
    const at = `/api/models: [${i}]`;
    if (!isObject(m)) return bad(`${at} must be an object`);
    if (!isText(m.modelId)) return bad(`${at}.modelId must be a non-empty string`);
    if (!isCount(m.stages) || m.stages === 0) return bad(`${at}.stages must be an integer ≥ 1`);
    if (!isText(m.baseUrl)) return bad(`${at}.baseUrl must be a non-empty string`);
    if (!Array.isArray(m.stageBytes) || m.stageBytes.length !== m.stages || !m.stageBytes.every(isCount))
      return bad(`${at}.stageBytes must list ${m.stages} byte counts, one a stage`);
    out.push({ modelId: m.modelId, stages: m.stages, baseUrl: m.baseUrl, stageBytes: m.stageBytes });
  }
  return ok(out);
}

function parseVolunteer(v: unknown, at: string, stages: number): Parsed<VolunteerView> {
  if (!isObject(v)) return bad(`${at} must be an object`);
  if (!isText(v.id)) return bad(`${at}.id must be a non-empty string`);
  if (!isCount(v.stage) || v.stage >= stages) return bad(`${at}.stage must be a stage index below ${stages}`);
  if (v.backend !== 'wasm' && v.backend !== 'webgpu') return bad(`${at}.backend must be wasm or webgpu`);
  if (v.adapter !== null && !isText(v.adapter)) return bad(`${at}.adapter must be null or a string`);
  if (v.state !== 'loading' && v.state !== 'ready' && v.state !== 'busy') return bad(`${at}.state must be loading, ready or busy`);
  if (typeof v.ready !== 'boolean') return bad(`${at}.ready must be a boolean`);
  if (!isCount(v.agreed)) return bad(`${at}.agreed must be a count`);
  if (!isCount(v.disagreed)) return bad(`${at}.disagreed must be a count`);
  if (typeof v.reputation !== 'number' || !Number.isFinite(v.reputation)) return bad(`${at}.reputation must be a number`);
  if (typeof v.established !== 'boolean') return bad(`${at}.established must be a boolean`);
  return ok({
    id: v.id,
    stage: v.stage,
    backend: v.backend,
    adapter: v.adapter,
    state: v.state,
    ready: v.ready,
    agreed: v.agreed,
    disagreed: v.disagreed,
    reputation: v.reputation,
    established: v.established,
  });
}

/** Reads `GET /api/swarm`'s body: every volunteer's stage must be one of `replicasPerStage`'s. */
export function parseSwarmListing(raw: unknown): Parsed<SwarmListing> {
  if (!isObject(raw)) return bad('/api/swarm: the body must be an object');
  if (!isCount(raw.volunteers)) return bad('/api/swarm: volunteers must be a count');
  const perStage = raw.replicasPerStage;
  if (!Array.isArray(perStage) || perStage.length > MAX_LISTED || !perStage.every(isCount))
    return bad('/api/swarm: replicasPerStage must be an array of counts');
  if (!isCount(raw.redundancy)) return bad('/api/swarm: redundancy must be a count');
  const routable = raw.routablePerStage;
  if (!Array.isArray(routable) || routable.length !== perStage.length || !routable.every(isCount))
    return bad('/api/swarm: routablePerStage must be an array of counts, one a stage');
  if (typeof raw.apiKeyRequired !== 'boolean') return bad('/api/swarm: apiKeyRequired must be a boolean');
  const fallback = raw.fallback;
  if (fallback !== 'off' && fallback !== 'stage' && fallback !== 'whole') return bad('/api/swarm: fallback must be off, stage or whole');
  const list = raw.list;
  if (!Array.isArray(list) || list.length > MAX_LISTED) return bad('/api/swarm: list must be an array');
  const volunteers: VolunteerView[] = [];
  for (const [i, v] of list.entries()) {
    const parsed = parseVolunteer(v, `/api/swarm: list[${i}]`, perStage.length);
    if (!parsed.ok) return parsed;
    volunteers.push(parsed.value);
  }
  return ok({
    volunteers: raw.volunteers,
    replicasPerStage: perStage,
    redundancy: raw.redundancy,
    routablePerStage: routable,
    list: volunteers,
    apiKeyRequired: raw.apiKeyRequired,
    fallback,
  });
}

const isShare = (v: unknown): v is number | null => v === null || (typeof v === 'number' && v >= 0 && v <= 1);
const isMs = (v: unknown): v is number | null => v === null || (typeof v === 'number' && Number.isFinite(v) && v >= 0);

function parsePercentiles(v: unknown, at: string): Parsed<Percentiles> {
  if (!isObject(v) || !isMs(v.p50) || !isMs(v.p95) || !isMs(v.p99)) return bad(`${at} must hold p50, p95 and p99 (ms or null)`);
  return ok({ p50: v.p50, p95: v.p95, p99: v.p99 });
}

/** Reads `GET /api/status`'s body (the dashboard's service figures, a status page's). */
export function parseServiceStatus(raw: unknown): Parsed<ServiceStatus> {
  if (!isObject(raw)) return bad('/api/status: the body must be an object');
  if (!isText(raw.modelId)) return bad('/api/status: modelId must be a non-empty string');
  if (!isCount(raw.redundancy) || !isCount(raw.volunteers)) return bad('/api/status: redundancy and volunteers must be counts');
  const ready = raw.readyPerStage;
  if (!Array.isArray(ready) || ready.length > MAX_LISTED || !ready.every(isCount))
    return bad('/api/status: readyPerStage must be an array of counts');
  const routable = raw.routablePerStage;
  if (!Array.isArray(routable) || routable.length !== ready.length || !routable.every(isCount))
    return bad('/api/status: routablePerStage must be an array of counts, one per stage');
  const f = raw.fallback;
  if (!isObject(f) || (f.mode !== 'off' && f.mode !== 'stage' && f.mode !== 'whole') || !isCount(f.maxSessions) || !isCount(f.sessions))
    return bad('/api/status: fallback must hold mode (off, stage or whole), maxSessions and sessions');
  if (!Array.isArray(raw.windows) || raw.windows.length > 16) return bad('/api/status: windows must be an array');
  const windows: WindowFigures[] = [];
  for (const [i, w] of raw.windows.entries()) {
    const at = `/api/status: windows[${i}]`;
    if (!isObject(w) || !isCount(w.windowS) || !isCount(w.requests) || !isCount(w.tokens))
      return bad(`${at} must hold windowS, requests and tokens (counts)`);
    if (!isShare(w.answered) || !isShare(w.verifiedByVolunteers) || !isShare(w.computedByServer))
      return bad(`${at}: answered, verifiedByVolunteers and computedByServer must be shares (0–1) or null`);
    const ttft = parsePercentiles(w.ttftMs, `${at}.ttftMs`);
    if (!ttft.ok) return ttft;
    const perToken = parsePercentiles(w.msPerToken, `${at}.msPerToken`);
    if (!perToken.ok) return perToken;
    windows.push({
      windowS: w.windowS,
      requests: w.requests,
      answered: w.answered,
      ttftMs: ttft.value,
      msPerToken: perToken.value,
      tokens: w.tokens,
      verifiedByVolunteers: w.verifiedByVolunteers,
      computedByServer: w.computedByServer,
    });
  }
  return ok({
    modelId: raw.modelId,
    redundancy: raw.redundancy,
    volunteers: raw.volunteers,
    readyPerStage: ready,
    routablePerStage: routable,
    fallback: { mode: f.mode, maxSessions: f.maxSessions, sessions: f.sessions },
    windows,
  });
}
