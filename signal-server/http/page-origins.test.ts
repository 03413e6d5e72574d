import { describe, expect, it } from 'vitest';
import { PageOrigins } from './page-origins.js';

describe('PageOrigins', () => {
  const none = new PageOrigins([]);
  const listed = new PageOrigins(['https://Swarm.Example', ' http://partner.example:8080/', 'https://other.example:443']);

  it('lets a page reached by this server’s address or localhost volunteer: its host and port are those the browser asked for', () => {
    expect(none.refusal('http://127.0.0.1:8080', '127.0.0.1:8080')).toBeNull();
    expect(none.refusal('http://192.168.1.5:8080', '192.168.1.5:8080')).toBeNull();
    expect(none.refusal('http://[::1]:8080', '[::1]:8080')).toBeNull();
    expect(none.refusal('http://[0:0:0:0:0:0:0:1]:8080', '[::1]:8080')).toBeNull();
    expect(none.refusal('http://LOCALHOST:8080', 'localhost:8080')).toBeNull();
    expect(none.refusal('http://127.0.0.1', '127.0.0.1:80')).toBeNull(); // a default port written or left out
    // Behind a trusted proxy, its X-Forwarded-Host is the host given (server.ts picks it).
    expect(none.refusal('http://10.0.0.5:8080', '10.0.0.5:8080')).toBeNull();
    // localhost's own names (browsers resolve *.localhost to loopback) with or without a trailing dot.
    expect(none.refusal('http://app.localhost:8080', 'app.localhost:8080')).toBeNull();
    expect(none.refusal('http://localhost.:8080', 'localhost.:8080')).toBeNull();
    // Another port or address is another page, and the message says which host the browser asked for.
    expect(none.refusal('http://127.0.0.1:9999', '127.0.0.1:8080')).toMatch(
      /^a page of http:\/\/127\.0\.0\.1:9999 may not volunteer here: the browser asked for "127\.0\.0\.1:8080" .*list the origin in ORIGINS/,
    );
    expect(none.refusal('http://127.0.0.2:8080', '127.0.0.1:8080')).not.toBeNull();
  });

  it('never takes a name from the Host header as the server’s own (DNS rebinding): a name must be listed in ORIGINS', () => {
    // A hostile page at its own name, re-pointed at the swarm's address: the browser sends Origin and Host alike.
    expect(none.refusal('http://rebind.attacker.example:8080', 'rebind.attacker.example:8080')).toMatch(
      /^a page of http:\/\/rebind\.attacker\.example:8080 may not volunteer here: name this server's public origin in ORIGINS/,
    );
    expect(listed.refusal('http://rebind.attacker.example', 'rebind.attacker.example')).toMatch(
      /only https:\/\/swarm\.example, http:\/\/partner\.example:8080, https:\/\/other\.example \(ORIGINS\)/,
    );
    // Listed: the scheme, host and port as listed, a host's trailing dot aside; the Host header does not matter.
    expect(listed.refusal('https://swarm.example', '127.0.0.1:8080')).toBeNull();
    expect(listed.refusal('https://swarm.example.', 'swarm.example')).toBeNull();
    expect(listed.refusal('http://partner.example:8080', undefined)).toBeNull();
    expect(listed.refusal('https://other.example', undefined)).toBeNull();
    expect(listed.refusal('http://swarm.example', 'swarm.example')).not.toBeNull(); // another scheme: another page
    expect(listed.refusal('https://swarm.example:8443', 'swarm.example:8443')).not.toBeNull();
    expect(listed.refusal('https://swarm.example.evil.example', 'swarm.example')).not.toBeNull();
  });

  it('refuses what is no web page of a site, and lets a connection without an Origin through (Node volunteers, scripts)', () => {
    expect(none.refusal('null', '127.0.0.1:8080')).not.toBeNull();
    expect(none.refusal('file://', '127.0.0.1:8080')).not.toBeNull();
    expect(none.refusal('chrome-extension://abcdef', 'abcdef')).not.toBeNull();
    expect(none.refusal(undefined, 'swarm.example')).toBeNull();
    // A Host that is a list (the first is the client's), or carries a path or credentials.
    expect(none.refusal('http://127.0.0.1:8080', '127.0.0.1:8080, 10.0.0.9')).toBeNull();
    expect(none.refusal('http://127.0.0.1:8080', '127.0.0.1:8080/x')).not.toBeNull();
    expect(none.refusal('http://127.0.0.1:8080', 'a@127.0.0.1:8080')).not.toBeNull();
    expect(none.refusal('http://127.0.0.1:8080', undefined)).not.toBeNull();
    expect(new PageOrigins(['*']).refusal('https://anyone.example', 'swarm.example')).toBeNull();
  });

  it('refuses an entry that is not an origin, naming it', () => {
    for (const bad of [
      'swarm.example',
      'https://swarm.example/volunteer',
      'https://a.example?x',
      'ftp://a.example',
      'https://u:p@a.example',
      '**',
      'https://*.swarm.example', // parses as a URL, and no browser sends it
    ])
      expect(() => new PageOrigins([bad]), bad).toThrow(new RegExp(`"${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}" is not an origin`));
  });
});
