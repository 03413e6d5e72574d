import { describe, expect, it } from 'vitest';
import { PageOrigins } from './page-origins.js';

describe('PageOrigins', () => {
  const own = new PageOrigins([]);

  it('lets the server’s own pages volunteer: the origin’s host and port are the Host the browser asked for', () => {
    expect(own.refusal('http://127.0.0.1:8080', ['127.0.0.1:8080'])).toBeNull();
    expect(own.refusal('https://swarm.example', ['swarm.example'])).toBeNull();
    // A default port written or left out is the same port.
    expect(own.refusal('https://swarm.example', ['swarm.example:443'])).toBeNull();
    expect(own.refusal('http://swarm.example:80', ['swarm.example'])).toBeNull();
    expect(own.refusal('http://[::1]:8080', ['[::1]:8080'])).toBeNull();
    expect(own.refusal('http://LOCALHOST:8080', ['localhost:8080'])).toBeNull();
    // Behind a proxy that does not pass Host, its X-Forwarded-Host (given only where the proxy is trusted).
    expect(own.refusal('https://swarm.example', ['127.0.0.1:8080', 'swarm.example'])).toBeNull();
  });

  it('refuses a page of another site, naming both, and one whose port differs', () => {
    expect(own.refusal('https://evil.example', ['swarm.example'])).toMatch(
      /^a page of https:\/\/evil\.example may not volunteer here: .*"swarm\.example".*ORIGINS/,
    );
    expect(own.refusal('http://127.0.0.1:9999', ['127.0.0.1:8080'])).not.toBeNull();
    expect(own.refusal('https://swarm.example', ['swarm.example:8443'])).not.toBeNull();
    expect(own.refusal('https://swarm.example.evil.example', ['swarm.example'])).not.toBeNull();
    // A Host that is a list, carries a path or credentials, or none at all: no match.
    expect(own.refusal('https://swarm.example', ['swarm.example, evil.example'])).toBeNull(); // the first is the client's
    expect(own.refusal('https://evil.example', ['swarm.example, evil.example'])).not.toBeNull();
    expect(own.refusal('https://swarm.example', ['swarm.example/x'])).not.toBeNull();
    expect(own.refusal('https://swarm.example', ['a@swarm.example'])).not.toBeNull();
    expect(own.refusal('https://swarm.example', [undefined, undefined])).toMatch(/no Host/);
    // Sandboxed frames and local files send "null"; other schemes are no web page of a site.
    expect(own.refusal('null', ['swarm.example'])).not.toBeNull();
    expect(own.refusal('file://', ['swarm.example'])).not.toBeNull();
    expect(own.refusal('chrome-extension://abcdef', ['abcdef'])).not.toBeNull();
  });

  it('lets a connection without an Origin through (not a browser page: Node volunteers, scripts)', () => {
    expect(own.refusal(undefined, ['swarm.example'])).toBeNull();
  });

  it('takes listed origins, normalized, and * for any', () => {
    const listed = new PageOrigins(['https://Partner.Example', ' http://localhost:5173/', 'https://swarm.example:443']);
    expect(listed.refusal('https://partner.example', ['swarm.example'])).toBeNull();
    expect(listed.refusal('http://localhost:5173', ['127.0.0.1:8080'])).toBeNull();
    expect(listed.refusal('https://swarm.example', ['10.0.0.5:8080'])).toBeNull();
    expect(listed.refusal('http://partner.example', ['swarm.example'])).not.toBeNull(); // another scheme
    expect(new PageOrigins(['*']).refusal('https://anyone.example', ['swarm.example'])).toBeNull();
  });

  it('refuses an entry that is not an origin, naming it', () => {
    for (const bad of [
      'swarm.example',
      'https://swarm.example/volunteer',
      'https://a.example?x',
      'ftp://a.example',
      'https://u:p@a.example',
      '**',
    ])
      expect(() => new PageOrigins([bad]), bad).toThrow(new RegExp(`"${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}" is not an origin`));
  });
});
