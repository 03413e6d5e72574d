// A web page of another site joining the swarm as a volunteer: a real server on port 0, socket.io-client
// handshakes carrying the Origin header a browser sends (no page can change it). Before, any origin was given a
// stage: a hostile site could run the volunteer's open code in its own pages and make its visitors volunteer
// without the swarm's consent, each visitor a client of its own address (a red-team pass, 2026-12-06). Now only the
// origins ORIGINS lists, and pages reached by the server's address or localhost (the host the browser asked for; a
// trusted proxy's X-Forwarded-Host), may: a name in the Host header proves nothing (DNS rebinding, a second pass).
// Connections without an Origin (Node volunteers) and requesters from anywhere connect as before.
import { io as connect } from 'socket.io-client';
import { afterAll, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../shared/protocol/version.js';
import { type Client, helloVolunteer } from './testing/socket-client.js';
import { tinyServerForFile } from './testing/tiny-stages.js';

const server = tinyServerForFile('webswarm-foreign-origin-', {});
const listing = tinyServerForFile('webswarm-foreign-origin-listed-', { volunteerOrigins: ['https://partner.example'] });
const proxied = tinyServerForFile('webswarm-foreign-origin-proxied-', { trustedProxies: ['127.0.0.1'] });
const clients: Client[] = [];
afterAll(() => {
  for (const c of clients.splice(0)) c.disconnect();
});

function client(url: string, role: 'volunteer' | 'requester', headers: Record<string, string>): Client {
  const c: Client = connect(url, {
    auth: { protocol: PROTOCOL_VERSION, role },
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
    extraHeaders: headers,
  });
  clients.push(c);
  return c;
}

/** The code and message of a server's refusal (its middleware's error data). */
function refusalOf(e: Error): string | null {
  const data = (e as { data?: { code?: unknown; message?: unknown } }).data;
  return typeof data?.code === 'string' && typeof data.message === 'string' ? `${data.code}: ${data.message}` : null;
}

/** Connected, or the server's refusal (code: message). */
function outcome(c: Client): Promise<string> {
  return new Promise((resolve) => {
    c.once('connect', () => resolve('connected'));
    c.once('connect_error', (e) => {
      resolve(refusalOf(e) ?? `error ${e.message}`);
    });
  });
}

describe('pages of other origins as volunteers', () => {
  it('a page of another site is refused by name (ERR_FOREIGN_ORIGIN); the server’s own page gets a stage', async () => {
    const url = server().address().url;
    const foreign = await outcome(client(url, 'volunteer', { origin: 'https://evil.example' }));
    expect(foreign).toMatch(/^ERR_FOREIGN_ORIGIN: a page of https:\/\/evil\.example may not volunteer here/);
    // A page of the server's own origin (the Host the client asked for).
    const own = client(url, 'volunteer', { origin: url });
    const { assign } = await helloVolunteer(own);
    expect(assign.stage).toBeGreaterThanOrEqual(0);
  });

  it('without an Origin (a Node volunteer, a script) a volunteer connects as before', async () => {
    const c = client(server().address().url, 'volunteer', {});
    const { assign } = await helloVolunteer(c);
    expect(assign.stage).toBeGreaterThanOrEqual(0);
  });

  it('requesters and the dashboard connect from any page (the API is open to other sites over HTTP too)', async () => {
    expect(await outcome(client(server().address().url, 'requester', { origin: 'https://evil.example' }))).toBe('connected');
  });

  it('ORIGINS lets the origins it lists volunteer, and no other', async () => {
    const url = listing().address().url;
    const partner = client(url, 'volunteer', { origin: 'https://partner.example' });
    expect((await helloVolunteer(partner)).assign.stage).toBeGreaterThanOrEqual(0);
    expect(await outcome(client(url, 'volunteer', { origin: 'https://evil.example' }))).toMatch(/^ERR_FOREIGN_ORIGIN/);
  });

  it('a hostile page at its own name re-pointed at the swarm’s address (DNS rebinding) is refused: a name must be listed', async () => {
    const url = server().address().url;
    const port = new URL(url).port;
    // What a browser sends once the attacker's name resolves to the swarm: its own name in both headers.
    const rebound = client(url, 'volunteer', { origin: `http://rebind.attacker.example:${port}`, host: `rebind.attacker.example:${port}` });
    expect(await outcome(rebound)).toMatch(/^ERR_FOREIGN_ORIGIN: .*name this server's public origin in ORIGINS/);
    // Listed, the public name is the server's own whatever the Host.
    const named = client(listing().address().url, 'volunteer', { origin: 'https://partner.example', host: 'partner.example' });
    expect((await helloVolunteer(named)).assign.stage).toBeGreaterThanOrEqual(0);
  });

  it('behind a trusted proxy, the address it names in X-Forwarded-Host; from anyone else that header is not believed', async () => {
    const url = proxied().address().url;
    // The proxy (127.0.0.1, trusted) forwards a page the visitor reached at http://10.0.0.5:8080.
    const headers = { origin: 'http://10.0.0.5:8080', 'x-forwarded-host': '10.0.0.5:8080' };
    expect((await helloVolunteer(client(url, 'volunteer', headers))).assign.stage).toBeGreaterThanOrEqual(0);
    // Behind the proxy, its X-Forwarded-Host is what the browser asked for, not the Host it sends its upstream: a page
    // of that upstream address (one on the visitor's own machine, say) is not the swarm's.
    const upstream = `http://${new URL(url).host}`;
    expect(await outcome(client(url, 'volunteer', { origin: upstream, 'x-forwarded-host': 'swarm.example' }))).toMatch(
      /^ERR_FOREIGN_ORIGIN/,
    );
    // The same headers straight from a client that is no trusted proxy (server() trusts none).
    expect(await outcome(client(server().address().url, 'volunteer', headers))).toMatch(/^ERR_FOREIGN_ORIGIN/);
  });
});
