// Debian's coturn on loopback, for the relayed-mesh spec and the TURN attack
// tests: deploy/turnserver.conf (the rules the project ships for operators)
// or coturn's own defaults, with a generated secret, no TLS, listening and
// relaying on 127.0.0.1 and ::1 on a free port; started and stopped by PID.
// tools/install-coturn.sh installs it.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** How long turnserver has to answer a STUN binding request after it starts. */
const START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;
const PORT_TRIES = 10;

/** The coturn settings the project ships for operators (README, Deployment: NAT traversal). */
export const SHIPPED_TURN_CONFIG = 'deploy/turnserver.conf';

export interface TurnServerOptions {
  /**
   * Start from deploy/turnserver.conf (its peer rules, no TCP relays), not
   * from coturn's defaults (as README described it before that file:
   * `use-auth-secret` and a realm).
   */
  readonly shipped: boolean;
  /**
   * Let relays reach 127.0.0.1 and ::1. A swarm's relayed channels need it
   * here, where every relay address is on loopback (a deployment's are
   * public); a test can also take loopback to stand for a private network.
   */
  readonly loopbackPeers: boolean;
}

export interface TurnServer {
  readonly port: number;
  /** `turn:127.0.0.1:<port>?transport=udp` */
  readonly url: string;
  /** The realm its 401s name. */
  readonly realm: string;
  /** What turnserver wrote so far (its log goes to stdout). */
  output(): string;
  close(): Promise<void>;
}

function turnserverPath(): string {
  const found = spawnSync('sh', ['-c', 'command -v turnserver'], { encoding: 'utf8' });
  const path = found.stdout.trim();
  if (found.status !== 0 || path === '')
    throw new Error(
      'turnserver (coturn) is not installed: run `bash tools/install-coturn.sh` as root, or `sudo apt-get install -y coturn`',
    );
  return path;
}

export async function udpFreeOn(type: 'udp4' | 'udp6', address: string, port: number): Promise<boolean> {
  const udp = createSocket(type);
  const free = await new Promise<boolean>((resolve) => {
    udp.once('error', () => resolve(false));
    udp.bind(port, address, () => resolve(true));
  });
  udp.close();
  return free;
}

export async function tcpFreeOn(address: string, port: number): Promise<boolean> {
  const tcp = createServer();
  const free = await new Promise<boolean>((resolve) => {
    tcp.once('error', () => resolve(false));
    tcp.listen(port, address, () => resolve(true));
  });
  if (free) await new Promise((resolve) => tcp.close(resolve));
  return free;
}

/** A port free on 127.0.0.1 and ::1 for both TCP and UDP (turnserver listens on all four). */
async function freePort(): Promise<number> {
  for (let i = 0; i < PORT_TRIES; i++) {
    const tcp = createServer();
    const port = await new Promise<number>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen(0, '127.0.0.1', () => resolve((tcp.address() as { port: number }).port));
    });
    // turnserver listens on ::1 too (an IPv6 relay for the attack tests).
    const free = (await udpFreeOn('udp4', '127.0.0.1', port)) && (await udpFreeOn('udp6', '::1', port)) && (await tcpFreeOn('::1', port));
    await new Promise((resolve) => tcp.close(resolve));
    if (free) return port;
  }
  throw new Error(`no port free for both TCP and UDP on 127.0.0.1 in ${PORT_TRIES} tries`);
}

/** True once a STUN binding request to the port gets any answer. */
async function answersStun(port: number, timeoutMs: number): Promise<boolean> {
  const socket = createSocket('udp4');
  // Binding request: type 0x0001, length 0, the magic cookie, a 12-byte transaction id.
  const request = Buffer.concat([Buffer.from([0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]), randomBytes(12)]);
  try {
    return await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      socket.once('message', () => {
        clearTimeout(timer);
        resolve(true);
      });
      socket.once('error', () => {
        clearTimeout(timer);
        resolve(false);
      });
      socket.send(request, port, '127.0.0.1');
    });
  } finally {
    socket.close();
  }
}

/** A started turnserver, or what it wrote before it gave up (it exited, or never answered). */
type Attempt = { readonly server: TurnServer } | { readonly failed: string };

/** turnserver's words when another process took its port between freePort() and its bind. */
const PORT_TAKEN = 'Address already in use';
const START_TRIES = 3;

/**
 * Starts turnserver with coturn's REST-API authentication (`use-auth-secret`,
 * `static-auth-secret`): it accepts user names `expiry:anything` whose
 * password is base64(HMAC-SHA1(secret, user name)). A port taken by another
 * process before turnserver bound it (tests start servers and browsers in
 * parallel) is tried again on a new port, up to START_TRIES times.
 */
export async function startTurnServer(
  secret: string,
  options: TurnServerOptions = { shipped: true, loopbackPeers: true },
): Promise<TurnServer> {
  const bin = turnserverPath();
  let failures = '';
  for (let i = 0; i < START_TRIES; i++) {
    const attempt = await startOnce(bin, secret, options);
    if ('server' in attempt) return attempt.server;
    failures += `${attempt.failed}\n`;
    if (!attempt.failed.includes(PORT_TAKEN)) break;
  }
  throw new Error(failures.trimEnd());
}

async function startOnce(bin: string, secret: string, options: TurnServerOptions): Promise<Attempt> {
  const dir = mkdtempSync(join(tmpdir(), 'webswarm-turn-'));
  const port = await freePort();
  const realm = 'webswarm.test';
  const config = [
    ...(options.shipped ? [readFileSync(SHIPPED_TURN_CONFIG, 'utf8')] : ['use-auth-secret', 'fingerprint', 'no-cli']),
    ...(options.loopbackPeers ? ['allow-loopback-peers', 'allowed-peer-ip=127.0.0.1', 'allowed-peer-ip=::1'] : []),
    'listening-ip=127.0.0.1',
    'listening-ip=::1',
    'relay-ip=127.0.0.1',
    'relay-ip=::1',
    `listening-port=${port}`,
    `realm=${realm}`,
    `static-auth-secret=${secret}`,
    'no-tls',
    'no-dtls',
    // With two listening addresses of one family, coturn also binds port + 1
    // for RFC 5780's NAT behaviour discovery, which freePort() did not check
    // and no test uses (a CI run failed on it: "Cannot bind ... :port+1").
    'no-rfc5780',
    `pidfile=${join(dir, 'turnserver.pid')}`,
    `userdb=${join(dir, 'turndb')}`,
    'log-file=stdout',
    'simple-log',
  ];
  const conf = join(dir, 'turnserver.conf');
  writeFileSync(conf, `${config.join('\n')}\n`);
  const child: ChildProcess = spawn(bin, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (b: Buffer) => {
    out += b.toString();
  });
  child.stderr?.on('data', (b: Buffer) => {
    out += b.toString();
  });
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  const close = async () => {
    if (!exited && child.pid !== undefined) {
      process.kill(child.pid, 'SIGTERM');
      const stopped = await Promise.race([exit.then(() => true), new Promise((r) => setTimeout(() => r(false), STOP_TIMEOUT_MS))]);
      if (!stopped && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
      await exit;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!(await answersStun(port, 250))) {
    if (exited || Date.now() > deadline) {
      await close();
      return { failed: `turnserver did not answer on 127.0.0.1:${port} within ${START_TIMEOUT_MS} ms:\n${out.slice(-2000)}` };
    }
  }
  return { server: { port, url: `turn:127.0.0.1:${port}?transport=udp`, realm, output: () => out, close } };
}
