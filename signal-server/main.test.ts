// The server's settings: flags over the environment over the defaults, bad
// values named, and README's settings table the same as SETTINGS.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { graphFor, MIN_API_KEY_CHARS, meantSetting, optionsFrom, SETTINGS, startNotes, startServer } from './main.js';
import { serverLog } from './testing/server-log.js';

describe('server settings', () => {
  it('take a flag over the environment, and the environment over the default', () => {
    expect(optionsFrom({}).port).toBe(8080);
    expect(optionsFrom({ PORT: '9000' }).port).toBe(9000);
    expect(optionsFrom({ PORT: '9000' }, { port: '9100' }).port).toBe(9100);
    expect(optionsFrom({ API_KEYS: ' sk-aaaaaaaaaaaaaaaaaaaa, ,sk-bbbbbbbbbbbbbbbbbbbb ' }).apiKeys).toEqual([
      'sk-aaaaaaaaaaaaaaaaaaaa',
      'sk-bbbbbbbbbbbbbbbbbbbb',
    ]);
    expect(optionsFrom({ WEBSWARM_MODE: '' }).mode).toBe('production');
    expect(optionsFrom({}).logFormat).toBe('auto');
    expect(optionsFrom({}).weights).toBe('f32');
    expect(optionsFrom({ WEIGHTS: 'q8' }, { weights: 'q4' }).weights).toBe('q4');
    expect(optionsFrom({ LOG_FORMAT: 'json' }, { 'log-format': 'pretty' }).logFormat).toBe('pretty');
  });

  it('name the flag or variable a bad value came from', () => {
    expect(() => optionsFrom({ REDUNDANCY: '0' })).toThrow('REDUNDANCY must be an integer from 1 to 32, got "0"');
    // Before: taken, and no stage ever had enough volunteers (a volunteer links to the replicas of the stages beside its own).
    expect(() => optionsFrom({ REDUNDANCY: '100' })).toThrow('REDUNDANCY must be an integer from 1 to 32, got "100"');
    expect(optionsFrom({ REDUNDANCY: '32' }).redundancy).toBe(32);
    // Before: Node's "options.port should be >= 0 and < 65536", naming no setting.
    expect(() => optionsFrom({}, { port: '70000' })).toThrow('--port must be an integer from 0 to 65535, got "70000"');
    expect(() => optionsFrom({ PORT: 'abc' })).toThrow('PORT must be an integer from 0 to 65535, got "abc"');
    expect(() => optionsFrom({}, { 'rate-limit': 'fast' })).toThrow('--rate-limit must be an integer ≥ 0, got "fast"');
    expect(() => optionsFrom({ LOG_LEVEL: 'loud' })).toThrow(/LOG_LEVEL must be one of fatal, error, .*, got "loud"/);
    expect(() => optionsFrom({ WEIGHTS: 'int4' })).toThrow('WEIGHTS must be one of f32, f16, q8, q4, got "int4"');
    expect(() => optionsFrom({ WEBSWARM_MODE: 'prod' })).toThrow('WEBSWARM_MODE must be one of production, demo, test, got "prod"');
    expect(() => optionsFrom({ LOG_FORMAT: 'human' })).toThrow('LOG_FORMAT must be one of json, pretty, auto, got "human"');
    expect(() => optionsFrom({ SPOT_CHECK_RATE: '2' })).toThrow('SPOT_CHECK_RATE must be a number from 0 to 1, got "2"');
    // Hexadecimal and binary, which Number() reads and the integer settings refuse (before, "0x1" was 1).
    for (const v of ['0x1', '0b1', 'Infinity', '1,0'])
      expect(() => optionsFrom({ SPOT_CHECK_RATE: v })).toThrow(`SPOT_CHECK_RATE must be a number from 0 to 1, got "${v}"`);
    for (const [v, n] of [
      ['0.25', 0.25],
      ['1', 1],
      ['.5', 0.5],
      ['1e-1', 0.1],
      [' 0 ', 0],
    ] as const)
      expect(optionsFrom({ SPOT_CHECK_RATE: v }).spotCheckRate).toBe(n);
    expect(optionsFrom({ LOCAL_ADDRESSES: ' 10.0.0.1 , ::1 ' }).localAddresses).toEqual(['10.0.0.1', '::1']);
    expect(optionsFrom({}).weightsUrl).toBeNull();
    expect(optionsFrom({ WEIGHTS_URL: 'https://mirror.example/SmolLM-135M' }).weightsUrl).toBe('https://mirror.example/SmolLM-135M/');
    expect(optionsFrom({}, { 'weights-url': '/weights/' }).weightsUrl).toBe('/weights/');
    expect(() => optionsFrom({ WEIGHTS_URL: 'ftp://x/' })).toThrow(
      'WEIGHTS_URL must be an http(s) URL or a path starting with /, got "ftp://x/"',
    );
  });

  it('refuse what an operator cannot have meant: blank or non-decimal numbers, an empty host, keys of separators only, no queue; a Redis URL not quoted', () => {
    // Before: Number() read " " as 0 (the rate limit off, a random port) and took hex and exponents.
    for (const [env, value] of [
      ['RATE_LIMIT_PER_MINUTE', ' '],
      ['PORT', '0x4700'],
      ['PORT', '1e3'],
      ['API_MAX_CONCURRENT', '4.0'],
    ] as const)
      expect(() => optionsFrom({ [env]: value }), `${env}=${value}`).toThrow(`${env} must be an integer`);
    expect(() => optionsFrom({}, { port: '' })).toThrow('--port must be an integer from 0 to 65535, got ""');
    expect(optionsFrom({ PORT: ' 9000 ' }).port).toBe(9000);
    // Before: --host "" listened on every interface, the opposite of leaving it out.
    expect(() => optionsFrom({}, { host: '' })).toThrow('--host must name an address to listen on (0.0.0.0 for every interface), got ""');
    // Before: the API was open where its operator meant it keyed.
    expect(() => optionsFrom({ API_KEYS: ' , ' })).toThrow('API_KEYS holds no key (only separators); leave it empty for an open API');
    // A short key can be guessed (README's example was, 10 characters, by a red-team pass): refused at start, by place.
    expect(() => optionsFrom({ API_KEYS: `${'k'.repeat(MIN_API_KEY_CHARS)},sk-local-1` })).toThrow(
      `API_KEYS: key 2 has 10 characters; a key needs at least ${MIN_API_KEY_CHARS}`,
    );
    expect(optionsFrom({ API_KEYS: 'k'.repeat(MIN_API_KEY_CHARS) }).apiKeys).toHaveLength(1);
    // Before: taken, and the two clients meant to hold a key each shared one rate limit.
    const [a, b] = ['a', 'b'].map((c) => c.repeat(MIN_API_KEY_CHARS));
    expect(() => optionsFrom({ API_KEYS: `${a},${b},${a}` })).toThrow('API_KEYS: key 3 is key 1 again; give each client a key of its own');
    expect(optionsFrom({ API_KEYS: '' }).apiKeys).toEqual([]);
    expect(() => optionsFrom({ LOCAL_ADDRESSES: 'not-an-ip' })).toThrow(
      'LOCAL_ADDRESSES must list IP addresses (as 127.0.0.1, ::1), got "not-an-ip"',
    );
    expect(() => optionsFrom({}, { model: '' })).toThrow('--model must name a model folder, got ""');
    // Before: 0 was taken, and every request was refused as if the queue were full.
    expect(() => optionsFrom({ MAX_QUEUED: '0' })).toThrow('MAX_QUEUED must be an integer ≥ 1, got "0"');
    let message = '';
    try {
      optionsFrom({ REDIS_URL: 'redis:/:hunter2@10.0.0.5:6379' });
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toBe('REDIS_URL must be a redis:// or rediss:// URL (the value is not shown: it may hold a password)');
    // A port that is not a number: before, "Invalid URL" once the stages were built, naming no setting.
    expect(() => optionsFrom({ REDIS_URL: 'redis://127.0.0.1:abc' })).toThrow(
      'REDIS_URL must be a redis:// or rediss:// URL (the value is not shown: it may hold a password)',
    );
  });

  it('check the ICE settings at start, naming the setting and never quoting the secret', () => {
    const turn = JSON.stringify([{ urls: 'turn:127.0.0.1:3478' }]);
    const o = optionsFrom({ ICE_SERVERS: turn, TURN_SECRET: 'north-wind', ICE_TRANSPORT_POLICY: 'relay' });
    expect(o).toMatchObject({ turnSecret: 'north-wind', turnTtlS: 3600, iceTransportPolicy: 'relay' });
    expect(o.iceServers).toEqual([{ urls: ['turn:127.0.0.1:3478'] }]);
    expect(optionsFrom({})).toMatchObject({ iceServers: [], turnSecret: null, iceTransportPolicy: 'all' });
    expect(() => optionsFrom({ ICE_SERVERS: '[{"urls": stun}]' })).toThrow(/^ICE_SERVERS must be JSON/);
    expect(() => optionsFrom({}, { 'ice-servers': '[{"urls":"https://x"}]' })).toThrow(/^--ice-servers server 1: "https:\/\/x" is not/);
    expect(() => optionsFrom({ ICE_TRANSPORT_POLICY: 'turn' })).toThrow('ICE_TRANSPORT_POLICY must be one of all, relay, got "turn"');
    expect(() => optionsFrom({ ICE_TRANSPORT_POLICY: 'relay' })).toThrow(/relay needs a turn: or turns: URL in ICE_SERVERS/);
    expect(() => optionsFrom({ ICE_SERVERS: turn })).toThrow(/TURN URL but no username and credential, and TURN_SECRET is not set/);
    expect(() => optionsFrom({ ICE_SERVERS: turn, TURN_SECRET: 'north-wind', TURN_TTL_S: '5' })).toThrow(
      'TURN_TTL_S must be an integer from 60 to 604800, got "5"',
    );
    // Over a week: Node's timers cap at 2^31 ms, and a larger renewal fired at once, about 600 times a second.
    expect(() => optionsFrom({ ICE_SERVERS: turn, TURN_SECRET: 'north-wind', TURN_TTL_S: '5000000' })).toThrow(
      'TURN_TTL_S must be an integer from 60 to 604800, got "5000000"',
    );
    // A credential in malformed JSON is not quoted back (Node's parser quotes the text around the fault).
    let parse = '';
    try {
      optionsFrom({ ICE_SERVERS: '[{"urls":"turn:x","username":"u","credential":SuperSecret99}]' });
    } catch (e) {
      parse = (e as Error).message;
    }
    expect(parse).toMatch(/^ICE_SERVERS must be JSON .*; it does not parse/);
    expect(parse).not.toContain('Secre');
    let message = '';
    try {
      optionsFrom({ TURN_SECRET: 'north-wind' });
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/TURN_SECRET is set but ICE_SERVERS has no turn/);
    expect(message).not.toContain('north-wind');
  });

  it("match README's settings table row for row", () => {
    const readme = readFileSync('README.md', 'utf8');
    const rows = readme
      .split('\n')
      .filter((l) => /^\| `[A-Z_]+` +\| `--/.test(l))
      .map((l) => l.split('|').map((c) => c.trim()));
    const fromReadme = rows.map(([, env, flag, fallback]) => [env, flag, fallback]);
    const fromCode = Object.values(SETTINGS).map((s) => [
      `\`${s.env}\``,
      `\`--${s.flag}\``,
      s.fallback === '' ? '(empty)' : `\`${s.fallback}\``,
    ]);
    expect(fromReadme).toEqual(fromCode);
  });

  it('GRAPH: auto by default, fused where the model has that form, plain where not (said in the log); a bad value named', () => {
    expect(optionsFrom({}).graph).toBe('auto');
    expect(optionsFrom({ GRAPH: 'plain' }).graph).toBe('plain');
    expect(optionsFrom({ GRAPH: 'plain' }, { graph: 'fused' }).graph).toBe('fused');
    expect(() => optionsFrom({ GRAPH: 'fast' })).toThrow('GRAPH must be one of auto, plain, fused, got "fast"');
    const said: string[] = [];
    // The default model: head size 32.
    expect(graphFor('auto', 'models/austen-2m', (l) => said.push(l))).toBe('fused');
    expect(said).toEqual([]);
    // Head size 8: no fused form (onnxruntime's GroupQueryAttention needs a multiple of 16).
    expect(graphFor('auto', 'fixtures/models/tiny-untied', (l) => said.push(l))).toBe('plain');
    expect(said).toEqual([
      'GRAPH=auto: plain stage graphs, this model has no fused form (head_dim 8 is not a multiple of 16, which GroupQueryAttention needs)',
    ]);
    // Named forms are taken as they are (fused on a model without it fails at the build, by name).
    expect(graphFor('plain', 'models/austen-2m', () => {})).toBe('plain');
    expect(graphFor('fused', 'fixtures/models/tiny-untied', () => {})).toBe('fused');
    // A folder that cannot be read is the build's to name.
    expect(graphFor('auto', '/nonexistent-webswarm-model', () => {})).toBe('plain');
  });

  it('name STAGES and STAGE_CACHE where building the stages fails for them (before: "partition: cannot cut …", an ENOTDIR on a temporary file)', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'webswarm-main-'));
    try {
      const base = { ...optionsFrom({}), webRoot: tmp, stageCache: tmp };
      await expect(startServer({ ...base, stages: 100 })).rejects.toThrow(
        /^STAGES \(--stages\) is 100: .*cannot cut 6 layers into 100 stages/,
      );
      const file = join(tmp, 'a-file');
      writeFileSync(file, 'x');
      await expect(startServer({ ...base, stageCache: file })).rejects.toThrow(
        `STAGE_CACHE (--stage-cache) ${file} cannot hold the stage files: `,
      );
      // A web root that is a file: refused by name (before, every page answered 404, and nothing was said); a folder
      // with no index.html (this one) is served, and said (serverLog below).
      await expect(startServer({ ...base, webRoot: file })).rejects.toThrow(
        `WEB_ROOT (--web-root) ${file} is not a folder: name the built web app's (dist)`,
      );
      // A relative web root or model that is not there: named, with the working directory it was looked for in
      // (before: "the web app is not built" for a start from another folder, where it was).
      await expect(startServer({ ...base, webRoot: 'no-such-dist' })).rejects.toThrow(
        `WEB_ROOT (--web-root) no-such-dist is missing (relative to the working directory, ${process.cwd()}: start from the repository's folder, or give an absolute path); npm run build writes the web app there`,
      );
      await expect(startServer({ ...base, model: 'no-such-model' })).rejects.toThrow(
        /^MODEL \(--model\) no-such-model: no model folder at models\/no-such-model \(relative to the working directory, .*\); the models under models\/: .*austen-2m/,
      );
      await expect(startServer({ ...base, redisUrl: 'redis://127.0.0.1:1' })).rejects.toThrow(
        /^REDIS_URL \(--redis-url\): cannot reach Redis at redis:\/\/127\.0\.0\.1:1: /,
      );
      await expect(startServer({ ...base, model: '/no/such/folder' })).rejects.toThrow(
        'MODEL (--model) /no/such/folder: no model folder at /no/such/folder',
      );
      const { lines, logger } = serverLog('warn');
      await expect(startServer({ ...base, stages: 100 }, logger)).rejects.toThrow(/^STAGES/);
      expect(lines.filter((l) => l.includes('"level":40')).map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual([
        `WEB_ROOT (--web-root) ${tmp} holds no index.html: the pages will answer 404 (npm run build writes them to dist)`,
      ]);
      // /proc refuses new folders with ENOENT, on which Node's recursive mkdirSync never returned (the start hung).
      if (existsSync('/proc/self')) {
        const proc = `/proc/webswarm-${process.pid}`;
        await expect(startServer({ ...base, stageCache: proc })).rejects.toThrow(
          `STAGE_CACHE (--stage-cache) ${proc} cannot hold the stage files: ${proc}: cannot be created (ENOENT) [ERR_STAGE_DIR]`,
        );
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe('what a start tells its operator of its settings', () => {
  it('an environment variable one typo from a setting is named with the setting it was likely meant as; common ones are not', () => {
    expect(meantSetting('API_KEY')).toBe('API_KEYS');
    expect(meantSetting('TRUSTED_PROXY')).toBe('TRUSTED_PROXIES');
    expect(meantSetting('ORIGIN')).toBe('ORIGINS');
    expect(meantSetting('REDIS')).toBe('REDIS_URL');
    expect(meantSetting('MAX_SOCKETS_PER_IP')).toBe('MAX_SOCKETS_PER_ADDRESS');
    expect(meantSetting('PROT')).toBe('PORT');
    expect(meantSetting('WEBSWARM_PORT')).toBe('PORT');
    expect(meantSetting('WEBSWARM_THING')).toBe('a setting');
    // Settings themselves, and what shells, containers, CI and npm set: never.
    for (const name of [
      ...Object.values(SETTINGS).map((x) => x.env),
      'PATH',
      'HOME',
      'HOSTNAME',
      'PWD',
      'OLDPWD',
      'LANG',
      'TERM',
      'SHELL',
      'USER',
      'LOGNAME',
      'TMPDIR',
      'NODE_ENV',
      'NODE_OPTIONS',
      'NODE_EXTRA_CA_CERTS',
      'CI',
      'GITHUB_ACTIONS',
      'DEBIAN_FRONTEND',
      'SSL_CERT_FILE',
      'INIT_CWD',
      'COLOR',
      'EDITOR',
      'DISPLAY',
      'npm_config_cache',
      '_',
    ])
      expect(meantSetting(name), name).toBeUndefined();
  });

  it('says an open API (a warning beyond loopback), a typo, and a trusted proxy range that takes in everyone', () => {
    const quiet = startNotes(
      { PATH: '/bin', HOME: '/root' },
      { host: '127.0.0.1', apiKeys: ['k'.repeat(MIN_API_KEY_CHARS)], trustedProxies: [] },
    );
    expect(quiet).toEqual({ warn: [], info: [] });
    const local = startNotes({}, { host: '127.0.0.1', apiKeys: [], trustedProxies: ['10.0.0.0/8', '127.0.0.1'] });
    expect(local.warn).toEqual([]);
    expect(local.info).toEqual(['the API (/v1) is open to anyone who reaches this machine: no API_KEYS (--api-keys) set']);
    // Before: API_KEY set, the API open, and not a word of either.
    const open = startNotes(
      { API_KEY: 'sk-0123456789abcdef0123456789' },
      { host: '0.0.0.0', apiKeys: [], trustedProxies: ['0.0.0.0/0', '::/0'] },
    );
    expect(open.info).toEqual([]);
    expect(open.warn).toEqual([
      'the environment variable API_KEY is no setting of webswarm, and is not read: did you mean API_KEYS? (README.md, Configuration)',
      'the API (/v1) is open to anyone who reaches 0.0.0.0: no API_KEYS (--api-keys) set',
      "TRUSTED_PROXIES (--trusted-proxies) 0.0.0.0/0 trusts every address: a client there can name any address in X-Forwarded-For, past rate limits and bans; list the proxies' own addresses",
      "TRUSTED_PROXIES (--trusted-proxies) ::/0 trusts every address: a client there can name any address in X-Forwarded-For, past rate limits and bans; list the proxies' own addresses",
    ]);
  });
});
