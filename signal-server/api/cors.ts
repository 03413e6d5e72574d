/**
 * CORS for the OpenAI-compatible API: any origin may call it (its callers
 * are other sites and tools; it uses no cookies), with whatever request
 * headers the client sends. Clients add their own (the `openai` package sends
 * the x-stainless-* family, and more with each version), so a preflight's
 * Access-Control-Request-Headers is allowed back as asked, once it is checked
 * to be a short list of header names; anything else gets the fixed list.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** Headers allowed when a preflight asks for none, or for a list that is not plain header names. */
export const DEFAULT_ALLOWED_HEADERS =
  'authorization, content-type, openai-organization, openai-project, openai-beta, x-stainless-arch, x-stainless-lang, x-stainless-os, x-stainless-package-version, x-stainless-retry-count, x-stainless-runtime, x-stainless-runtime-version, x-stainless-timeout';

/** Longest Access-Control-Request-Headers that is allowed back, and most names in it. */
export const MAX_REQUEST_HEADERS_CHARS = 2048;
export const MAX_REQUEST_HEADER_NAMES = 64;

/** RFC 9110's token: the characters a header name may have. */
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** The header names a preflight asked for, lower-cased, or null when the value is not a short list of names. */
export function parseRequestHeaders(value: string | undefined): string[] | null {
  if (value === undefined || value.length > MAX_REQUEST_HEADERS_CHARS) return null;
  const names = value.split(',').map((n) => n.trim().toLowerCase());
  if (names.length > MAX_REQUEST_HEADER_NAMES || !names.every((n) => HEADER_NAME.test(n))) return null;
  return names;
}

/** Access-Control-Allow-Headers for a preflight. */
export function allowedHeaders(requested: string | undefined): string {
  return parseRequestHeaders(requested)?.join(', ') ?? DEFAULT_ALLOWED_HEADERS;
}

/** Set on every API response: any origin may read it, and a 429's Retry-After too. */
export function setCorsHeaders(res: ServerResponse): void {
  res.setHeader('access-control-allow-origin', '*');
  res.setHeader('access-control-expose-headers', 'retry-after');
}

/** Answers a preflight (OPTIONS). The answer depends on the headers asked for: caches must key on them (Vary). */
export function answerPreflight(req: IncomingMessage, res: ServerResponse): void {
  const requested = req.headers['access-control-request-headers'];
  res.writeHead(204, {
    'access-control-allow-methods': 'GET, POST, OPTIONS',
    'access-control-allow-headers': allowedHeaders(typeof requested === 'string' ? requested : undefined),
    'access-control-max-age': '600',
    vary: 'Access-Control-Request-Headers',
  });
  res.end();
}
