import type { IncomingMessage } from 'node:http';
import { addressKey } from '../coordinator/identity.js';
import { NO_PROXIES, type TrustedProxies } from '../http/client-address.js';
import { KeyedBuckets } from '../keyed-buckets.js';

/** Who may call the HTTP API and how often. */
export interface AccessOptions {
  /** Accepted `Authorization: Bearer` keys; empty = the API is open. */
  readonly apiKeys: readonly string[];
  /** Requests per minute per key (or per client address when the API is open); 0 = no limit. */
  readonly ratePerMinute: number;
  /**
   * Generations one identity may have running at once (waiting for a route,
   * reading its body, computing or streaming); 0 or absent = no limit.
   */
  readonly maxConcurrent?: number;
  /** Proxies whose X-Forwarded-For names the client (its address is the identity of an open API). */
  readonly proxies?: TrustedProxies;
}

/**
 * The light routes allow this many times the API's requests per minute, from a bucket of their own that the
 * generations' never pays: the tokenizer routes (/tokenize, /detokenize, /tokenizer_info) and the listings
 * (/v1/models, /v1/models/{id}, /v1/responses/{id}; chat front ends poll /v1/models, and before, each poll spent
 * a generation's allowance). an evaluation tool tokenizes each request's context and continuation
 * apart (two calls a request, lm-evaluation-harness's remote tokenizer retrying three times at once and then
 * giving up), and a tokenizer call costs the server at most a tokenization of MAX_PROMPT_CHARS characters (under 0.1 s).
 */
export const LIGHT_RATE_FACTOR = 20;

export type AccessDecision =
  | { readonly ok: true; readonly identity: string }
  | { readonly ok: false; readonly status: 401 | 429; readonly code: string; readonly message: string; readonly retryAfterS?: number };

/**
 * API keys and per-key rate limits: a token bucket per identity that holds a
 * minute's allowance and refills continuously, so bursts up to the allowance
 * pass and a steady excess is refused with 429 and Retry-After.
 */
export class AccessControl {
  private readonly keys: ReadonlySet<string>;
  private readonly buckets: KeyedBuckets | null;
  private readonly lightBuckets: KeyedBuckets | null;
  /** Generations running per identity (only those with one or more: bounded by the requests in flight). */
  private readonly running = new Map<string, number>();

  constructor(
    private readonly o: AccessOptions,
    now: () => number = () => performance.now(),
  ) {
    this.keys = new Set(o.apiKeys);
    // A minute's allowance at once, refilled continuously.
    this.buckets = o.ratePerMinute > 0 ? new KeyedBuckets({ burst: o.ratePerMinute, perMinute: o.ratePerMinute }, now) : null;
    const lightRate = o.ratePerMinute * LIGHT_RATE_FACTOR;
    this.lightBuckets = lightRate > 0 ? new KeyedBuckets({ burst: lightRate, perMinute: lightRate }, now) : null;
  }

  get requiresKey(): boolean {
    return this.keys.size > 0;
  }

  /** Checks a key as given (null = none); on success returns the identity to rate-limit. */
  checkKey(key: string | null, address: string): AccessDecision {
    // Keyed by the address's client part, as sockets and volunteers are: an IPv6 /64 is one subscriber (before, each
    // of its addresses was a client of its own: a red-team pass took eight times the rate limit and the fallback's
    // seats of two clients with the addresses of one /64).
    if (this.keys.size === 0) return { ok: true, identity: `addr:${addressKey(address)}` };
    if (key === null)
      return { ok: false, status: 401, code: 'invalid_api_key', message: 'an API key is required (Authorization: Bearer <key>)' };
    if (!this.keys.has(key)) return { ok: false, status: 401, code: 'invalid_api_key', message: 'the API key is not valid' };
    return { ok: true, identity: `key:${key}` };
  }

  /**
   * Takes one request from `identity`'s allowance (the light routes' own, for `light`), or `batch`
   * requests' at once (takeBatch, which refuses a batch larger than the allowance before it asks).
   */
  take(identity: string, light = false, batch = 1): AccessDecision {
    const buckets = light ? this.lightBuckets : this.buckets;
    if (buckets === null) return { ok: true, identity };
    const waitMs = buckets.take(identity, batch);
    if (waitMs === 0) return { ok: true, identity };
    const limit = this.o.ratePerMinute * (light ? LIGHT_RATE_FACTOR : 1);
    const retryAfterS = Math.ceil(waitMs / 1000);
    return {
      ok: false,
      status: 429,
      code: 'rate_limit_exceeded',
      message: `rate limit of ${limit} ${light ? 'tokenizer and listing calls' : 'requests'} per minute reached; retry in ${retryAfterS} s`,
      retryAfterS,
    };
  }

  /**
   * The rest of a batch of `prompts` whose request took one request already (take): a batch of prompts asks the
   * swarm for as much as its prompts sent one by one. One of more prompts than a minute's allowance never fits.
   */
  takeBatch(identity: string, prompts: number): AccessDecision {
    const limit = this.o.ratePerMinute;
    if (limit > 0 && prompts > limit)
      return {
        ok: false,
        status: 429,
        code: 'rate_limit_exceeded',
        message: `more than the rate limit of ${limit} requests per minute allows; send at most ${limit} prompts a request`,
      };
    return prompts > 1 ? this.take(identity, false, prompts - 1) : { ok: true, identity };
  }

  /**
   * One of `identity`'s concurrent generations: a release (call it once the
   * generation has ended, answered or not; a second call does nothing), or a
   * refusal when it has `maxConcurrent` running. One requester cannot hold
   * every session and queue place of the swarm and starve the others.
   */
  hold(
    identity: string,
  ): { ok: true; release: () => void } | { ok: false; status: 429; code: string; message: string; retryAfterS: number } {
    const max = this.o.maxConcurrent ?? 0;
    const n = this.running.get(identity) ?? 0;
    if (max > 0 && n >= max)
      return {
        ok: false,
        status: 429,
        code: 'too_many_concurrent_requests',
        message: `${n} generations of this client are running already (at most ${max} at once; each choice, best_of candidate and prompt of a batch is one); send the next when one has ended`,
        retryAfterS: 1,
      };
    this.running.set(identity, n + 1);
    let held = true;
    return {
      ok: true,
      release: () => {
        if (!held) return;
        held = false;
        const left = (this.running.get(identity) ?? 1) - 1;
        if (left <= 0) this.running.delete(identity);
        else this.running.set(identity, left);
      },
    };
  }

  /** The generations `identity` has running now (each held slot counts). */
  runningOf(identity: string): number {
    return this.running.get(identity) ?? 0;
  }

  /** API_MAX_CONCURRENT: the generations one client may run at once (0 = no limit). */
  get maxConcurrent(): number {
    return this.o.maxConcurrent ?? 0;
  }

  /**
   * Whether generations are limited per client (API_MAX_CONCURRENT > 0): then
   * each is told who asks, and the fallback shares its seats among clients too.
   */
  get limitsClients(): boolean {
    return (this.o.maxConcurrent ?? 0) > 0;
  }

  /** The key check, then the rate limit (the light routes' own, for `light`), for a request with `key` (null = none) from `address`. */
  admitKey(key: string | null, address: string, light = false): AccessDecision {
    const who = this.checkKey(key, address);
    return who.ok ? this.take(who.identity, light) : who;
  }

  /** The same for an HTTP request (Authorization: Bearer); `light` for the tokenizer routes and the listings. */
  admit(req: IncomingMessage, light = false): AccessDecision {
    const auth = req.headers.authorization;
    const m = typeof auth === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(auth) : null;
    return this.admitKey(m?.[1] ?? null, this.addressOf(req), light);
  }

  /** The client's address of an HTTP request: a trusted proxy's X-Forwarded-For's, else the socket's. */
  addressOf(req: IncomingMessage): string {
    return (this.o.proxies ?? NO_PROXIES).clientAddress(req.socket.remoteAddress, req.headers['x-forwarded-for']);
  }

  /** Who an HTTP request comes from, as the rate limits count clients (an IPv6 /64 is one), keys aside: for its log lines. */
  clientOf(req: IncomingMessage): string {
    return addressKey(this.addressOf(req));
  }
}
