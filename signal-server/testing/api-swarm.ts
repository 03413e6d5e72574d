// A real server on port 0 serving austen-2m in one stage, its r volunteers Node clients running the real replica
// (node-volunteer.ts) on onnxruntime-web's WASM backend, the reference runner on the same stage, and the official
// `openai` client against the server's HTTP API: the rig of the API tests that check answers against the reference.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { expect } from 'vitest';
import type { FallbackMode } from '../coordinator/fallback.js';
import type { Logger } from '../log.js';
import { ensureStages, partitionKey } from '../models/model-folder.js';
import { ReferenceRunner } from '../reference/reference-runner.js';
import { createSignalServer, type SignalServer } from '../server.js';
import { NodeVolunteer, type NodeVolunteerOptions } from './node-volunteer.js';

export const API_MODEL = 'austen-2m';

/** What a test reads of an answer's `webswarm` field: its tokens, and each token's votes per stage. */
export interface WebswarmBody {
  readonly webswarm: {
    readonly tokens: number[];
    readonly votes: { readonly votes: { readonly agreed: number; readonly disagreed: number; readonly server?: boolean }[] }[];
  };
}
const READY_TIMEOUT_MS = 10_000;

export interface ApiSwarm {
  readonly server: SignalServer;
  readonly reference: ReferenceRunner;
  readonly client: OpenAI;
  /** The volunteers, ready (each counts the steps it computed). */
  readonly volunteers: readonly NodeVolunteer[];
  close(): Promise<void>;
}

/** Starts the rig with `redundancy` volunteers, all ready; `apiMaxConcurrent` generations a client may run (0: no limit). */
export async function startApiSwarm(
  prefix: string,
  o: {
    redundancy: number;
    apiMaxConcurrent: number;
    scoreRows?: number;
    stepTimeoutMs?: number;
    /** The server's fallback (FALLBACK; off unless given). */
    fallback?: FallbackMode;
    volunteer?: (i: number) => NodeVolunteerOptions;
    /** The server's bound on a streamed answer's unread bytes (its default unless given). */
    streamBehindBytes?: number;
    logger?: Logger;
  },
): Promise<ApiSwarm> {
  const cache = mkdtempSync(join(tmpdir(), prefix));
  const { dir, manifest } = await ensureStages(`models/${API_MODEL}`, { stages: 1 }, cache);
  const server = createSignalServer({
    port: 0,
    host: '127.0.0.1',
    webRoot: null,
    models: [{ dir, manifest, key: partitionKey(manifest.model.numLayers, { stages: 1 }) }],
    redundancy: o.redundancy,
    routeWaitMs: READY_TIMEOUT_MS,
    ratePerMinute: 0,
    apiMaxConcurrent: o.apiMaxConcurrent,
    ...(o.scoreRows === undefined ? {} : { scoreRows: o.scoreRows }),
    ...(o.stepTimeoutMs === undefined ? {} : { stepTimeoutMs: o.stepTimeoutMs }),
    ...(o.fallback === undefined ? {} : { fallback: o.fallback }),
    ...(o.streamBehindBytes === undefined ? {} : { streamBehindBytes: o.streamBehindBytes }),
    ...(o.logger === undefined ? {} : { logger: o.logger }),
  });
  await server.ready;
  const volunteers = Array.from({ length: o.redundancy }, (_, i) => new NodeVolunteer(server.address().url, o.volunteer?.(i)));
  const close = async () => {
    for (const v of volunteers) await v.close();
    await server.close();
    rmSync(cache, { recursive: true, force: true });
  };
  try {
    // Ready once each has answered its challenge steps.
    const until = Date.now() + READY_TIMEOUT_MS;
    while ((server.coordinator?.volunteers().filter((v) => v.ready).length ?? 0) < o.redundancy) {
      if (Date.now() > until) throw new Error(`${o.redundancy} volunteers not ready within ${READY_TIMEOUT_MS} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const reference = await ReferenceRunner.fromStageDir(dir);
    const client = new OpenAI({ baseURL: `${server.address().url}/v1`, apiKey: 'none', maxRetries: 0 });
    return {
      server,
      reference,
      client,
      volunteers,
      close: async () => {
        await reference.close();
        await close();
      },
    };
  } catch (e) {
    await close();
    throw e;
  }
}

/** A response as text and parsed (null where it is not JSON). */
export interface RawAnswer {
  readonly status: number;
  readonly raw: string;
  // biome-ignore lint/suspicious/noExplicitAny: a response body of any shape, checked field by field
  readonly body: any;
}

/** A raw POST to `url` (no client-side checks): a string body goes as it is written (1e400 stays 1e400). */
export async function postRaw(url: string, body: unknown, signal?: AbortSignal): Promise<RawAnswer> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
  const raw = await res.text();
  let parsed: unknown = null;
  try {
    parsed = JSON.parse(raw);
  } catch {
    parsed = null;
  }
  return { status: res.status, raw, body: parsed };
}

/** The most sessions the server's coordinator was seen running at once (sampled every millisecond) until `until` settles. */
export async function mostSessionsDuring(server: SignalServer, until: Promise<unknown>): Promise<number> {
  let most = 0;
  let watching = true;
  const watch = (async () => {
    while (watching) {
      most = Math.max(most, server.coordinator?.activeSessions ?? 0);
      await new Promise((r) => setTimeout(r, 1));
    }
  })();
  await until.catch(() => {});
  watching = false;
  await watch;
  return most;
}

/** A server-sent-event stream's events in order, `[DONE]` as the string. */
export function streamEvents(raw: string): unknown[] {
  return raw
    .split('\n\n')
    .filter((e) => e.startsWith('data: '))
    .map((e) => e.slice('data: '.length))
    .map((d) => (d === '[DONE]' ? d : JSON.parse(d)));
}

/** Nothing runs on `server`, and the client holds none of its slots: `n` = `max` (its API_MAX_CONCURRENT) at once fits again. */
export async function expectAllSlotsBack(server: SignalServer, max: number): Promise<void> {
  await expect.poll(() => server.coordinator?.activeSessions ?? -1, { timeout: 10_000 }).toBe(0);
  const r = await postRaw(`${server.address().url}/v1/completions`, { model: API_MODEL, prompt: 'Emma', max_tokens: 1, n: max });
  expect(r.status, r.raw).toBe(200);
}
