import { describe, expect, it } from 'vitest';
import {
  allowedHeaders,
  DEFAULT_ALLOWED_HEADERS,
  MAX_REQUEST_HEADER_NAMES,
  MAX_REQUEST_HEADERS_CHARS,
  parseRequestHeaders,
} from './cors.js';

// What the `openai` package (6.x) asks for in a browser's preflight.
const OPENAI_CLIENT =
  'authorization,content-type,x-stainless-arch,x-stainless-lang,x-stainless-os,x-stainless-package-version,x-stainless-retry-count,x-stainless-runtime,x-stainless-runtime-version,x-stainless-timeout';

describe('the preflight’s Access-Control-Allow-Headers', () => {
  it('allows back the header names a client asks for, lower-cased, whatever they are', () => {
    expect(allowedHeaders(OPENAI_CLIENT)).toBe(OPENAI_CLIENT.split(',').join(', '));
    expect(allowedHeaders('X-Custom-Thing, Authorization')).toBe('x-custom-thing, authorization');
  });

  it('gives the fixed list for no list, an empty one, or one that is not header names', () => {
    for (const bad of [undefined, '', 'a,,b', 'x-ok, bad header', 'x\r\nset-cookie: a=b', 'ünïcode', 'a;b', 'x-ok,']) {
      expect(parseRequestHeaders(bad), JSON.stringify(bad)).toBeNull();
      expect(allowedHeaders(bad)).toBe(DEFAULT_ALLOWED_HEADERS);
    }
  });

  it('bounds the list: too long or too many names get the fixed list', () => {
    const many = Array.from({ length: MAX_REQUEST_HEADER_NAMES + 1 }, (_, i) => `x-h${i}`).join(',');
    expect(parseRequestHeaders(many)).toBeNull();
    expect(parseRequestHeaders(many.split(',').slice(0, MAX_REQUEST_HEADER_NAMES).join(','))).toHaveLength(MAX_REQUEST_HEADER_NAMES);
    expect(parseRequestHeaders(`x-${'a'.repeat(MAX_REQUEST_HEADERS_CHARS)}`)).toBeNull();
  });

  it('lists the openai client’s own headers in the fixed list too', () => {
    for (const name of OPENAI_CLIENT.split(',')) expect(DEFAULT_ALLOWED_HEADERS.split(', ')).toContain(name);
  });
});
